"""Errors a user can cause. The CLI prints their message on one line and exits with code 2."""


class UserError(Exception):
    """Bad input: the message says what is wrong and what would be right."""

    exit_code = 2


class RunFailed(Exception):
    """A run started but could not finish (e.g. the loss became NaN); it is marked failed."""

    exit_code = 1


class TrialPruned(Exception):
    """A sweep's pruner stopped this trial early: its run is marked pruned, not failed."""
