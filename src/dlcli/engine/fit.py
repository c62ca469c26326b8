"""The epoch loop shared by every command: train, validate, select, stop.

`fit` reads top to bottom: one training epoch, one validation pass, bookkeeping of the best
epoch, the epoch-level scheduler step, then the caller's `on_epoch_end` (checkpoints, metrics.csv).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from dlcli.engine.batches import LoaderBatches, TensorBatches
from dlcli.engine.loop import StepConfig, mean_loss, predict, train_epoch
from dlcli.engine.metrics import as_numpy, score
from dlcli.engine.optim import Schedule, current_lr
from dlcli.errors import RunFailed


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
    val_data: BatchSource
    task: str
    metric: str  # accuracy | rmse
    epochs: int
    eval_batch_size: int
    monitor: str  # e.g. val_accuracy
    mode: str  # max | min
    patience: int | None = None  # early stopping (None: off)
    min_delta: float = 0.0
    target_mean: float = 0.0
    target_std: float = 1.0
    scaler: torch.amp.GradScaler | None = None


@dataclass
class FitState:
    """Progress of a run; saved in every checkpoint so a resumed run continues exactly."""

    epoch: int = 0  # epochs completed
    best_value: float | None = None
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)  # one metrics.csv row per epoch

    def record(self, row: dict, monitor: str, mode: str, min_delta: float) -> bool:
        """Append the epoch's row; True when it is the best epoch so far on the monitor."""
        self.history.append(row)
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


def evaluate_outputs(session: Session, data: BatchSource) -> tuple[torch.Tensor, torch.Tensor, float, dict]:
    """Outputs, targets, loss and task metrics of the current model on every sample of `data`."""
    outputs, targets = predict(session.model, data.in_order(session.eval_batch_size), session.step.amp)
    metrics = score(session.task, as_numpy(outputs), as_numpy(targets), session.target_std, session.target_mean)
    return outputs, targets, mean_loss(session.loss_fn, outputs, targets), metrics


def fit(
    session: Session,
    state: FitState,
    on_epoch_end: Callable[[FitState, bool], None],
    on_batch: Callable[[int, torch.Tensor], None] | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
) -> FitState:
    step_scheduler = session.schedule.scheduler if session.schedule.interval == "step" else None
    if state.stopped_early:  # a resumed run that had already stopped early trains no further
        return state
    for epoch in range(state.epoch + 1, session.epochs + 1):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        lr = current_lr(session.optimizer)
        started = time.perf_counter()
        batches = session.train_data.shuffled(session.step.batch_size, session.generator)
        result = train_epoch(
            session.model, session.optimizer, session.loss_fn, batches, session.step, session.scaler, step_scheduler, on_batch
        )
        train_seconds = time.perf_counter() - started
        if not result.finite:
            raise NonFiniteLoss(
                f"the training loss became {result.loss_sum} in epoch {epoch}: the run is stopped and "
                f"the last good checkpoint kept; try a lower optim.lr (now {lr:g}) or trainer.grad_clip=1.0"
            )
        train_metrics = score(session.task, as_numpy(result.outputs), as_numpy(result.targets), session.target_std, session.target_mean)
        _, _, val_loss, val_metrics = evaluate_outputs(session, session.val_data)
        if not math.isfinite(val_loss):  # outputs are NaN/inf: this epoch's weights are no good
            raise NonFiniteLoss(
                f"the validation loss became {val_loss} after epoch {epoch}: the run is stopped and the last good "
                f"checkpoint kept; try a lower optim.lr (now {lr:g}) or trainer.grad_clip=1.0"
            )
        row = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": result.loss_sum / result.count,
            f"train_{session.metric}": train_metrics[session.metric],
            "val_loss": val_loss,
            f"val_{session.metric}": val_metrics[session.metric],
            "seconds": time.perf_counter() - started,
            "samples_per_second": result.count / train_seconds if train_seconds > 0 else float("nan"),
        }
        improved = state.record(row, session.monitor, session.mode, session.min_delta)
        session.schedule.step_epoch(row[session.monitor])
        stop = session.patience is not None and state.epochs_without_improvement >= session.patience
        state.stopped_early = stop and epoch < session.epochs
        on_epoch_end(state, improved)
        if stop:
            break
    return state
