"""Check config values at the boundary, with messages that name the bad value and the right kind."""

from __future__ import annotations

import math

from omegaconf import DictConfig

from dlcli.engine.metrics import TASK_METRICS
from dlcli.errors import UserError


def _number(cfg: DictConfig, key: str, *, integer: bool = False, minimum: float | None = None,
            below: float | None = None, allow_none: bool = False, exclusive_min: bool = False):
    value = cfg
    for part in key.split("."):
        value = value.get(part) if isinstance(value, DictConfig) else None
    if value is None and allow_none:
        return None
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise UserError(f"{key}={value} must be {kind}")
    if not math.isfinite(value):
        raise UserError(f"{key}={value} must be a finite number")
    if minimum is not None and (value < minimum or (exclusive_min and value == minimum)):
        relation = "above" if exclusive_min else "at least"
        raise UserError(f"{key}={value} must be {relation} {minimum:g}")
    if below is not None and value >= below:
        raise UserError(f"{key}={value} must be below {below:g}")
    return value


def _choice(key: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"{key}={value} is not valid: choose one of {', '.join(map(str, choices))}")


def validate_config(cfg: DictConfig) -> None:
    _number(cfg, "seed", integer=True, minimum=0)
    _number(cfg, "trainer.epochs", integer=True, minimum=1)
    _number(cfg, "trainer.batch_size", integer=True, minimum=1)
    _number(cfg, "trainer.eval_batch_size", integer=True, minimum=1)
    _number(cfg, "trainer.grad_clip", minimum=0, exclusive_min=True, allow_none=True)
    _choice("trainer.grad_clip_mode", cfg.trainer.grad_clip_mode, ("norm", "value"))
    _number(cfg, "trainer.label_smoothing", minimum=0, below=1)
    _choice("trainer.amp", cfg.trainer.amp, (True, False))
    _number(cfg, "trainer.early_stopping.patience", integer=True, minimum=1)
    _number(cfg, "trainer.early_stopping.min_delta", minimum=0)
    _number(cfg, "trainer.checkpoint_every", minimum=0, allow_none=True)  # absent in runs saved before it existed
    _choice("trainer.plots", cfg.trainer.get("plots", True), (True, False))
    _number(cfg, "optim.lr", minimum=0, exclusive_min=True)
    _number(cfg, "split.val", minimum=0, below=1)
    _number(cfg, "split.test", minimum=0, below=1)
    _number(cfg, "split.seed", integer=True, minimum=0)
    if cfg.sched.get("_target_"):
        _choice("sched.interval", cfg.sched.get("interval", "epoch"), ("epoch", "step"))
    if not str(cfg.name).strip() or "/" in str(cfg.name) or str(cfg.name).startswith("."):
        raise UserError(f"name={cfg.name} must be a plain directory name (no '/', not empty)")


def metric_for(cfg: DictConfig, task: str) -> str:
    """The task metric reported per epoch: trainer.metric, or the task's first (accuracy, rmse)."""
    metric = cfg.trainer.get("metric", "auto")
    if metric == "auto":
        return TASK_METRICS[task][0]
    _choice("trainer.metric", metric, ("auto", *TASK_METRICS[task]))
    return metric


def monitor_for(cfg: DictConfig, task: str) -> str:
    """The validation metric that picks the best checkpoint and drives early stopping."""
    metric = metric_for(cfg, task)
    allowed = ("val_loss", f"val_{metric}")
    monitor = cfg.trainer.monitor
    if monitor == "auto":
        return f"val_{metric}"
    _choice("trainer.monitor", monitor, ("auto", *allowed))
    return monitor
