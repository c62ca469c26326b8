"""Optimizer and scheduler from config, with weight decay that can skip biases and norm weights."""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dlcli.engine.schedulers import resolve_run_shares
from dlcli.errors import UserError, first_line
from dlcli.config.build import call_target, checked_once

REFERENCE_BATCH = 256  # the linear scaling rule: lr x batch_size / 256 (Goyal et al.)
FULL_BATCH_ONLY = ("torch.optim.Rprop",)  # sign-based steps: mini-batch noise flips the signs
SCHEDULERS = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def head_prefix(model: nn.Module) -> str:
    """The classifier head: what a model declares (torchvision passthrough), else its last linear layer."""
    declared = getattr(model, "head_name", None)
    if declared:
        return declared
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise UserError(f"optim.head_lr needs a model with a linear head; {type(model).__name__} has none")
    return linears[-1]


def parameter_groups(model: nn.Module, weight_decay: float, decay_bias_and_norm: bool, head_lr: float | None = None) -> list[dict]:
    """Parameter groups for the optimizer.

    Weight decay skips 1-D parameters (biases, norm scales) unless asked, since decaying them hurts
    more than it regularizes. With `head_lr`, the classifier head gets its own learning rate
    (fine-tuning: a fresh head learns fast while pretrained layers move slowly).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    prefix = head_prefix(model) if head_lr is not None else None
    parts = {"body": [], "head": []}
    for name, param in named:
        in_head = prefix is not None and (name == prefix or name.startswith(prefix + "."))
        parts["head" if in_head else "body"].append(param)
    groups = []
    for part, params in parts.items():
        extra = {"lr": float(head_lr)} if part == "head" and head_lr is not None else {}
        if not params:
            continue
        if decay_bias_and_norm or not weight_decay:
            groups.append({"params": params, "weight_decay": weight_decay, **extra})
        else:
            groups.append({"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay, **extra})
            groups.append({"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, **extra})
    return [g for g in groups if g["params"]]


def build_optimizer(optim_cfg: DictConfig, model: nn.Module, batch_size: int | None = None,
                    notes: list[str] | None = None) -> torch.optim.Optimizer:
    """The configured torch.optim optimizer over the model's parameter groups. With
    optim.scale_lr_with_batch the rates follow the linear scaling rule (said in `notes`). The
    settings dl reads itself (optim.head_lr, ...) are declared in dlcli.config.own_settings.GROUPS."""
    with checked_once(optim_cfg, "optim"):  # the user's values, before the rate is scaled: once
        return _built_optimizer(optim_cfg, model, batch_size, notes)


def _built_optimizer(optim_cfg: DictConfig, model: nn.Module, batch_size: int | None, notes: list[str] | None) -> torch.optim.Optimizer:
    head_lr = optim_cfg.get("head_lr")
    scale = optim_cfg.get("scale_lr_with_batch", False)
    if scale and batch_size:
        factor = batch_size / REFERENCE_BATCH
        optim_cfg = OmegaConf.create(OmegaConf.to_container(optim_cfg, resolve=True))
        optim_cfg.lr = float(optim_cfg.lr) * factor
        head_lr = head_lr * factor if head_lr is not None else None
        if notes is not None:
            notes.append(f"optim.scale_lr_with_batch: lr {optim_cfg.lr / factor:g} x batch {batch_size} / {REFERENCE_BATCH} "
                         f"= {optim_cfg.lr:g} (the linear scaling rule)")
    groups = parameter_groups(
        model, float(optim_cfg.get("weight_decay", 0.0) or 0.0), bool(optim_cfg.get("decay_bias_and_norm", False)), head_lr
    )
    if not groups:
        raise UserError("every parameter is frozen (model.freeze): nothing is left to train")
    optimizer = call_target(optim_cfg, "optim", expect=torch.optim.Optimizer, params=groups)
    if _needs_closure(optimizer):
        raise UserError(f"optim._target_={optim_cfg._target_} re-evaluates the loss inside step() (it needs a closure), which "
                        "dl's loop does not give: choose another optimizer (sgd, adam, adamw, ...)")
    return optimizer


def _needs_closure(optimizer) -> bool:
    try:
        closure = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return closure is not None and closure.default is inspect.Parameter.empty


def l1_penalty(optim_cfg: DictConfig, model: nn.Module) -> tuple[float, list]:
    """optim.l1 and the parameters it applies to: weights, not biases or norm parameters (1-D)."""
    strength = optim_cfg.get("l1", 0.0) or 0.0  # at least 0: dlcli.config.own_settings.GROUPS
    if not strength:
        return 0.0, []
    return float(strength), [p for p in model.parameters() if p.requires_grad and p.ndim > 1]


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


def build_scheduler(sched_cfg: DictConfig, optimizer, steps_per_epoch: int, monitor_mode: str, epochs: int,
                    notes: list[str] | None = None) -> Schedule:
    """The run's schedule; its counts given as shares of the run become counts of its `epochs`
    (or of its batches, for a schedule that steps every batch), said in `notes`."""
    if not sched_cfg.get("_target_"):
        return Schedule(None)
    with checked_once(sched_cfg, "sched"):  # the user's values, before shares and autos are filled in: once
        return _built_schedule(sched_cfg, optimizer, steps_per_epoch, monitor_mode, epochs, notes)


def _built_schedule(sched_cfg: DictConfig, optimizer, steps_per_epoch: int, monitor_mode: str, epochs: int,
                    notes: list[str] | None) -> Schedule:
    cfg = OmegaConf.to_container(sched_cfg, resolve=True)
    by_batch = cfg.get("interval", "epoch") == "step"
    cfg, said = resolve_run_shares(cfg, epochs * steps_per_epoch if by_batch else epochs, "batches" if by_batch else "epochs")
    if notes is not None:
        notes.extend(said)
    # Values only the run knows (GROUPS["sched"].filled_when_auto): batches per epoch (one-cycle), each
    # group's own rate and whether the monitor is min or max.
    if cfg.get("steps_per_epoch") == "auto":
        cfg["steps_per_epoch"] = steps_per_epoch
    if cfg.get("max_lr") == "auto":
        cfg["max_lr"] = [group["lr"] for group in optimizer.param_groups]
    if cfg.get("base_lr") == "auto":  # cyclic: from each group's own rate (optim.lr, head_lr, scaled or not)
        cfg["base_lr"] = [group["lr"] for group in optimizer.param_groups]
    if cfg.get("mode") == "auto":
        cfg["mode"] = monitor_mode
    interval = cfg.get("interval", "epoch")
    _rehearse(cfg, optimizer)
    scheduler = call_target(OmegaConf.create(cfg), "sched", expect=SCHEDULERS, expect_name="learning-rate scheduler",
                            optimizer=optimizer)
    return Schedule(scheduler, interval)


def _rehearse(cfg: dict, optimizer) -> None:
    """Step the same scheduler a few times on a stand-in optimizer, so settings that only fail
    when stepping (step_size=0, say) fail now, before the run directory exists."""
    groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": group["lr"]} for group in optimizer.param_groups]
    stand_in = torch.optim.SGD(groups, lr=optimizer.param_groups[0]["lr"], momentum=0.9)
    scheduler = call_target(OmegaConf.create(cfg), "sched", expect=SCHEDULERS, expect_name="learning-rate scheduler",
                            optimizer=stand_in)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "step before optimizer.step()": this is a rehearsal
            for _ in range(3):
                stand_in.step()
                scheduler.step(0.0) if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) else scheduler.step()
    except (ValueError, ZeroDivisionError, TypeError, IndexError) as exc:
        raise UserError(f"sched settings fail when stepping: {first_line(exc)}") from None


def current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
