"""Each trial reports its validation metric to the sweep's Optuna study once per epoch (the
learning curves optuna-dashboard draws), and with --prune Optuna's pruner (median, successive
halving, Hyperband) decides whether it goes on.

The report goes through the study's journal in the sweep directory (or its database, with
--storage), so the decision sees every other trial's epochs whether they ran in this process, in a
local pool, on a Ray worker, or on another machine's worker of a shared study.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from dlcli.engine.callbacks import Callback
from dlcli.errors import TrialPruned
from dlcli.sweep.study import Pruning, trial_handle
from dlcli.system.interrupts import ctrl_c_deferred

PRUNER_NAMES = {"median": "MedianPruner", "asha": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner"}


class StudyReporting(Callback):
    """Reports each epoch's `metric` to the trial in the sweep's study and stops it when pruned; a
    cross-validated trial reports instead, after each fold, the mean over its folds so far."""

    def __init__(self, sweep_dir: Path, study_name: str, trial_id: int, pruning, metric: str, storage: str | None = None):
        if isinstance(pruning, dict) or hasattr(pruning, "keys"):  # named in a trial's config (trainer.devices>1)
            pruning = Pruning(**dict(pruning))
        self.trial = trial_handle(Path(sweep_dir), study_name, trial_id, pruning, storage)
        self.rule, self.metric = pruning.rule, metric

    def on_epoch_end(self, state, row: dict, improved: bool) -> None:
        value = row[self.metric]
        if value is None or math.isnan(value):
            return
        epoch = int(row["epoch"])
        if self._report(float(value), epoch):
            raise TrialPruned(f"pruned at epoch {epoch} by Optuna's {PRUNER_NAMES[self.rule]}: {self.metric} {value:.4g}")

    def after_fold(self, fold: int, folds: int, values: list[float]) -> None:
        """Fold `fold` of `folds` ended; `values` are the completed folds' best values. The last
        fold is reported but never pruned: the trial is complete."""
        if not values:
            return
        mean = statistics.fmean(values)
        if self._report(mean, fold) and fold < folds:
            raise TrialPruned(f"pruned after fold {fold} of {folds} by Optuna's {PRUNER_NAMES[self.rule]}: "
                              f"mean {self.metric} {mean:.4g}")

    def _report(self, value: float, step: int) -> bool:
        with ctrl_c_deferred():  # a Ctrl-C inside the journal's lock would break the lock for everyone
            self.trial.report(value, step)
            return self.rule != "none" and self.trial.should_prune()
