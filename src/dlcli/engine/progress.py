"""What a run prints: Rich progress bars on a terminal, and one line per epoch everywhere.

Every line printed also goes to the run's train.log.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

REFRESH_SECONDS = 0.25  # how often the bars are updated (and the running loss read off the device)


class Reporter:
    def __init__(self, console: Console | None = None, show_progress: bool = True):
        self.console = console or Console()
        self.show_progress = show_progress and self.console.is_terminal
        self.log_file: TextIO | None = None
        self._progress: Progress | None = None
        self._epoch_task = self._batch_task = None
        self._last_refresh = 0.0
        self._seen = 0
        self._epoch_started = 0.0

    # -- logging -------------------------------------------------------------------------------
    def attach_log(self, path: Path) -> None:
        self.log_file = path.open("a", encoding="utf-8")

    def log(self, message: str, style: str | None = None) -> None:
        self.console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)
        if self.log_file is not None:
            self.log_file.write(message + "\n")
            self.log_file.flush()

    def close(self) -> None:
        self.stop_progress()
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None

    # -- progress bars ----------------------------------------------------------------------------
    def start_progress(self, epochs: int, first_epoch: int, samples_per_epoch: int) -> None:
        if not self.show_progress:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            refresh_per_second=4,  # redrawing competes with training for the same few cores
        )
        self._progress.start()
        self._epoch_task = self._progress.add_task("epochs", total=epochs, completed=first_epoch - 1, status="")
        self._batch_task = self._progress.add_task("samples", total=samples_per_epoch, status="")

    def stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_epoch_start(self, epoch: int) -> None:
        self._seen = 0
        self._epoch_started = time.perf_counter()
        if self._progress is not None:
            self._progress.reset(self._batch_task, status="")
            self._progress.update(self._batch_task, description=f"epoch {epoch}")

    def on_batch(self, batch_size: int, loss: torch.Tensor) -> None:
        self._seen += batch_size
        if self._progress is None:
            return
        now = time.perf_counter()
        if now - self._last_refresh >= REFRESH_SECONDS:  # reading the loss syncs the device
            self._last_refresh = now
            rate = self._seen / max(now - self._epoch_started, 1e-9)
            status = f"batch loss {float(loss):.4f}  {rate:,.0f} samples/s"
            self._progress.update(self._batch_task, completed=self._seen, status=status)

    def on_epoch_end(self, row: dict, epochs: int, metric: str, best: bool) -> None:
        if self._progress is not None:
            self._progress.update(self._batch_task, completed=self._seen)
            self._progress.update(self._epoch_task, completed=row["epoch"], status=f"val_{metric} {row[f'val_{metric}']:.4f}")
        self.log(format_epoch(row, epochs, metric) + ("  *" if best else ""))


def format_epoch(row: dict, epochs: int, metric: str) -> str:
    width = len(str(epochs))
    return (
        f"epoch {row['epoch']:>{width}}/{epochs}  lr {row['lr']:.3g}  "
        f"train_loss {row['train_loss']:.4f}  train_{metric} {row[f'train_{metric}']:.4f}  "
        f"val_loss {row['val_loss']:.4f}  val_{metric} {row[f'val_{metric}']:.4f}  "
        f"{row['seconds']:.2f}s  {row['samples_per_second']:,.0f} samples/s"
    )
