"""The inner loops: one training epoch over in-memory tensors, and batched prediction.

Small data lives on the device as tensors and is batched by indexing a seeded permutation; no
DataLoader sits between the reader and loss.backward().
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterable

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
    count: int
    finite: bool
    outputs: torch.Tensor | None  # predicted classes (classification) or outputs (regression), CPU
    targets: torch.Tensor | None


def autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    step: StepConfig,
    scaler: torch.amp.GradScaler | None = None,
    step_scheduler=None,
    on_batch: Callable[[int, torch.Tensor], None] | None = None,  # (batch size, batch loss)
) -> EpochResult:
    """One pass over `batches` (already shuffled).

    Per batch only the loss, the outputs (classes for classification) and the targets are kept,
    on the device; they are reduced once at the end, so the loop adds almost nothing to the
    hand-written forward/backward/step.
    """
    model.train()
    losses, outputs_seen, targets_seen, sizes = [], [], [], []
    for x, y in batches:
        outputs, loss = train_step(model, optimizer, loss_fn, x, y, step, scaler)
        if step_scheduler is not None:
            step_scheduler.step()
        losses.append(loss.detach())
        sizes.append(len(y))
        outputs = outputs.detach()
        outputs_seen.append(outputs.argmax(dim=1) if y.dtype == torch.long else outputs)
        targets_seen.append(y)
        if on_batch is not None:
            on_batch(len(y), loss)
    if not sizes:
        return EpochResult(loss_sum=0.0, count=0, finite=True, outputs=None, targets=None)
    device = losses[0].device
    loss_sum = float(torch.stack(losses).float() @ torch.tensor(sizes, dtype=torch.float32, device=device))
    return EpochResult(
        loss_sum=loss_sum,
        count=sum(sizes),
        finite=math.isfinite(loss_sum),
        outputs=torch.cat(outputs_seen).float().cpu(),
        targets=torch.cat(targets_seen).cpu(),
    )


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
def predict(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Model outputs and targets for every sample, in order, in eval mode (float32, on the CPU)."""
    model.eval()
    outputs, targets = [], []
    for x, y in batches:
        with autocast(x.device, amp):
            outputs.append(model(x).float().cpu())
        targets.append(y.cpu())
    if not outputs:
        return torch.empty(0), torch.empty(0)
    return torch.cat(outputs), torch.cat(targets)


@torch.no_grad()
def mean_loss(loss_fn: nn.Module, outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return float(loss_fn(outputs, targets))
