"""Losses from the `loss/` config group, checked against the task.

Classification losses take the model's logits (N x classes); `bce` takes one logit per sample:
the model is built with one output, and a forward hook presents it as two logits [0, z], so
softmax gives [1 - sigmoid(z), sigmoid(z)] and every report, prediction and export reads it as any
other two-class model. Regression losses take the (standardized) output.
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.nn import functional

from dlcli.config.constraints import NON_NEGATIVE, POSITIVE, RATE, ListOf, Null, Options, constrained, nullable, one_of
from dlcli.errors import UserError
from dlcli.config.build import call_target
from dlcli.engine.language import LANGUAGE_MODEL, TokenCrossEntropy

CLASSIFICATION = {"dlcli.engine.losses.cross_entropy": "cross_entropy", "dlcli.engine.losses.FocalLoss": "focal",
                  "dlcli.engine.losses.BinaryCrossEntropy": "bce"}
REGRESSION = {"torch.nn.MSELoss": "mse", "torch.nn.L1Loss": "l1", "torch.nn.HuberLoss": "huber", "torch.nn.SmoothL1Loss": "smooth_l1"}


@constrained(label_smoothing=RATE, weight=one_of(Null(), Options(("balanced",)), ListOf(NON_NEGATIVE, 2)))
def cross_entropy(label_smoothing: float = 0.0, weight=None, class_weights: list[float] | None = None) -> nn.Module:
    """Cross-entropy; `weight` is resolved to `class_weights` by build_loss (balanced or given)."""
    tensor = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
    return nn.CrossEntropyLoss(weight=tensor, label_smoothing=label_smoothing)


@constrained(gamma=NON_NEGATIVE,  # 0 is plain cross-entropy
             alpha=nullable(one_of(POSITIVE, ListOf(POSITIVE, 2))))  # one weight, or one per class
class FocalLoss(nn.Module):
    def __init__(self, gamma: float = 2.0, alpha=None):
        super().__init__()
        self.gamma = float(gamma)
        if alpha is None:
            self.register_buffer("alpha", None)
        else:
            values = list(alpha) if isinstance(alpha, (list, tuple)) or type(alpha).__name__ == "ListConfig" else [alpha]
            self.register_buffer("alpha", torch.tensor(values, dtype=torch.float32))

    def forward(self, logits, targets):
        log_p = functional.log_softmax(logits.float(), dim=1).gather(1, targets[:, None]).squeeze(1)
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.alpha is not None:
            loss = loss * (self.alpha[targets] if self.alpha.numel() > 1 else self.alpha)
        return loss.mean()


@constrained(pos_weight=nullable(POSITIVE))
class BinaryCrossEntropy(nn.Module):
    """BCE with logits on z = second logit - first (with the one-logit head, exactly the model's z)."""

    def __init__(self, pos_weight=None):
        super().__init__()
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)) if pos_weight is not None else None)

    def forward(self, logits, targets):
        z = (logits[:, 1] - logits[:, 0]).float()
        return functional.binary_cross_entropy_with_logits(z, targets.float(), pos_weight=self.pos_weight)


def loss_name(loss_cfg: DictConfig | None) -> str:
    target = (loss_cfg or {}).get("_target_")
    return "auto" if not target else {**CLASSIFICATION, **REGRESSION}.get(str(target), str(target))


def one_logit(loss_cfg: DictConfig | None) -> bool:
    """Does the loss want a one-output head (bce)?"""
    return loss_name(loss_cfg) == "bce"


def head_size(loss_cfg: DictConfig | None, num_outputs: int) -> int:
    return 1 if one_logit(loss_cfg) else num_outputs


def present_as_two_logits(model: nn.Module) -> nn.Module:
    """A one-logit model's output z shown as [0, z] (not saved in checkpoints: a hook, not a layer)."""

    def two(module, inputs, output):
        return torch.cat([torch.zeros_like(output), output], dim=1)

    model.register_forward_hook(two)
    return model


def build_loss(loss_cfg: DictConfig | None, task: str, num_classes: int, train_targets: np.ndarray,
               label_smoothing: float = 0.0) -> nn.Module:
    """The configured loss, checked against the task; `auto` is the task's usual one."""
    name = loss_name(loss_cfg)
    if task == LANGUAGE_MODEL:
        return language_model_loss(loss_cfg, name, label_smoothing)
    if name == "auto":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing) if task == "classification" else nn.MSELoss()
    fits = CLASSIFICATION if task == "classification" else REGRESSION
    if str(loss_cfg._target_) in {**CLASSIFICATION, **REGRESSION} and str(loss_cfg._target_) not in fits:
        raise UserError(f"loss={name} does not fit {task}: choose one of {', '.join(fits.values())} (or auto)")
    if name == "bce" and num_classes != 2:
        raise UserError(f"loss=bce is for two classes, and this data has {num_classes}: use loss=cross_entropy or loss=focal")
    extra = {}
    if label_smoothing:
        where = "set loss.label_smoothing" if name == "cross_entropy" else f"loss={name} has no label smoothing"
        raise UserError(f"trainer.label_smoothing goes with the default loss (loss=auto): {where}")
    if name == "cross_entropy":
        extra["class_weights"] = class_weights(loss_cfg.get("weight"), train_targets, num_classes)
    if name == "focal" and loss_cfg.get("alpha") is not None:
        alpha = loss_cfg.alpha
        if (isinstance(alpha, (list, tuple)) or type(alpha).__name__ == "ListConfig") and len(alpha) != num_classes:
            raise UserError(f"loss.alpha={list(alpha)} gives {len(alpha)} weight(s) for {num_classes} classes")
    return call_target(loss_cfg, "loss", expect=nn.Module, expect_name="loss (a torch.nn.Module)", **extra)


def language_model_loss(loss_cfg: DictConfig | None, name: str, label_smoothing: float) -> nn.Module:
    """A language model's loss: plain cross-entropy over every position (loss=auto or cross_entropy),
    since its perplexity is exp of that very loss; a loss of one answer per sample does not fit."""
    if name not in ("auto", "cross_entropy"):
        raise UserError(f"loss={name} does not fit a language model (one next token per position): use loss=auto or loss=cross_entropy")
    if name == "cross_entropy" and loss_cfg.get("weight") is not None:
        raise UserError("loss.weight weighs classes, and a language model's classes are its whole vocabulary: drop it")
    smoothing = label_smoothing or float((loss_cfg or {}).get("label_smoothing", 0.0) or 0.0)
    if smoothing:
        raise UserError(f"label smoothing {smoothing:g} would change the loss a language model's perplexity is the exp of: drop it")
    return TokenCrossEntropy()


def class_weights(weight, train_targets: np.ndarray, num_classes: int) -> list[float] | None:
    """null: none; balanced: n / (classes x count) per class (scikit-learn's rule); or a list."""
    if weight is None:
        return None
    if weight == "balanced":
        present = np.unique(train_targets)
        if len(present) < num_classes:
            raise UserError("loss.weight=balanced needs every class in the train split")
        return [float(w) for w in compute_class_weight("balanced", classes=np.arange(num_classes), y=train_targets)]
    values = list(weight)  # its elements are checked where it is declared (cross_entropy)
    if len(values) != num_classes:  # a relation to the data: one weight per class
        raise UserError(f"loss.weight={values} gives {len(values)} weight(s) for {num_classes} classes: give {num_classes} "
                        "(one per class), or loss.weight=balanced")
    return [float(v) for v in values]
