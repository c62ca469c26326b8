"""Figures written into a run: learning curves and confusion matrices (matplotlib, no display).

A run's own pictures (curves.png, confusion-<split>.png) are drawn from its files by a separate,
low-priority process (`DRAWER` below; by hand: `python -m dlcli.tracking.plots RUN_DIR PICTURE...`) started when the run ends: the
run never waits for matplotlib, which costs more to import and draw than a small run takes to
train. `wait_for_pictures()` waits for them (tests, scripts that open the PNGs at once).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Sequence

import numpy as np

import dlcli
from dlcli.rundir.directory import read_json, read_metrics
from dlcli.system.files import open_append, write_atomically
from dlcli.tracking import hand_pictures

_drawers: list[subprocess.Popen] = []
drawing_enabled = True  # the test suite turns this off except where it checks the pictures


def new_figure(**kwargs):
    """A matplotlib Figure on the Agg canvas: no pyplot, no display, nothing global to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415  (matplotlib loads in the drawing process only)
    from matplotlib.figure import Figure  # noqa: PLC0415  (matplotlib loads in the drawing process only)

    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: Path) -> None:
    """Write the figure next to `path`, then move it into place: never a half-written PNG."""
    write_atomically(path, lambda file: figure.savefig(file, dpi=100, format=path.suffix.lstrip(".") or "png"), binary=True)


DECADES_FOR_LOG = 3  # values spanning more than 10**3 (a diverging run's loss) are drawn on a log axis


def plot_curves(history: list[dict], metric: str, path: Path) -> None:
    """Loss and the task metric per epoch, train against val: a part with no value (a run without
    a validation split) has no line and no legend entry; an axis whose values span more than
    three decades is logarithmic, so that a spike to 1e20 does not flatten the rest to a line at 0."""
    if history:
        save_figure(curves_figure(history, metric), path)


def curves_figure(history: list[dict], metric: str):
    """plot_curves' figure: one axis for the loss, one for the metric."""
    epochs = [row["epoch"] for row in history]
    marker = "o" if len(history) <= 50 else None  # markers hide the line once epochs crowd
    figure = new_figure(figsize=(10, 4), layout="tight")
    for axis, key in zip(figure.subplots(1, 2), ("loss", metric)):
        drawn = []
        for part in ("train", "val"):
            values = np.array([row.get(f"{part}_{key}", np.nan) for row in history], dtype=float)
            if np.isfinite(values).any():
                axis.plot(epochs, values, marker=marker, label=part)
                drawn.append(values)
        scale = y_scale(np.concatenate(drawn)) if drawn else "linear"
        if scale == "symlog":  # values at or below 0 too (an r2): linear near 0, logarithmic beyond
            finite = np.abs(np.concatenate(drawn))
            axis.set_yscale("symlog", linthresh=float(finite[np.isfinite(finite) & (finite > 0)].min()))
        else:
            axis.set_yscale(scale)
        axis.set_xlabel("epoch")
        axis.set_ylabel(key + (" (log scale)" if scale != "linear" else ""))
        axis.grid(alpha=0.3)
        if drawn:
            axis.legend()
    return figure


def y_scale(values: np.ndarray) -> str:
    """linear, or log (symlog where some values are not positive) when the values' magnitudes
    span more than DECADES_FOR_LOG decades."""
    finite = values[np.isfinite(values)]
    magnitudes = np.abs(finite[finite != 0])
    if magnitudes.size < 2 or magnitudes.max() / magnitudes.min() <= 10.0 ** DECADES_FOR_LOG:
        return "linear"
    return "log" if (finite > 0).all() else "symlog"


def plot_confusion_matrix(matrix: list[list[int]], class_names: list[str], title: str, path: Path) -> None:
    """Counts per (true, predicted) class, as scikit-learn's ConfusionMatrixDisplay draws them."""
    counts = np.asarray(matrix)
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure = new_figure(figsize=(size, size), layout="tight")
    axis = figure.subplots()
    image = axis.imshow(counts, interpolation="nearest", cmap="viridis")
    threshold = (counts.max() + counts.min()) / 2.0
    for (row, column), count in np.ndenumerate(counts):
        color = image.cmap(0) if count > threshold else image.cmap(image.cmap.N - 1)  # readable on any cell
        axis.text(column, row, f"{count:d}", ha="center", va="center", color=color)
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45 if max(map(len, class_names), default=0) > 3 else 0)
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("Predicted label")
    axis.set_ylabel("True label")
    axis.set_title(title)
    save_figure(figure, path)


