"""Stop bad trials early on their per-epoch validation metric.

Decisions read the other trials' metrics.csv from the sweep directory, so they work the same for
trials in this process, in a local process pool, or on Ray workers sharing the directory.
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from dlcli.engine.callbacks import Callback
from dlcli.errors import TrialPruned, UserError

RULES = ("none", "median", "asha")


def read_curve(metrics_csv: Path, metric: str) -> list[float]:
    """The metric per epoch of one trial (as far as it got)."""
    try:
        with metrics_csv.open() as f:
            return [float(row[metric]) for row in csv.DictReader(f) if row.get(metric) not in (None, "")]
    except (FileNotFoundError, KeyError, ValueError):
        return []


class Pruner(Callback):
    """Base: after each epoch, `judge(epoch, value)` raises TrialPruned to stop the trial."""

    def __init__(self, trials_dir: Path, own_dir: Path, metric: str, mode: str):
        self.trials_dir, self.own_dir, self.metric, self.mode = trials_dir, own_dir, metric, mode
        self.own_best = math.nan  # this trial's best value so far, kept as it goes

    def on_epoch_end(self, state, row: dict, improved: bool) -> None:
        value = row[self.metric]
        if not math.isnan(value) and (math.isnan(self.own_best) or self.better(value, self.own_best)):
            self.own_best = value
        self.judge(row["epoch"], value)

    def judge(self, epoch: int, value: float) -> None:
        raise NotImplementedError

    def better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def best_so_far(self, curve: list[float], epoch: int) -> float:
        values = [v for v in curve[:epoch] if not math.isnan(v)]
        if not values:
            return math.nan
        return max(values) if self.mode == "max" else min(values)

    def others(self) -> list[list[float]]:
        return [read_curve(d / "metrics.csv", self.metric) for d in sorted(self.trials_dir.iterdir())
                if d.is_dir() and d != self.own_dir]


class MedianPruner(Pruner):
    """Prune when the trial's best so far is worse than the median of other trials' best at the
    same epoch (after `warmup` epochs, and once at least two other trials got that far)."""

    def __init__(self, *args, warmup: int = 1):
        super().__init__(*args)
        self.warmup = warmup

    def judge(self, epoch: int, value: float) -> None:
        if epoch < self.warmup:
            return
        own = self.own_best
        peers = [self.best_so_far(curve, epoch) for curve in self.others() if len(curve) >= epoch]
        peers = [p for p in peers if not math.isnan(p)]
        if len(peers) >= 2 and self.better(median := statistics.median(peers), own):
            raise TrialPruned(f"pruned at epoch {epoch}: {self.metric} {own:.4g} is worse than the median {median:.4g} of {len(peers)} trials")


class ASHAPruner(Pruner):
    """Asynchronous successive halving: at rung epochs min_epochs * eta^k, a trial continues only
    if it is in the top 1/eta of the trials that reached that rung so far."""

    def __init__(self, *args, eta: int = 3, min_epochs: int = 1):
        super().__init__(*args)
        self.eta, self.min_epochs = eta, min_epochs

    def is_rung(self, epoch: int) -> bool:
        rung = self.min_epochs
        while rung < epoch:
            rung *= self.eta
        return rung == epoch

    def judge(self, epoch: int, value: float) -> None:
        if not self.is_rung(epoch):
            return
        own = value
        values = [curve[epoch - 1] for curve in self.others() if len(curve) >= epoch] + [own]
        values = [v for v in values if not math.isnan(v)]
        if len(values) < self.eta:
            return  # too few trials at this rung to judge yet
        keep = max(1, len(values) // self.eta)
        ranked = sorted(values, reverse=self.mode == "max")
        if self.better(ranked[keep - 1], own):
            raise TrialPruned(f"pruned at epoch {epoch} (rung of successive halving): {self.metric} {own:.4g} is not in the top {keep} of {len(values)}")


def make_pruner(rule: str, trials_dir: Path, own_dir: Path, metric: str, mode: str):
    if rule not in RULES:
        raise UserError(f"--prune {rule} is not a pruning rule: choose one of {', '.join(RULES)}")
    if rule == "median":
        return MedianPruner(trials_dir, own_dir, metric, mode)
    if rule == "asha":
        return ASHAPruner(trials_dir, own_dir, metric, mode)
    return None
