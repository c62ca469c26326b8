"""`dl` (the console script) and `python -m dlcli`.

A TAB's question (_DL_COMPLETE, set by the shell's completion script) is answered here, before the
CLI and its framework are imported: a TAB costs a Python start and a small JSON read, not a
program's start (dlcli.completion).
"""

import os

from dlcli.completion import COMPLETE_VAR
from dlcli.completion.complete import main as complete
from dlcli.system.collector import collect_less_often


def main() -> None:
    shell = os.environ.get(COMPLETE_VAR)
    if shell is not None:
        complete(shell)
        return
    collect_less_often()  # before the imports, which allocate millions of objects (dlcli.system.collector)
    from dlcli.cli import main as run  # noqa: PLC0415  (a TAB never imports the CLI: typer, click, rich)

    run()


if __name__ == "__main__":  # not again in a worker process started by spawn (the launcher's, a sweep's)
    main()
