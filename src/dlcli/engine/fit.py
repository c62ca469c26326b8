"""The epoch loop shared by every command: train, validate, select, stop.

`fit` reads top to bottom: one training epoch, one validation pass, bookkeeping of the best
epoch, the epoch-level scheduler step, then the callbacks' `on_epoch_end` (metrics.csv,
checkpoints, the printed line, pruning, a user's own). Nothing here grows with the epoch count.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from dlcli.engine.batches import LoaderBatches, TensorBatches
from dlcli.engine.callbacks import Callback, CallbackList
from dlcli.engine.loop import StepConfig, TimedBatches, predict, train_epoch
from dlcli.engine.metrics import as_numpy, epoch_scores, score
from dlcli.engine.optim import Schedule, current_lr
from dlcli.errors import RunFailed, TrialPruned
from dlcli.interrupts import ctrl_c_deferred


BatchSource = TensorBatches | LoaderBatches


class NonFiniteLoss(RunFailed):
    """The training loss became NaN or infinite."""


@dataclass
class Session:
    """Everything one training run needs, already built from config and placed on the device."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    loss_fn: nn.Module
    device: torch.device
    step: StepConfig
    generator: torch.Generator  # the shuffling order, saved in checkpoints for exact resume
    train_data: BatchSource
    val_data: BatchSource | None  # None: no validation split (split.val=0), so the last epoch is kept
    task: str
    metric: str  # accuracy | rmse | ...
    epochs: int
    eval_batch_size: int
    monitor: str  # e.g. val_accuracy
    mode: str  # max | min
    patience: int | None = None  # early stopping (None: off)
    min_delta: float = 0.0
    target_mean: float = 0.0
    target_std: float = 1.0
    target_transform: str = "none"  # log | log1p: outputs are mapped back with exp | expm1 for the metrics
    scaler: torch.amp.GradScaler | None = None

    @property
    def loss_units(self) -> str | None:
        """What a regression's loss is measured on when it is not the target itself (a standardized
        or log target); its metrics are always in the target's own units. None: the target's units."""
        if self.task != "regression":
            return None
        standardized = self.target_std != 1.0 or self.target_mean != 0.0
        words = [*(["standardized"] if standardized else []), *([self.target_transform] if self.target_transform != "none" else [])]
        return " ".join([*words, "target"]) if words else None


@dataclass
class FitState:
    """Progress of a run, saved in every checkpoint so a resumed run continues exactly.
    Small and fixed in size: the per-epoch rows live in metrics.csv."""

    epoch: int = 0  # epochs completed
    best_value: float | None = None
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    stopped_early: bool = False

    def take_latest(self, epoch: int) -> bool:
        """Without a validation split every epoch is the best so far: best.pt is the last epoch."""
        self.epoch = self.best_epoch = epoch
        self.best_value, self.epochs_without_improvement = None, 0
        return True

    def record(self, row: dict, monitor: str, mode: str, min_delta: float) -> bool:
        """Take in the epoch's row; True when it is the best epoch so far on the monitor."""
        self.epoch = row["epoch"]
        value = row[monitor]
        if self.best_value is None:
            improved = math.isfinite(value)
        elif mode == "max":
            improved = value > self.best_value + min_delta
        else:
            improved = value < self.best_value - min_delta
        if improved:
            self.best_value, self.best_epoch, self.epochs_without_improvement = value, row["epoch"], 0
        else:
            self.epochs_without_improvement += 1
        return improved


def evaluate_outputs(session: Session, data: BatchSource, model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor, float, dict]:
    """Outputs, targets, loss and task metrics (scikit-learn) on every sample of `data`: for reports.
    `model` stands in for the session's (test-time augmentation wraps it)."""
    outputs, targets = predict(model or session.model, data.in_order(session.eval_batch_size), session.step.amp)
    metrics = score(session.task, as_numpy(outputs), as_numpy(targets), session.target_std, session.target_mean,
                    session.target_transform)
    with torch.no_grad():  # on the loss's device: its class weights or pos_weight live there
        loss = float(session.loss_fn(outputs.to(session.device), targets.to(session.device)))
    return outputs, targets, loss, metrics


