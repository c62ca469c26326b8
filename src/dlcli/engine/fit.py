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
from dlcli.engine.distributed import World, buffers_of_rank_zero, gather_in_order, summed
from dlcli.engine.language import LANGUAGE_MODEL, metric_reads_outputs, predict_tokens
from dlcli.engine.loop import EpochResult, TimedBatches, predict, train_epoch
from dlcli.engine.metrics import as_numpy, epoch_scores, score
from dlcli.engine.optim import current_lr
from dlcli.engine.state import BatchSource, FitState, Session
from dlcli.errors import RunFailed, TrialPruned
from dlcli.system.interrupts import GracefulStop, ctrl_c_deferred


class NonFiniteLoss(RunFailed):
    """The training loss became NaN or infinite."""


def evaluate_outputs(session: Session, data: BatchSource, model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor, float, dict]:
    """Outputs, targets, loss and task metrics (scikit-learn) on every sample of `data`: for reports.
    `model` stands in for the session's (test-time augmentation wraps it)."""
    model = model if model is not None else session.model
    if session.task == LANGUAGE_MODEL:  # logits reduced batch by batch: (N, T, V) is never held whole
        outputs, targets, mean = predict_tokens(model, data.in_order(session.eval_batch_size), session.loss_fn, session.step.precision)
        outputs, targets, loss = outputs.cpu(), targets.cpu(), float(mean)
        return outputs, targets, loss, score(session.task, as_numpy(outputs), as_numpy(targets), loss=loss)
    outputs, targets = predict(model, data.in_order(session.eval_batch_size), session.step.precision)
    metrics = score(session.task, as_numpy(outputs), as_numpy(targets), session.target_std, session.target_mean,
                    session.target_transform)
    with torch.no_grad():  # on the loss's device: its class weights or pos_weight live there
        loss = float(session.loss_fn(outputs.to(session.device), targets.to(session.device)))
    return outputs, targets, loss, metrics


