"""Callbacks: a user's own from config, failures in them, checkpoint cadence, Ctrl-C and SIGKILL."""

import csv
import json
import os
from pathlib import Path

import pytest
import torch

from conftest import only_run, quiet_reporter, read, run_cli
from forked_dl import run_dl
from dlcli.config.compose import compose
from dlcli.engine.callbacks import Callback
from dlcli.engine.checkpoint import Checkpointer, load_checkpoint, save_checkpoint
from dlcli.engine.fit import FitState, fit
from dlcli.experiment import build_experiment
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest

TESTS = Path(__file__).parent
COMPARED = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


def metric_rows(run_dir: Path) -> list[list[str]]:
    return [[row[k] for k in COMPARED] for row in csv.DictReader((run_dir / "metrics.csv").open())]


def test_a_callback_from_config_sees_every_hook_in_order(workdir):
    calls_file = workdir / "calls.json"
    cfg = compose(["trainer.epochs=2", "trainer.progress=false", "+callbacks.rec._target_=user_code.Recorder",
                   f"+callbacks.rec.path={calls_file}"])
    result = train(RunRequest(cfg, [], quiet_reporter()))
    assert result.status == "completed"
    calls = json.loads(calls_file.read_text())
    per_epoch = lambda epoch, improved: [["epoch_start", epoch], ["after_backward", True], ["batch_end", 32, True],
                                         ["epoch_end", epoch, epoch, improved]]
    assert calls[0] == ["fit_start", 0] and calls[-1] == ["fit_end", "completed"]
    assert calls[1:5] == per_epoch(1, True)
    assert calls[5:8] == per_epoch(2, calls[8][3])[:3] and len(calls) == 10


def test_a_callback_that_raises_fails_the_run_with_its_traceback_in_train_log(workdir):
    result = run_cli("train", "trainer.epochs=4", "+callbacks.boom._target_=user_code.RaiseAt", "+callbacks.boom.epoch=2")
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "RaiseAt.on_epoch_end raised ZeroDivisionError" in message and "train.log" in message
    run = only_run(workdir)
    log = (run / "train.log").read_text()
    assert "Traceback (most recent call last)" in log and "1 / 0" in log
    summary = read(run / "summary.json")
    assert summary["status"] == "failed" and summary["epochs_completed"] == 2


def test_a_target_that_is_not_a_callback_is_refused_before_the_run(workdir):
    result = run_cli("train", "+callbacks.x._target_=user_code.NotACallback")
    assert result.exit_code == 2 and "none of the hooks" in result.stderr and "Traceback" not in result.stderr
    assert not (workdir / "runs").exists()


class LastCheckpointProbe(Callback):
    """After the checkpointer, notes which epoch last.pt and best.pt hold on disk."""

    def __init__(self, directory: Path):
        self.directory, self.seen = directory, []

    def on_epoch_end(self, state, row, improved):
        on_disk = lambda name: load_checkpoint(self.directory / name)["state"]["epoch"] if (self.directory / name).exists() else None
        self.seen.append((on_disk("last.pt"), on_disk("best.pt")))


@pytest.mark.parametrize("every, written_each_epoch", [(3600, False), (0, True)])
def test_checkpoints_are_written_at_most_every_interval_and_always_at_the_end(tmp_path, every, written_each_epoch):
    experiment = build_experiment(compose(["trainer.epochs=4", "trainer.progress=false"]))
    checkpointer = Checkpointer(tmp_path, experiment.session, every)
    save_checkpoint(tmp_path / "last.pt", experiment.session, FitState())
    probe = LastCheckpointProbe(tmp_path)
    state = fit(experiment.session, FitState(), [checkpointer, probe])
    if written_each_epoch:
        assert [last for last, _ in probe.seen] == [1, 2, 3, 4]
    else:
        assert probe.seen == [(0, None)] * 4  # only the start is on disk while it runs
    assert load_checkpoint(tmp_path / "last.pt")["state"]["epoch"] == 4
    assert load_checkpoint(tmp_path / "best.pt")["state"]["epoch"] == state.best_epoch


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_ctrl_c_finishes_the_epoch_it_would_lose_and_resume_reaches_the_uninterrupted_result(workdir):
    overrides = ["trainer.epochs=5", "model.dropout=0.3", "sched=onecycle", "trainer.progress=false"]
    reference = train(RunRequest(compose(overrides + ["name=reference"]), [], quiet_reporter()))
    stopped = train(RunRequest(compose(overrides), [], quiet_reporter(), callbacks=[__import__("user_code").CtrlCAt(epoch=3)]))
    assert stopped.status == "interrupted" and stopped.summary["epochs_completed"] == 3  # epoch 3 was finished, not lost
    assert load_checkpoint(stopped.run_dir / "checkpoints" / "last.pt")["state"]["epoch"] == 3
    assert len(metric_rows(stopped.run_dir)) == 3
    resumed = train(RunRequest(compose([f"resume={stopped.run_dir}"]), [f"resume={stopped.run_dir}"], quiet_reporter()))
    assert resumed.status == "completed"
    assert metric_rows(resumed.run_dir) == metric_rows(reference.run_dir)
    assert resumed.summary["test"] == reference.summary["test"]


