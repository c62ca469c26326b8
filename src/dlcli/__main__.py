from dlcli.cli import main

if __name__ == "__main__":  # not again in a worker process started by spawn (the launcher's, a sweep's)
    main()
