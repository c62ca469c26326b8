"""An epoch costs the same late in a run as early: nothing done after each epoch grows with the
epochs so far (issue 33, item 16). Timings are benchmarks/epoch_growth.py's; here the same
question is asked in ways a loaded machine cannot blur: the work an epoch does, counted in calls,
and the files it opens."""

import builtins
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import quiet_reporter
from dlcli.config.compose import compose
from dlcli.engine.callbacks import Callback
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "epoch_growth.py"
EPOCHS = 40
# no checkpoint write inside the run (a write is timed, not counted per epoch), every check watching
LONG_RUN = ["data=iris", f"trainer.epochs={EPOCHS}", "trainer.checkpoint_every=3600", "trainer.progress=false",
            "trainer.diagnostics_every=1", "trainer.early_stopping.enabled=true", f"trainer.early_stopping.patience={EPOCHS}"]


class CallsPerEpoch(Callback):
    """The Python and C calls each epoch makes, from its start to the end of the bookkeeping of the
    callbacks before this one (metrics.csv, the checkpoints, the printed line)."""

    def __init__(self):
        self.calls: dict[int, int] = {}
        self._epoch = None

    def _count(self, frame, event, arg) -> None:
        if event in ("call", "c_call"):
            self.calls[self._epoch] += 1

    def on_epoch_start(self, epoch: int) -> None:
        self._epoch, self.calls[epoch] = epoch, 0
        sys.setprofile(self._count)

    def on_epoch_end(self, state, row, improved) -> None:
        sys.setprofile(None)

    def on_fit_end(self, state, status) -> None:
        sys.setprofile(None)


def test_an_epoch_late_in_a_run_does_the_work_of_an_early_one(workdir):
    """Counted, not timed: the calls of the plainest epochs (no new best, whose weights are copied)
    among epochs 6-15 and among the last ten are the same number, give or take a few. Anything that
    walks the history so far each epoch would add calls in proportion to it."""
    counter = CallsPerEpoch()
    result = train(RunRequest(compose(LONG_RUN), [], quiet_reporter(), callbacks=[counter]))
    assert result.status == "completed" and len(counter.calls) == EPOCHS
    early = min(counter.calls[e] for e in range(6, 16))
    late = min(counter.calls[e] for e in range(EPOCHS - 9, EPOCHS + 1))
    assert late <= early * 1.02 + 20, (early, late)


class OpensDuringEpochs(Callback):
    """Every file opened from the second epoch's start to the last epoch's end."""

    def __init__(self, last: int):
        self.opened: list[str] = []
        self.monkeypatch, self.last = pytest.MonkeyPatch(), last  # its own: undoing it must not undo the test's chdir

    def on_epoch_start(self, epoch: int) -> None:
        if epoch == 2:
            for owner, name in ((builtins, "open"), (io, "open"), (os, "open")):
                self.monkeypatch.setattr(owner, name, self._counting(getattr(owner, name)))

    def _counting(self, original):
        def opened(path, *args, **kwargs):
            self.opened.append(str(path))
            return original(path, *args, **kwargs)
        return opened

    def on_epoch_end(self, state, row, improved) -> None:
        if state.epoch == self.last:
            self.monkeypatch.undo()

    def on_fit_end(self, state, status) -> None:
        self.monkeypatch.undo()


def test_no_run_file_is_reopened_or_rewritten_after_an_epoch(workdir):
    """metrics.csv and train.log are appended to through the handles opened at the start; the
    summary is written when the run ends; the checkpoints at most every trainer.checkpoint_every
    seconds (an hour here): between, no epoch opens a file."""
    watcher = OpensDuringEpochs(last=EPOCHS)
    result = train(RunRequest(compose(LONG_RUN), [], quiet_reporter(), callbacks=[watcher]))
    assert result.status == "completed"
    assert watcher.opened == []


@pytest.mark.slow
def test_the_epoch_growth_benchmark_runs_in_its_quick_mode(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run([sys.executable, str(BENCHMARK), "--quick"], capture_output=True, text=True, timeout=600,
                            cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^(dl|hand-written) +(cpu|wall) +early +(-?\d+\.\d+) ms/epoch +late +(-?\d+\.\d+) ms/epoch", result.stdout,
                      re.MULTILINE)
    assert {(side, clock) for side, clock, _, _ in rows} == {(s, c) for s in ("dl", "hand-written") for c in ("cpu", "wall")}
    assert "target: dl cpu late/early <= 1.10  (--quick: too short to judge)" in result.stdout
    assert list(tmp_path.iterdir()) == [scratch]  # nothing where it ran
    assert not list(scratch.glob("dl-epoch-growth-*"))  # its runs: a temporary folder, removed
