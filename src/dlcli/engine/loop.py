"""The inner loops: one training epoch over in-memory tensors, and batched prediction.

Small data lives on the device as tensors and is batched by indexing a seeded permutation; no
DataLoader sits between the reader and loss.backward().
"""

from __future__ import annotations

import time

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn


@dataclass
class StepConfig:
    """How each optimization step is taken."""

    batch_size: int
    precision: str = "32"  # 32 | bf16 (bfloat16 autocast) | 16 (float16 autocast + GradScaler, CUDA only)
    grad_clip: float | None = None
    grad_clip_mode: str = "norm"
    l1: float = 0.0  # optim.l1: strength * sum |w| over l1_params is added to what is minimized
    l1_params: tuple = ()


@dataclass
class EpochResult:
    loss_sum: torch.Tensor  # summed per-sample loss over the epoch, 0-d, on the device
    count: int
    outputs: torch.Tensor  # predicted classes (classification) or outputs (regression), on the device
    targets: torch.Tensor
    steps: int = 0  # optimizer steps taken (batches trained)


AUTOCAST_DTYPES = {"16": torch.float16, "bf16": torch.bfloat16}  # trainer.precision -> autocast's dtype


def autocast(device: torch.device, precision: str):
    """Mixed precision for trainer.precision=16|bf16 (the run checked the device can do it)."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class TimedBatches:
    """Batches, counting the seconds spent waiting for them (reading, decoding, augmenting): the
    share of an epoch the input pipeline costs, for the diagnosis."""

    def __init__(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]):
        self._batches, self.seconds = iter(batches), 0.0

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        started = time.perf_counter()
        try:
            return next(self._batches)
        finally:
            self.seconds += time.perf_counter() - started


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    step: StepConfig,
    scaler: torch.amp.GradScaler | None = None,
    step_scheduler=None,
    on_batch_end: Callable[[int, torch.Tensor], None] | None = None,  # (batch size, batch loss)
    after_backward: Callable[[nn.Module], None] | None = None,
    weight: Callable[[int, int], float] | None = None,  # (batch index, its rows here) -> this rank's share of the step
    keep_outputs: bool = True,  # False when the epoch's metric is read from the loss alone (perplexity)
) -> EpochResult:
    """One pass over `batches` (already shuffled).

    Per batch only the loss, the outputs (classes for classification) and the targets are kept,
    on the device; they are reduced once at the end, so the loop adds almost nothing to the
    hand-written forward/backward/step. Without `keep_outputs` the epoch's outputs and targets are empty.
    """
    model.train()
    loss_sum, count, steps, outputs_seen, targets_seen = None, 0, 0, [], []
    for index, (x, y) in enumerate(batches):
        outputs, loss = train_step(model, optimizer, loss_fn, x, y, step, scaler, after_backward,
                                   weight(index, len(y)) if weight is not None else 1.0)
        if step_scheduler is not None:
            step_scheduler.step()
        size, loss = len(y), loss.detach()
        loss_sum = loss * size if loss_sum is None else loss_sum.add_(loss, alpha=size)
        count, steps = count + size, steps + 1
        if keep_outputs:
            outputs = outputs.detach()
            outputs_seen.append(outputs.argmax(dim=-1) if y.dtype == torch.long else outputs)  # classes (N,), or next tokens (N, T)
            targets_seen.append(y)
        if on_batch_end is not None:
            on_batch_end(size, loss)
    if not count:
        empty = torch.zeros(0)
        return EpochResult(loss_sum=torch.zeros(()), count=0, outputs=empty, targets=empty)
    return EpochResult(loss_sum=loss_sum.float(), count=count, outputs=_joined(outputs_seen, loss_sum),
                       targets=_joined(targets_seen, loss_sum), steps=steps)


def _joined(parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """The batches' tensors as one (none kept: an empty one on the loss's device)."""
    if not parts:
        return like.new_zeros(0)
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def train_step(model, optimizer, loss_fn, x, y, step: StepConfig, scaler=None, after_backward=None,
               weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimization step on one batch: forward, loss, backward, (clip), update. `weight` scales
    what is minimized (not the loss reported): DistributedDataParallel averages the ranks'
    gradients, so a rank holding more of an uneven last batch must count for more."""
    if step.precision != "32":
        with autocast(x.device, step.precision):
            outputs = model(x)
            loss = loss_fn(outputs, y)
    else:
        outputs = model(x)
        loss = loss_fn(outputs, y)
    objective = loss if weight == 1.0 else loss * weight
    if step.l1:  # the reported loss stays the data loss, comparable with the validation loss
        objective = objective + step.l1 * sum(p.abs().sum() for p in step.l1_params)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(objective).backward()
        scaler.unscale_(optimizer)  # clip (and show callbacks) true gradients, not scaled ones
        _clip(model, step)
        if after_backward is not None:
            after_backward(model)
        scaler.step(optimizer)
        scaler.update()
    else:
        objective.backward()
        if step.grad_clip is not None:
            _clip(model, step)
        if after_backward is not None:
            after_backward(model)
        optimizer.step()
    return outputs, loss


def _clip(model: nn.Module, step: StepConfig) -> None:
    if step.grad_clip is None:
        return
    if step.grad_clip_mode == "value":
        nn.utils.clip_grad_value_(model.parameters(), step.grad_clip)
    else:
        nn.utils.clip_grad_norm_(model.parameters(), step.grad_clip)


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], precision: str = "32",
            on_device: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Model outputs (float32) and targets for every sample, in order, in eval mode; on the CPU
    unless `on_device` (validation keeps them there and reads back only the scores)."""
    model.eval()
    outputs, targets = [], []
    for x, y in batches:
        with autocast(x.device, precision):
            out = model(x).float()
        outputs.append(out if on_device else out.cpu())
        targets.append(y if on_device else y.cpu())
    if not outputs:
        return torch.empty(0), torch.empty(0)
    if len(outputs) == 1:
        return outputs[0], targets[0]
    return torch.cat(outputs), torch.cat(targets)
