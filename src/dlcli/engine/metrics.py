"""Losses and metrics by task.

Per-epoch metrics are computed with torch where the outputs are (on the device, one sync per
epoch); the final reports (the test look, `dl eval`) with scikit-learn, the reference.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn import metrics

from dlcli.engine.language import LANGUAGE_MODEL, token_scores
from dlcli.engine.targets import invert_transform

def epoch_scores(task: str, outputs: torch.Tensor, targets: torch.Tensor, target_std: float = 1.0,
                 target_mean: float = 0.0, target_transform: str = "none", loss=None) -> dict[str, torch.Tensor]:
    """The task metrics of one epoch as 0-d tensors on the outputs' device (no sync).

    Classification `outputs` are logits (N, C) or predicted classes (N,). Regression works in
    float64 in the target's own units, as scikit-learn does, so both agree to rounding. A language
    model's perplexity is read from its mean token `loss` (dlcli.engine.language).
    """
    if task == LANGUAGE_MODEL:
        return token_scores(loss, outputs, targets)
    if task == "classification":
        predictions = outputs.argmax(dim=1) if outputs.ndim == 2 else outputs
        return {"accuracy": (predictions == targets).sum(dtype=torch.float64) / max(len(targets), 1)}
    predicted = _own_units(outputs.double(), target_std, target_mean, target_transform)
    actual = _own_units(targets.double(), target_std, target_mean, target_transform)
    error = predicted - actual
    residual = (error**2).sum()
    total = ((actual - actual.mean()) ** 2).sum()
    nan = torch.full((), float("nan"), dtype=torch.float64, device=actual.device)
    if len(actual) > 1:  # scikit-learn's r2 with a constant target: 1 when predicted exactly, else 0
        r2 = torch.where(total > 0, 1 - residual / total.clamp_min(1e-300), (residual == 0).double())
    else:
        r2 = nan
    log_error = torch.log(predicted.clamp_min(1.0)) - torch.log(actual.clamp_min(1e-300))
    log_rmse_value = torch.where((actual > 0).all(), (log_error**2).mean().sqrt(), nan) if len(actual) else nan
    return {"rmse": (error**2).mean().sqrt(), "mae": error.abs().mean(), "r2": r2, "log_rmse": log_rmse_value}


def score(task: str, outputs: np.ndarray, targets: np.ndarray, target_std: float = 1.0, target_mean: float = 0.0,
          target_transform: str = "none", loss: float | None = None) -> dict:
    """Task metrics from model outputs; regression values are mapped back to the target's units; a
    language model's perplexity and bits per token come from its mean token `loss`."""
    if task == LANGUAGE_MODEL:
        return {name: float(value) for name, value in token_scores(loss, torch.as_tensor(outputs), torch.as_tensor(targets)).items()}
    if task == "classification":
        predictions = outputs.argmax(axis=1) if outputs.ndim == 2 else outputs  # logits or classes
        return {"accuracy": float(metrics.accuracy_score(targets, predictions))}
    predicted = _own_units(outputs.astype(np.float64), target_std, target_mean, target_transform)
    actual = _own_units(targets.astype(np.float64), target_std, target_mean, target_transform)
    scores = {
        "rmse": math.sqrt(float(metrics.mean_squared_error(actual, predicted))),
        "mae": float(metrics.mean_absolute_error(actual, predicted)),
        "r2": float(metrics.r2_score(actual, predicted)) if len(actual) > 1 else float("nan"),
        "log_rmse": log_rmse(actual, predicted),
    }
    # A metric that does not apply here (r2 of one sample, log_rmse of a target that is not
    # positive) is left out, so every report and table agrees, rather than shown as nan or null.
    return {k: v for k, v in scores.items() if math.isfinite(v) or k == "rmse"}


def _own_units(values, std, mean, transform: str):
    """Regression outputs or targets (numpy or torch, float64) in the target's own units, flat.
    `std` and `mean` are one number, or a sequence of one per output (a forecast's horizon steps of
    several columns, each in its own units), applied to each row's outputs."""
    if isinstance(std, (tuple, list)):
        values = values.reshape(len(values), len(std))
        std, mean = _numbers_like(values, std), _numbers_like(values, mean)
    else:
        values = values.reshape(-1)
    return invert_transform(transform, (values * std + mean).reshape(-1))


def _numbers_like(values, numbers):
    """`numbers` as float64 beside `values`: a tensor on its device, or a numpy array."""
    if isinstance(values, torch.Tensor):
        return torch.as_tensor(numbers, dtype=torch.float64, device=values.device)
    return np.asarray(numbers, dtype=np.float64)


def log_rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    """RMSE between logarithms (relative error, as house-price contests score); predictions below 1
    are clipped to 1 so the logarithm exists. NaN when a true value is not positive."""
    if len(actual) == 0 or (actual <= 0).any():
        return float("nan")
    return math.sqrt(float(np.mean((np.log(np.clip(predicted, 1.0, None)) - np.log(actual)) ** 2)))


def classification_report(outputs: np.ndarray, targets: np.ndarray, class_names: list[str]) -> dict:
    """Per-class precision/recall/F1/support and the confusion matrix (rows: true, cols: predicted)."""
    labels = list(range(len(class_names)))
    predictions = outputs.argmax(axis=1)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        targets, predictions, labels=labels, zero_division=0
    )
    per_class = [
        {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
    ]
    matrix = metrics.confusion_matrix(targets, predictions, labels=labels)
    return {
        "per_class": per_class,
        "macro_f1": float(metrics.f1_score(targets, predictions, labels=labels, average="macro", zero_division=0)),
        "confusion_matrix": matrix.tolist(),
    }


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()