def test_ctrl_c_stops_at_once_when_the_last_epoch_is_already_saved(workdir):
    cfg = compose(["trainer.epochs=5", "trainer.progress=false", "trainer.checkpoint_every=0"])
    stopped = train(RunRequest(cfg, [], quiet_reporter(), callbacks=[__import__("user_code").CtrlCAt(epoch=3)]))
    assert stopped.status == "interrupted" and stopped.summary["epochs_completed"] == 2


@pytest.mark.slow
def test_sigkill_between_two_checkpoint_writes_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    # a 3 s interval: epochs 4-6 fit in it even on a loaded machine, so last.pt stays behind
    common = ["trainer.epochs=8", "model.dropout=0.2", "sched=cosine", "trainer.checkpoint_every=3", "trainer.plots=false", "--quiet"]
    dl = lambda *args: run_dl(["train", *args], tmp_path, env=env, timeout=300)
    monkeypatch.chdir(tmp_path)  # the uninterrupted reference, trained here (the same engine, no process start-up)
    reference = train(RunRequest(compose([*common[:-1], "name=reference", "trainer.progress=false"]), [], quiet_reporter()))
    assert reference.status == "completed"
    # pause 3.2 s after epoch 2 so that last.pt is written once after the start, then die after epoch 6
    killed = dl(*common, "+callbacks.kill._target_=user_code.KillAt", "+callbacks.kill.epoch=6",
                f"+callbacks.kill.marker={tmp_path / 'killed'}", "+callbacks.kill.pause_at=2", "+callbacks.kill.pause=3.2")
    assert killed.returncode == -9
    run = only_run(tmp_path)
    on_disk = load_checkpoint(run / "checkpoints" / "last.pt")["state"]["epoch"]
    assert 1 <= on_disk < 6 and len(metric_rows(run)) == 6  # metrics.csv ran ahead of last.pt
    assert read(run / "summary.json")["status"] == "running"
    # the resume runs in this process (only the kill needs a process of its own); --trust: its saved
    # config names our callback
    resumed = run_cli("train", f"resume={run}", "--json", "--trust", "user_code")
    assert resumed.exit_code == 0, resumed.output
    reference_run = only_run(tmp_path, "reference")
    assert metric_rows(run) == metric_rows(reference_run)
    assert json.loads(resumed.stdout)["test"] == read(reference_run / "summary.json")["test"]
    final = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    expected = load_checkpoint(reference_run / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(final[k], expected[k]) for k in expected)


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_early_stopping_counts_patience_across_an_interrupt(workdir):
    overrides = ["trainer.epochs=60", "trainer.early_stopping.enabled=true", "trainer.early_stopping.patience=3", "trainer.progress=false"]
    reference = train(RunRequest(compose(overrides + ["name=reference"]), [], quiet_reporter()))
    stop_epoch = reference.summary["epochs_completed"]
    assert reference.summary["stopped_early"] and stop_epoch >= 4
    # Ctrl-C one epoch before the stop: the epochs without improvement so far must carry over
    stopped = train(RunRequest(compose(overrides), [], quiet_reporter(), callbacks=[__import__("user_code").CtrlCAt(epoch=stop_epoch - 1)]))
    assert stopped.status == "interrupted" and stopped.summary["epochs_completed"] == stop_epoch - 1
    resumed = train(RunRequest(compose([f"resume={stopped.run_dir}"]), [f"resume={stopped.run_dir}"], quiet_reporter()))
    assert resumed.summary["stopped_early"] and resumed.summary["epochs_completed"] == stop_epoch
    assert metric_rows(resumed.run_dir) == metric_rows(reference.run_dir)


@pytest.mark.slow  # starts the picture drawer: 10.9 CPU seconds
@pytest.mark.pictures
def test_pictures_are_drawn_beside_the_run_unless_turned_off(workdir):
    from dlcli.tracking.plots import wait_for_pictures

    drawn = train(RunRequest(compose(["trainer.epochs=2", "trainer.progress=false"]), [], quiet_reporter()))
    plain = train(RunRequest(compose(["trainer.epochs=2", "trainer.progress=false", "trainer.plots=false", "name=plain"]), [], quiet_reporter()))
    wait_for_pictures()
    assert (drawn.run_dir / "curves.png").stat().st_size > 0 and (drawn.run_dir / "confusion-test.png").exists()
    assert not list(plain.run_dir.glob("*.png"))
