"""No finished epoch is lost, at any moment: Ctrl-C (a first, or a second right after it) is sent at
each named point of a run's last epoch and closing sequence (dlcli.system.interrupts.reached), and the
run must be left with metrics.csv, last.pt and summary.json agreeing, and resume to exactly the
numbers of a run that was never interrupted. A full disk is one line and a resumable run."""

import os
import signal

import pytest
import torch

from conftest import quiet_reporter, read
from dlcli.system import interrupts
from dlcli.config.compose import compose
from dlcli.engine.checkpoint import load_checkpoint
from dlcli.rundir.directory import read_metrics
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest

EPOCHS = 3
NUMBERS = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy")  # not the timings


def config(every: int, *extra: str):
    return compose(["data=iris", f"trainer.epochs={EPOCHS}", "trainer.progress=false", "trainer.plots=false",
                    f"trainer.checkpoint_every={every}", *extra])


def points_of_a_run(every: int) -> list[str]:
    seen: list[str] = []
    with interrupts.probe(seen.append):
        train(RunRequest(config(every), reporter=quiet_reporter()))
    return seen


def run_interrupted_at(index: int, presses: int, every: int):
    """Train, pressing Ctrl-C `presses` times when the index-th named point is reached."""
    count = {"n": -1}

    def press(point: str) -> None:
        count["n"] += 1
        if count["n"] == index:
            for _ in range(presses):
                os.kill(os.getpid(), signal.SIGINT)

    with interrupts.probe(press):
        try:
            return train(RunRequest(config(every), reporter=quiet_reporter())).run_dir
        except KeyboardInterrupt:  # held until a write was whole, then let go: the run is on disk
            return None


def numbers(run) -> list[tuple]:
    return [tuple(row[k] for k in NUMBERS) for row in read_metrics(run / "metrics.csv")]


@pytest.mark.slow
@pytest.mark.parametrize("every", [0, 1000])  # last.pt written every epoch / only when the run ends
def test_ctrl_c_at_every_point_of_the_closing_sequence_loses_nothing(workdir, every):
    points = points_of_a_run(every)
    reference = sorted((workdir / "runs" / "train").iterdir())[0]
    expected, expected_test = numbers(reference), read(reference / "summary.json")["test"]
    last_epoch = max(i for i, p in enumerate(points) if p == "metrics:row_written")
    closing = list(range(last_epoch, len(points)))
    assert {points[i] for i in closing} >= {"metrics:row_written", "checkpoint:last_written", "test_look", "summary_written"}
    for index in closing:
        for presses in (1, 2):
            before = set((workdir / "runs" / "train").iterdir())
            run_interrupted_at(index, presses, every)
            (run,) = set((workdir / "runs" / "train").iterdir()) - before
            where = f"Ctrl-C x{presses} at {points[index]} (point {index})"
            summary = read(run / "summary.json")
            saved = int(load_checkpoint(run / "checkpoints" / "last.pt")["state"]["epoch"])
            rows = numbers(run)
            assert summary["status"] in ("interrupted", "completed"), where
            assert len(rows) == saved == summary["epochs_completed"] == EPOCHS, where  # every finished epoch kept
            assert rows == expected, where
            assert not list(run.rglob("*.tmp")), where
            if summary["status"] == "interrupted":
                resumed = train(RunRequest(compose([f"resume={run}", "trainer.progress=false", "trainer.plots=false"]),
                                           [f"resume={run}"], reporter=quiet_reporter()))
                assert resumed.status == "completed", where
                summary = resumed.summary
            assert numbers(run) == expected and summary["test"] == expected_test, where


def test_a_full_disk_is_one_line_and_the_run_resumes_exactly(workdir, monkeypatch):
    """The third checkpoint write finds the disk full: the run fails in one line that names the
    directory and the size, leaves no temporary file, keeps metrics.csv at what last.pt holds,
    and resumes (once there is space) to the numbers of an uninterrupted run."""
    import errno

    import dlcli.engine.checkpoint as checkpoint

    reference = train(RunRequest(config(0), reporter=quiet_reporter())).run_dir
    real_save, calls = torch.save, {"n": 0}

    def save_on_a_full_disk(payload, file, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the fresh last.pt, epoch 1 (best.pt, copied to last.pt), then epoch 2 fails
            file.write(b"x" * 100)  # a partial file, as a real full disk leaves
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from OSError(errno.ENOSPC, "No space left on device")
        return real_save(payload, file, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save_on_a_full_disk)
    failed = train(RunRequest(config(0), reporter=quiet_reporter()))
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    message = failed.summary["message"]
    assert failed.status == "failed" and "\n" not in message
    assert "no space left in" in message and str(failed.run_dir / "checkpoints") in message and "needs about" in message
    assert "dl train resume=" in message
    assert not list(failed.run_dir.rglob("*.tmp")) and not list(failed.run_dir.rglob(".*.tmp"))
    saved = int(load_checkpoint(failed.run_dir / "checkpoints" / "last.pt")["state"]["epoch"])
    assert len(read_metrics(failed.run_dir / "metrics.csv")) == saved == failed.summary["epochs_completed"] == 1
    resumed = train(RunRequest(compose([f"resume={failed.run_dir}", "trainer.progress=false", "trainer.plots=false"]),
                               [f"resume={failed.run_dir}"], reporter=quiet_reporter()))
    assert resumed.status == "completed" and numbers(failed.run_dir) == numbers(reference)
    assert resumed.summary["test"] == read(reference / "summary.json")["test"]
