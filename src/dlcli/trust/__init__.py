"""Files that may come from someone else: what a config read from a file may build (targets), how
received files are read (received), whether the working directory speaks for the user (workdir), and
the targets that moved since older runs were written (moved_targets)."""
