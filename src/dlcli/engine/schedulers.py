"""Schedulers that torch.optim.lr_scheduler composes but does not name, and a schedule's counts
given as shares of the run."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LinearLR, SequentialLR

from dlcli.config.constraints import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE_INT, RUN_SHARE, Interval, constrained, one_of
from dlcli.errors import UserError

# A schedule's settings that count its steps (epochs, or batches when it steps every batch), with the
# least whole count each may become and whether it marks a point inside the run (a milestone past the
# last step would never act). Given as a share of the run (0 < share < 1), they are turned into counts
# from the run's own length, so an option's defaults fit a run of 3 epochs as well as one of 300.
RUN_COUNTS = {"milestones": (1, True), "step_size": (1, False), "step_size_up": (1, False), "step_size_down": (1, False),
              "warmup_epochs": (0, True)}
ROUNDING_SLACK = 1e-9  # 0.1 x 30 is 3.0000000000000004 in floating point: still 3 steps, not 4


def is_run_share(value) -> bool:
    return isinstance(value, float) and 0 < value < 1


def has_run_shares(sched: dict) -> bool:
    """Does this schedule take any of its counts from the run's length (so it is planned over it)?"""
    return any(is_run_share(v) for key in RUN_COUNTS for v in _as_list(sched.get(key)))


def resolve_run_shares(sched: dict, run_length: int, unit: str = "epochs") -> tuple[dict, list[str]]:
    """The schedule's settings with each share of the run turned into a whole count of the run's
    `run_length` steps (`unit`: epochs or batches), rounded up, before the run's last step for a point
    inside it, and at least the setting's least; and a line for the run log per setting turned."""
    resolved, said = dict(sched), []
    for key, (least, inside) in RUN_COUNTS.items():
        value = sched.get(key)
        if not any(is_run_share(v) for v in _as_list(value)):
            continue
        most = run_length - 1 if inside else run_length
        # rounded up: a share of a short run still takes a step (a warmup of 0.1 warms up one epoch of 4)
        counts = [max(least, min(most, math.ceil(v * run_length - ROUNDING_SLACK))) if is_run_share(v) else v
                  for v in _as_list(value)]
        resolved[key] = counts if isinstance(value, (list, tuple)) else counts[0]
        steps = f"{run_length} {unit.removesuffix('s') if run_length == 1 else unit}"
        said.append(f"sched.{key}={_shown(value)} of the run's {steps}: {_shown(resolved[key])}")
    return resolved, said


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _shown(value) -> str:
    return "[" + ", ".join(f"{v:g}" for v in value) + "]" if isinstance(value, (list, tuple)) else f"{value:g}"


@constrained(warmup_epochs=one_of(NON_NEGATIVE_INT, RUN_SHARE), epochs=POSITIVE_INT, start_factor=Interval(0, 1, closed="right"),
             eta_min=NON_NEGATIVE)
def warmup_cosine(optimizer: Optimizer, warmup_epochs: int, epochs: int, start_factor: float = 0.1, eta_min: float = 0.0):
    """Linear warmup from start_factor*lr to lr over warmup_epochs, then cosine decay to eta_min."""
    if warmup_epochs >= epochs:  # a relation between two settings
        raise UserError(f"sched.warmup_epochs={warmup_epochs} must be below trainer.epochs={epochs}")
    cosine = CosineAnnealingLR(optimizer, T_max=epochs - warmup_epochs, eta_min=eta_min)
    if warmup_epochs == 0:
        return cosine
    warmup = LinearLR(optimizer, start_factor=start_factor, end_factor=1.0, total_iters=warmup_epochs)
    return SequentialLR(optimizer, schedulers=[warmup, cosine], milestones=[warmup_epochs])


class InverseTimeDecay:
    """1 / (1 + decay * t): a picklable factor (a checkpoint saves LambdaLR's state, not a lambda)."""

    def __init__(self, decay: float):
        self.decay = decay

    def __call__(self, epoch: int) -> float:
        return 1.0 / (1.0 + self.decay * epoch)


@constrained(decay=NON_NEGATIVE)
def inverse_time(optimizer: Optimizer, decay: float = 0.5):
    """The notes' inverse-time decay, lr_t = lr / (1 + decay * t), t counted in epochs."""
    return LambdaLR(optimizer, InverseTimeDecay(float(decay)))
