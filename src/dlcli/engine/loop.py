"""The inner loops: one training epoch over in-memory tensors, and batched prediction.

Small data lives on the device as tensors and is batched by indexing a seeded permutation; no
DataLoader sits between the reader and loss.backward().
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass
class StepConfig:
    """How each optimization step is taken."""

    batch_size: int
    amp: bool = False  # float16 autocast + GradScaler (CUDA only)
    grad_clip: float | None = None
    grad_clip_mode: str = "norm"


@dataclass
class EpochResult:
    loss_sum: float  # summed per-sample loss over the epoch
    correct: float  # correctly classified samples (classification)
    count: int
    finite: bool


def autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    features: torch.Tensor,
    targets: torch.Tensor,
    step: StepConfig,
    generator: torch.Generator,
    scaler: torch.amp.GradScaler | None = None,
    step_scheduler=None,
    on_batch: Callable[[int, torch.Tensor], None] | None = None,  # (batch size, batch loss)
) -> EpochResult:
    """One pass over (features, targets) in a fresh seeded order.

    Per batch only the loss and the predicted classes are kept (on the device); they are reduced
    once at the end, so the loop adds almost nothing to the hand-written forward/backward/step.
    """
    model.train()
    device = features.device
    count = len(features)
    order = torch.randperm(count, generator=generator).to(device)
    classify = targets.dtype == torch.long
    losses, predicted, sizes = [], [], []
    for start in range(0, count, step.batch_size):
        rows = order[start : start + step.batch_size]
        if len(rows) == 1 and count > 1:
            break  # a lone trailing sample breaks batch norm and adds only noise
        outputs, loss = train_step(model, optimizer, loss_fn, features[rows], targets[rows], step, scaler)
        if step_scheduler is not None:
            step_scheduler.step()
        losses.append(loss.detach())
        sizes.append(len(rows))
        if classify:
            predicted.append(outputs.detach().argmax(dim=1))
        if on_batch is not None:
            on_batch(len(rows), loss)
    seen = sum(sizes)
    if seen == 0:
        return EpochResult(loss_sum=0.0, correct=0.0, count=0, finite=True)
    loss_sum = float(torch.stack(losses).float() @ torch.tensor(sizes, dtype=torch.float32, device=device))
    correct = float((torch.cat(predicted) == targets[order[:seen]]).sum()) if classify else 0.0
    return EpochResult(loss_sum=loss_sum, correct=correct, count=seen, finite=math.isfinite(loss_sum))


def train_step(model, optimizer, loss_fn, x, y, step: StepConfig, scaler=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimization step on one batch: forward, loss, backward, (clip), update."""
    with autocast(x.device, step.amp):
        outputs = model(x)
        loss = loss_fn(outputs, y)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip true gradients, not scaled ones
        _clip(model, step)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        _clip(model, step)
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
def predict(model: nn.Module, features: torch.Tensor, batch_size: int, amp: bool = False) -> torch.Tensor:
    """Model outputs for every row, in order, in eval mode (float32, on the CPU)."""
    model.eval()
    outputs = []
    for start in range(0, len(features), batch_size):
        with autocast(features.device, amp):
            outputs.append(model(features[start : start + batch_size]).float().cpu())
    if not outputs:
        return torch.empty(0)
    return torch.cat(outputs)


@torch.no_grad()
def mean_loss(loss_fn: nn.Module, outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return float(loss_fn(outputs, targets.cpu()))