def validate(session: Session) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation loss and the task metric as 0-d tensors on the device (read once per epoch); with
    several ranks each predicts its shard and every rank scores all of them, each sample once."""
    world = session.world
    batches = session.val_data.in_order(session.eval_batch_size, world)
    if session.task == LANGUAGE_MODEL:  # logits reduced batch by batch; each rank's mean weighed by its windows
        outputs, targets, mean = predict_tokens(session.evaluation_module, batches, session.loss_fn, session.step.precision)
        loss = summed(mean * len(targets), world) / summed(mean.new_tensor(float(len(targets))), world)
        outputs, targets = gather_in_order(outputs, targets, world)
        return loss, epoch_scores(session.task, outputs, targets, loss=loss)[session.metric]
    outputs, targets = predict(session.evaluation_module, batches, session.step.precision, on_device=True)
    outputs, targets = gather_in_order(outputs, targets, world)
    with torch.no_grad():
        loss = session.loss_fn(outputs, targets)
    return loss, epoch_scores(session.task, outputs, targets, session.target_std, session.target_mean,
                              session.target_transform)[session.metric]


def rank_weight(count: int, batch_size: int, world: World):
    """With several ranks: (batch index, this rank's rows) -> its share of the step's gradient,
    world size x its rows / the global batch's rows, so that DDP's average over the ranks is the
    one-process mean over the batch (1 for every batch but an uneven last one)."""
    if not world.active:
        return None
    batches = math.ceil(count / batch_size)
    last = count - batch_size * (batches - 1)
    return lambda index, rows: world.size * rows / (last if index == batches - 1 else batch_size)


def across_ranks(result: EpochResult, world: World) -> EpochResult:
    """One rank's epoch as the whole epoch every rank trained: losses and counts summed, outputs and
    targets gathered (the training metric is then the one process's)."""
    if not world.active:
        return result
    outputs, targets = gather_in_order(result.outputs, result.targets, world)
    count = int(summed(torch.tensor(float(result.count)), world))
    return EpochResult(loss_sum=summed(result.loss_sum, world), count=count, outputs=outputs, targets=targets,
                       steps=result.steps)  # the ranks step together


def fit(session: Session, state: FitState, callbacks: Sequence[Callback] = ()) -> FitState:
    """Train from state.epoch + 1 to session.epochs (or an early stop); callbacks see every step."""
    hooks = CallbackList(callbacks)
    step_scheduler = session.schedule.scheduler if session.schedule.interval == "step" else None
    status = "failed"
    stop_requests = collective_stop(session.world)
    try:
        if session.world.active:
            stop_requests.begin()
        hooks.on_fit_start(session, state)
        first = session.epochs + 1 if state.stopped_early else state.epoch + 1  # a finished early stop stays stopped
        for epoch in range(first, session.epochs + 1):
            hooks.on_epoch_start(epoch)
            lr = current_lr(session.optimizer)
            started = time.perf_counter()
            batches = TimedBatches(session.train_data.shuffled(session.step.batch_size, session.generator, session.world))
            result = train_epoch(session.training_module, session.optimizer, session.loss_fn, batches, session.step,
                                 session.scaler, step_scheduler, hooks.batch_end, hooks.after_backward,
                                 rank_weight(len(session.train_data), session.step.batch_size, session.world),
                                 metric_reads_outputs(session.task, session.metric))
            result = across_ranks(result, session.world)
            train_seconds = time.perf_counter() - started
            train_metric = epoch_scores(session.task, result.outputs, result.targets, session.target_std, session.target_mean,
                                        session.target_transform, loss=result.loss_sum / max(result.count, 1))[session.metric]
            buffers_of_rank_zero(session.model, session.world)
            val_loss, val_metric = validate(session) if session.val_data is not None else (result.loss_sum.new_tensor(math.nan),) * 2
            train_loss_sum, train_metric, val_loss, val_metric = torch.stack(
                [result.loss_sum.double(), train_metric.double(), val_loss.double(), val_metric.double()]).tolist()
            if not math.isfinite(train_loss_sum):
                session.stopped_together = True  # the loss is summed over the ranks: every rank sees it
                raise NonFiniteLoss(
                    f"the training loss became {train_loss_sum} in epoch {epoch}: the run is stopped and "
                    f"the last good checkpoint kept; try a lower optim.lr (now {lr:g}) or trainer.grad_clip=1.0"
                )
            if session.val_data is not None and not math.isfinite(val_loss):  # this epoch's weights are no good
                session.stopped_together = True  # gathered: every rank sees it
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
                state.steps += result.steps  # with the epoch: a checkpoint holds both or neither
                if session.val_data is None:  # no validation split (a refit): the newest epoch is the one to keep
                    improved = state.take_latest(epoch)
                else:
                    improved = state.record(row, session.monitor, session.mode, session.min_delta)
                session.schedule.step_epoch(row[session.monitor])
                stop = session.patience is not None and state.epochs_without_improvement >= session.patience
                state.stopped_early = stop and epoch < session.epochs
                ended = None
                try:
                    hooks.on_epoch_end(state, row, improved)
                except Exception as exc:  # a pruner's stop, a callback's failure: on rank 0, where callbacks run
                    if not session.world.active:
                        raise
                    ended = exc
                if session.world.active:  # every rank learns what any rank decided, and all act alike
                    pressed, stopped = agree(session.world, stop_requests.requested, ended is not None)
                    session.stopped_together = ended is not None or stopped or pressed
                    if ended is not None:
                        raise ended
                    if stopped:
                        raise StoppedWithRankZero(f"rank 0 stopped the run after epoch {epoch}")
                    if pressed:  # a Ctrl-C on any rank: every rank stops after this epoch, which is kept
                        raise KeyboardInterrupt
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
        stop_requests.end()
        hooks.on_fit_end(state, status)
    return state


def collective_stop(world: World) -> GracefulStop:
    """Ctrl-C (or SIGTERM, SIGHUP) with several ranks: a rank that stopped alone would leave the
    others waiting in a collective, so the first stop request on any rank is only recorded, and
    after each epoch the ranks agree (a sum over them) whether to stop; all then stop together,
    with the epoch kept. A second stops that process at once (the launcher then ends the others).
    A request that arrived before the fit began (a worker starting up records them) counts."""
    return GracefulStop("this epoch on every process" if world.main else None)  # said once, by rank 0


class StoppedWithRankZero(Exception):
    """Rank 0 ended the run (a pruner, a callback that failed): the other ranks end with it."""


def agree(world: World, *flags: bool) -> list[bool]:
    """Each flag, true when it is true on any rank (one sum over the ranks for all of them)."""
    totals = summed(torch.tensor([float(flag) for flag in flags]), world)
    return [bool(total > 0) for total in totals.tolist()]
