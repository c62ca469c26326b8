"""Schedulers that torch.optim.lr_scheduler composes but does not name."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LinearLR, SequentialLR

from dlcli.constraints import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE_INT, Interval, constrained
from dlcli.errors import UserError


@constrained(warmup_epochs=NON_NEGATIVE_INT, epochs=POSITIVE_INT, start_factor=Interval(0, 1, closed="right"), eta_min=NON_NEGATIVE)
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
