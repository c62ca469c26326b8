"""Each trial reports its validation metric to the sweep's Optuna study once per epoch (the
learning curves optuna-dashboard draws), and with --prune Optuna's pruner (median, successive
halving, Hyperband) decides whether it goes on.

The report goes through the study's journal in the sweep directory, so the decision sees every
other trial's epochs whether they ran in this process, in a local pool, or on a Ray worker.
"""

from __future__ import annotations

import math
from pathlib import Path

from dlcli.engine.callbacks import Callback
from dlcli.errors import TrialPruned

PRUNER_NAMES = {"median": "MedianPruner", "asha": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner"}


class StudyReporting(Callback):
    """Reports each epoch's `metric` to the trial in the sweep's study; stops it when pruned."""

    def __init__(self, sweep_dir: Path, trial_id: int, rule: str, metric: str, max_epochs: int):
        from dlcli.sweep.study import trial_handle

        self.trial = trial_handle(sweep_dir, trial_id, rule, max_epochs)
        self.rule, self.metric = rule, metric

    def on_epoch_end(self, state, row: dict, improved: bool) -> None:
        value = row[self.metric]
        if value is None or math.isnan(value):
            return
        epoch = int(row["epoch"])
        from dlcli.interrupts import ctrl_c_deferred

        with ctrl_c_deferred():  # a Ctrl-C inside the journal's lock would break the lock for everyone
            self.trial.report(float(value), epoch)
            prune = self.rule != "none" and self.trial.should_prune()
        if prune:
            raise TrialPruned(f"pruned at epoch {epoch} by Optuna's {PRUNER_NAMES[self.rule]}: {self.metric} {value:.4g}")

