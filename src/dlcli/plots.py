"""Figures written into a run: learning curves and confusion matrices (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path


def _save(figure, path: Path) -> None:
    """Write the figure next to `path`, then move it into place: never a half-written PNG."""
    import os

    temporary = path.with_name(path.stem + ".tmp" + path.suffix)
    figure.savefig(temporary, dpi=100)
    os.replace(temporary, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], metric: str, path: Path) -> None:
    """Loss and the task metric per epoch, train against val."""
    if not history:
        return
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key in zip(axes, ("loss", metric)):
        axis.plot(epochs, [row[f"train_{key}"] for row in history], marker="o", label="train")
        axis.plot(epochs, [row[f"val_{key}"] for row in history], marker="o", label="val")
        axis.set_xlabel("epoch")
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def plot_confusion_matrix(matrix: list[list[int]], class_names: list[str], title: str, path: Path) -> None:
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=class_names).plot(ax=axis, colorbar=False)
    axis.set_title(title)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def plot_lr_find(lrs: list[float], losses: list[float], smoothed: list[float], suggestions: dict[str, float],
                 chosen: str, log_x: bool, path: Path) -> None:
    """Loss against learning rate, each suggestion marked on the smoothed curve."""
    import numpy as np

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot(lrs, losses, color="tab:gray", alpha=0.35, linewidth=1, label="loss")
    axis.plot(lrs, smoothed, color="tab:blue", linewidth=2, label="smoothed loss")
    for (rule, lr), color in zip(suggestions.items(), ("tab:green", "tab:orange", "tab:red")):
        y = float(np.interp(np.log10(lr), np.log10(lrs), smoothed)) if log_x else float(np.interp(lr, lrs, smoothed))
        marker = "*" if rule == chosen else "o"
        axis.plot([lr], [y], marker=marker, markersize=14 if rule == chosen else 9, color=color, linestyle="none",
                  label=f"{rule}: {lr:.2g}" + (" (suggested)" if rule == chosen else ""))
    if log_x:
        axis.set_xscale("log")
    top = min(max(smoothed[0], min(smoothed)) * 1.5, max(losses))
    axis.set_ylim(min(losses) * 0.9 if min(losses) > 0 else None, top)
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss")
    axis.set_title("learning-rate range test")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)
