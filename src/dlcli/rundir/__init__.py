"""The run directory: creating it and reading it back (directory), who trains in it now (lock), and
many runs collected for `dl runs` (collect)."""
