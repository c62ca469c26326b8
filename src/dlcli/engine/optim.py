"""Optimizer and scheduler from config, with weight decay that can skip biases and norm weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dlcli.factory import call_target

OPTIM_KEYS = ("decay_bias_and_norm",)  # handled here, not passed to torch.optim
SCHED_KEYS = ("interval",)


def parameter_groups(model: nn.Module, weight_decay: float, decay_bias_and_norm: bool) -> list[dict]:
    """One group with weight decay and one without; 1-D parameters (biases, norm scales) go
    without unless asked, since decaying them hurts more than it regularizes."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if decay_bias_and_norm or not weight_decay:
        return [{"params": trainable, "weight_decay": weight_decay}]
    decay = [p for p in trainable if p.ndim > 1]
    no_decay = [p for p in trainable if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(optim_cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = parameter_groups(model, float(optim_cfg.get("weight_decay", 0.0) or 0.0), bool(optim_cfg.get("decay_bias_and_norm", False)))
    return call_target(optim_cfg, "optim", skip=OPTIM_KEYS, params=groups)


@dataclass
class Schedule:
    """A torch scheduler and when it steps: after each batch ('step') or each epoch ('epoch')."""

    scheduler: object | None
    interval: str = "epoch"

    @property
    def needs_metric(self) -> bool:
        return isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

    def step_epoch(self, monitored_value: float) -> None:
        if self.scheduler is None or self.interval != "epoch":
            return
        if self.needs_metric:
            self.scheduler.step(monitored_value)
        else:
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None and state:
            self.scheduler.load_state_dict(state)


def build_scheduler(sched_cfg: DictConfig, optimizer, steps_per_epoch: int, monitor_mode: str) -> Schedule:
    if not sched_cfg.get("_target_"):
        return Schedule(None)
    cfg = OmegaConf.to_container(sched_cfg, resolve=True)
    # Values only the run knows: batches per epoch (one-cycle) and whether the monitor is min or max.
    if cfg.get("steps_per_epoch") == "auto":
        cfg["steps_per_epoch"] = steps_per_epoch
    if cfg.get("mode") == "auto":
        cfg["mode"] = monitor_mode
    interval = cfg.get("interval", "epoch")
    scheduler = call_target(OmegaConf.create(cfg), "sched", skip=SCHED_KEYS, optimizer=optimizer)
    return Schedule(scheduler, interval)


def current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
