"""What a run prints: one line per epoch everywhere, and Rich progress bars on a terminal.

Both are callbacks. Every line printed also goes to the run's train.log.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TextIO

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from dlcli.engine.callbacks import Callback
from dlcli.engine.language import sample_unit
from dlcli.errors import printable_lines
from dlcli.system.files import open_append
from dlcli.system.numbers import short
from dlcli.system.terminal import SafeConsole

REFRESH_SECONDS = 0.25  # how often the bars are updated (and the running loss read off the device)


class Reporter(Callback):
    """One line per epoch, and every message of the run, on the console and in train.log."""

    def __init__(self, console: Console | None = None, show_progress: bool = True):
        self.console = console or SafeConsole()
        self.show_progress = show_progress and self.console.is_terminal
        self.log_file: TextIO | None = None
        self._epochs, self._metric, self._unit = 0, "accuracy", "samples"

    # -- logging -------------------------------------------------------------------------------
    def attach_log(self, path: Path) -> None:
        self.log_file = open_append(path)  # never through a link

    def log(self, message: str, style: str | None = None) -> None:
        message = printable_lines(message)  # whatever console it was given (a run's name may be anyone's), and in train.log
        if not self.console.quiet:  # rendering costs even when nothing is shown
            self.console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)
        self._to_log_file(message + "\n")

    def warn(self, message: str) -> None:
        """On stderr even when quiet (something the user must hear about), and in train.log."""
        message = printable_lines(message)
        self._to_log_file(message + "\n")
        if not self.warnings_silenced:
            SafeConsole(stderr=True).print(message, markup=False, highlight=False, soft_wrap=True)

    warnings_silenced = False  # sweep trials: their warnings go to their own train.log only

    def log_only(self, text: str) -> None:
        """Into train.log but not on the console (a traceback the console summarizes in one line)."""
        self._to_log_file(text if text.endswith("\n") else text + "\n")

    def _to_log_file(self, text: str) -> None:
        """train.log is a copy of what was said: a disk too full for it stops the copy, never the
        run (metrics.csv and the checkpoints say the full disk in one line)."""
        if self.log_file is None:
            return
        try:
            self.log_file.write(text)
            self.log_file.flush()
        except OSError:
            self.close()

    def close(self) -> None:
        if self.log_file is not None:
            file, self.log_file = self.log_file, None
            try:
                file.close()
            except OSError:
                pass  # its last flush met a full disk: nothing more can be kept

    # -- the callback ----------------------------------------------------------------------------
    def progress_bars(self) -> list[Callback]:
        """The live bars to run beside this reporter: none unless on a terminal and asked for."""
        return [ProgressBars(self.console)] if self.show_progress else []

    def on_fit_start(self, session, state) -> None:
        self._epochs, self._metric, self._unit = session.epochs, session.metric, sample_unit(session.task)

    def on_epoch_end(self, state, row: dict, improved: bool) -> None:
        self.log(format_epoch(row, self._epochs, self._metric, self._unit) + ("  *" if improved else ""))


class ProgressBars(Callback):
    """Rich progress bars (epochs, and samples within the epoch) while a run trains on a terminal."""

    def __init__(self, console: Console):
        self.console = console
        self._progress: Progress | None = None
        self._epoch_task = self._batch_task = None
        self._last_refresh = 0.0
        self._seen = 0
        self._epoch_started = 0.0
        self._metric, self._unit = "accuracy", "samples"

    def on_fit_start(self, session, state) -> None:
        self._metric, self._unit = session.metric, sample_unit(session.task)
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
        self._epoch_task = self._progress.add_task("epochs", total=session.epochs, completed=state.epoch, status="")
        self._batch_task = self._progress.add_task("samples", total=len(session.train_data), status="")

    def on_fit_end(self, state, status: str) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_epoch_start(self, epoch: int) -> None:
        self._seen = 0
        self._epoch_started = time.perf_counter()
        self._progress.reset(self._batch_task, status="")
        self._progress.update(self._batch_task, description=f"epoch {epoch}")

    def on_batch_end(self, batch_size: int, loss: torch.Tensor) -> None:
        self._seen += batch_size
        now = time.perf_counter()
        if now - self._last_refresh >= REFRESH_SECONDS:  # reading the loss syncs the device
            self._last_refresh = now
            rate = self._seen / max(now - self._epoch_started, 1e-9)
            status = f"batch loss {short(float(loss))}  {rate:,.0f} {self._unit}/s"
            self._progress.update(self._batch_task, completed=self._seen, status=status)

    def on_epoch_end(self, state, row: dict, improved: bool) -> None:
        self._progress.update(self._batch_task, completed=self._seen)
        self._progress.update(self._epoch_task, completed=row["epoch"], status=f"val_{self._metric} {short(row[f'val_{self._metric}'])}")


def format_epoch(row: dict, epochs: int, metric: str, unit: str = "samples") -> str:
    width = len(str(epochs))
    validated = math.isfinite(row["val_loss"])  # NaN: the run has no validation split
    return (
        f"epoch {row['epoch']:>{width}}/{epochs}  lr {row['lr']:.3g}  "
        f"train_loss {short(row['train_loss'])}  train_{metric} {short(row[f'train_{metric}'])}  "
        + (f"val_loss {short(row['val_loss'])}  val_{metric} {short(row[f'val_{metric}'])}  " if validated else "")
        + f"{row['seconds']:.2f}s  {row['samples_per_second']:,.0f} {unit}/s"
    )
