"""The epoch loop shared by every command: train, validate, select, stop.

`fit` reads top to bottom: one training epoch, one validation pass, bookkeeping of the best
epoch, the epoch-level scheduler step, then the callbacks' `on_epoch_end` (metrics.csv,
checkpoints, the printed line, pruning, a user's own). Nothing here grows with the epoch count.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import torch
from torch import nn

from dlcli.engine.callbacks import Callback, CallbackList
from dlcli.engine.loop import TimedBatches, predict, train_epoch
from dlcli.engine.metrics import as_numpy, epoch_scores, score
from dlcli.engine.optim import current_lr
from dlcli.engine.state import BatchSource, FitState, Session
from dlcli.errors import RunFailed, TrialPruned
from dlcli.interrupts import ctrl_c_deferred


class NonFiniteLoss(RunFailed):
    """The training loss became NaN or infinite."""


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
