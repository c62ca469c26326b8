"""metrics.csv as a callback: one row per epoch, appended as the epoch ends.

Appending keeps the cost of an epoch's bookkeeping the same at epoch 10 and at epoch 10,000. The
file is rewritten only when a run (re)starts or ends abnormally, so that it holds exactly the
epochs the checkpoint on disk holds: what a resume continues from.
"""

from __future__ import annotations

import csv
from pathlib import Path

from dlcli.engine.callbacks import Callback
from dlcli.runs import metric_columns, read_metrics, write_metrics


class MetricsCsv(Callback):
    def __init__(self, path: Path, metric: str):
        self.path = path
        self.columns = metric_columns(metric)
        self.rows: list[dict] = []  # every epoch so far (for the curves drawn at the end)
        self._file = None
        self._writer = None

    def on_fit_start(self, session, state) -> None:
        self.rows = read_metrics(self.path, up_to=state.epoch) if state.epoch else []
        write_metrics(self.path, self.rows, self.columns)  # drops epochs the checkpoint does not hold
        self._file = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")

    def on_epoch_end(self, state, row: dict, improved: bool) -> None:
        self._writer.writerow(row)
        self._file.flush()  # a killed run keeps every epoch it finished
        self.rows.append(row)

    def on_fit_end(self, state, status: str) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None

    def truncate(self, epoch: int) -> None:
        """Keep only epochs up to `epoch` (what the checkpoint holds after an abnormal end)."""
        self.close()
        if any(row["epoch"] > epoch for row in self.rows):
            self.rows = [row for row in self.rows if row["epoch"] <= epoch]
            write_metrics(self.path, self.rows, self.columns)