def validate(session: Session) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation loss and the task metric as 0-d tensors on the device (read once per epoch)."""
    outputs, targets = predict(session.model, session.val_data.in_order(session.eval_batch_size), session.step.amp,
                               on_device=True)
    with torch.no_grad():
        loss = session.loss_fn(outputs, targets)
    return loss, epoch_scores(session.task, outputs, targets, session.target_std, session.target_mean,
                              session.target_transform)[session.metric]


def fit(session: Session, state: FitState, callbacks: Sequence[Callback] = ()) -> FitState:
    """Train from state.epoch + 1 to session.epochs (or an early stop); callbacks see every step."""
    hooks = CallbackList(callbacks)
    step_scheduler = session.schedule.scheduler if session.schedule.interval == "step" else None
    status = "failed"
    try:
        hooks.on_fit_start(session, state)
        first = session.epochs + 1 if state.stopped_early else state.epoch + 1  # a finished early stop stays stopped
        for epoch in range(first, session.epochs + 1):
            hooks.on_epoch_start(epoch)
            lr = current_lr(session.optimizer)
            started = time.perf_counter()
            batches = TimedBatches(session.train_data.shuffled(session.step.batch_size, session.generator))
            result = train_epoch(session.model, session.optimizer, session.loss_fn, batches, session.step, session.scaler,
                                 step_scheduler, hooks.batch_end, hooks.after_backward)
            train_seconds = time.perf_counter() - started
            train_metric = epoch_scores(session.task, result.outputs, result.targets, session.target_std,
                                        session.target_mean, session.target_transform)[session.metric]
            val_loss, val_metric = validate(session) if session.val_data is not None else (result.loss_sum.new_tensor(math.nan),) * 2
            train_loss_sum, train_metric, val_loss, val_metric = torch.stack(
                [result.loss_sum.double(), train_metric.double(), val_loss.double(), val_metric.double()]).tolist()
            if not math.isfinite(train_loss_sum):
                raise NonFiniteLoss(
                    f"the training loss became {train_loss_sum} in epoch {epoch}: the run is stopped and "
                    f"the last good checkpoint kept; try a lower optim.lr (now {lr:g}) or trainer.grad_clip=1.0"
                )
            if session.val_data is not None and not math.isfinite(val_loss):  # this epoch's weights are no good
                raise NonFiniteLoss(
                    f"the validation loss became {val_loss} after epoch {epoch}: the run is stopped and the last good "
                    f"checkpoint kept; try a lower optim.lr (now {lr:g}) or trainer.grad_clip=1.0"
                )
            row = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": train_loss_sum / result.count,
                f"train_{session.metric}": train_metric,
                "val_loss": val_loss,
                f"val_{session.metric}": val_metric,
                "seconds": time.perf_counter() - started,
                "samples_per_second": result.count / train_seconds if train_seconds > 0 else float("nan"),
                # the share of the training time spent waiting for batches (not a metrics.csv column)
                "data_share": batches.seconds / train_seconds if train_seconds > 0 else 0.0,
            }
            # The epoch's bookkeeping is whole: a Ctrl-C meanwhile is held until metrics.csv and the
            # checkpoint have taken the epoch, so stopping never splits them.
            with ctrl_c_deferred():
                if session.val_data is None:  # no validation split (a refit): the newest epoch is the one to keep
                    improved = state.take_latest(epoch)
                else:
                    improved = state.record(row, session.monitor, session.mode, session.min_delta)
                session.schedule.step_epoch(row[session.monitor])
                stop = session.patience is not None and state.epochs_without_improvement >= session.patience
                state.stopped_early = stop and epoch < session.epochs
                hooks.on_epoch_end(state, row, improved)
            if stop:
                break
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except TrialPruned:
        status = "pruned"
        raise
    finally:
        hooks.on_fit_end(state, status)
    return state
