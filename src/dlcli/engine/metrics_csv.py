"""metrics.csv as a callback: one row per epoch, appended as the epoch ends.

Appending keeps the cost of an epoch's bookkeeping the same at epoch 10 and at epoch 10,000. The
file is rewritten only when a run (re)starts or ends abnormally, so that it holds exactly the
epochs the checkpoint on disk holds: what a resume continues from.
"""

from __future__ import annotations

import csv
from pathlib import Path

from dlcli.engine.callbacks import Callback
from dlcli.system.files import disk_full, open_append, out_of_space
from dlcli.system.interrupts import reached
from dlcli.rundir.directory import metric_columns, read_metrics, write_metrics


class MetricsCsv(Callback):
    def __init__(self, path: Path, metric: str):
        self.path = path
        self.columns = metric_columns(metric)
        self.rows: list[dict] = []  # every epoch so far (for the curves drawn at the end)
        self._file = None
        self._writer = None
        self._started = False  # rows holds what the file holds (until then the file is as it was on disk)

    def on_fit_start(self, session, state) -> None:
        self.rows = read_metrics(self.path, up_to=state.epoch) if state.epoch else []
        write_metrics(self.path, self.rows, self.columns)  # drops epochs the checkpoint does not hold
        self._started = True
        self._file = open_append(self.path)  # never through a link
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")

    def on_epoch_end(self, state, row: dict, improved: bool) -> None:
        self.rows.append(row)
        try:
            self._writer.writerow(row)
            self._file.flush()  # a killed run keeps every epoch it finished
        except OSError as exc:
            if out_of_space(exc):
                raise disk_full(self.path, len(str(row)), exc) from None
            raise
        reached("metrics:row_written")

    def on_fit_end(self, state, status: str) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None

    def truncate(self, epoch: int) -> None:
        """Keep exactly the epochs up to `epoch` (what the checkpoint holds after an abnormal end).
        The file is rewritten from the rows kept in memory: an interruption between appending a
        row and recording it must not leave the file and the checkpoint disagreeing."""
        try:
            self.close()
        except OSError:
            pass  # a full disk failed the last flush: the file is rewritten below anyway
        if not self._started:
            return
        self.rows = [row for row in self.rows if row["epoch"] <= epoch]
        write_metrics(self.path, self.rows, self.columns)