def plot_lr_find(lrs: list[float], losses: list[float], smoothed: list[float], suggestions: dict[str, float],
                 chosen: str, log_x: bool, path: Path) -> None:
    """Loss against learning rate, each suggestion marked on the smoothed curve."""
    figure = new_figure(figsize=(7, 4.5), layout="tight")
    axis = figure.subplots()
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
    save_figure(figure, path)


# -- a run's pictures, drawn beside the run ---------------------------------------------------------

# The drawing process's command. `python -m` (and -c) puts the working directory first on the import
# path, and dl may run inside a directory someone sent (`cd RUN && dl eval .`): a matplotlib.py
# planted there ran in the drawer. It takes that entry off before importing anything; its working
# directory stays the command's (the run's paths and its MLflow store may be relative to it).
DRAWER = ("import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
          "from dlcli.tracking.plots import main; sys.exit(main(sys.argv[1:]))")


def draw_in_background(run_dir: Path, pictures: Sequence[str], log_to: Sequence[str] = ()) -> None:
    """Start a low-priority process that draws these pictures of the run ('curves',
    'confusion-test', ...) and hands them to the run's loggers (`log_to`: tensorboard, mlflow);
    its errors go to the run's train.log."""
    if not pictures or not drawing_enabled:
        return
    if log_to:
        pictures = [*pictures, f"--log-to={','.join(log_to)}"]
    env = dict(os.environ, MPLBACKEND="Agg")
    package_root = str(Path(dlcli.__file__).resolve().parents[1])  # found even when dlcli is not installed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    _drawers[:] = [p for p in _drawers if p.poll() is None]
    _drawers.append(subprocess.Popen(
        [sys.executable, "-c", DRAWER, str(run_dir), *pictures],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal stops the run, not its pictures
        env=env,
    ))


def wait_for_pictures(timeout: float = 120.0) -> None:
    """Wait until every picture this process asked for is drawn."""
    while _drawers:
        _drawers.pop().wait(timeout)


def draw_run_pictures(run_dir: Path, pictures: Sequence[str]) -> None:
    """Draw pictures of a run from its files: 'curves' from metrics.csv, 'confusion-<split>' from
    eval-<split>.json."""
    for picture in pictures:
        if picture == "curves":
            rows = read_metrics(run_dir / "metrics.csv")
            metric = next((k[len("train_"):] for k in (rows[0] if rows else {}) if k.startswith("train_") and k != "train_loss"), None)
            if metric is not None:
                plot_curves(rows, metric, run_dir / "curves.png")
        elif picture.startswith("confusion-"):
            split = picture.removeprefix("confusion-")
            report = read_json(run_dir / f"eval-{split}.json")
            title = f"{split} split, {report['checkpoint']} checkpoint (epoch {report['epoch']})"
            plot_confusion_matrix(report["confusion_matrix"], report["class_names"], title, run_dir / f"{picture}.png")
        else:
            raise ValueError(f"unknown picture {picture!r}")


def main(argv: Sequence[str]) -> int:
    """`python -m dlcli.tracking.plots RUN_DIR PICTURE...`: the background drawer."""
    run_dir, pictures = Path(argv[0]), [a for a in argv[1:] if not a.startswith("--log-to=")]
    log_to = [name for a in argv[1:] if a.startswith("--log-to=") for name in a.removeprefix("--log-to=").split(",") if name]
    if hasattr(os, "nice"):
        os.nice(10)  # never slow down the training that may follow
    try:
        draw_run_pictures(run_dir, pictures)

        hand_pictures(run_dir, [run_dir / f"{p}.png" for p in pictures], log_to)
    except Exception:
        try:
            with open_append(run_dir / "train.log") as log:
                log.write(f"{dt.datetime.now():%Y-%m-%d %H:%M:%S} could not draw {', '.join(pictures)}:\n{traceback.format_exc()}")
        except Exception:
            pass  # the run directory is gone: nobody is left to see the pictures either
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
