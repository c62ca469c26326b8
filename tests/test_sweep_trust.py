"""A sweep trusts what the user's own command builds (issue 33 item 17): a class typed on the
command line runs in every trial and in the look at the test split; the sweep directory records
it but never vouches for it, so a resume (or a refit) asks for the user's word again, in one line,
before any trial runs. And a sweep that breaks off at the very end never stays `running`."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import read, run_cli

CALLBACK = "+callbacks.mine._target_=sweep_user_callback.CountEpochs"
QUICK = ["data=iris", "trainer.epochs=1", "trainer.plots=false", "trainer.progress=false", "trainer.checkpoint_every=0"]


@pytest.fixture
def users_class(workdir, monkeypatch):
    """The user's own callback, in a module in the working directory (where `dl` finds it)."""
    monkeypatch.syspath_prepend(str(workdir))  # as dlcli.cli.main does for the working directory
    (workdir / "sweep_user_callback.py").write_text(
        "from dlcli.engine.callbacks import Callback\n\n\n"
        "class CountEpochs(Callback):\n"
        "    def on_epoch_end(self, state, row, improved):\n"
        "        with open('epochs_seen', 'a') as file:\n"
        "            file.write('x')\n")
    return workdir


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (result.exit_code, result.output)
    return lines[0]


def fail_trial(sweep_dir, number: str = "001") -> None:
    summary = sweep_dir / "trials" / number / "summary.json"
    summary.write_text(summary.read_text().replace('"completed"', '"failed"'))


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_a_sweep_of_the_users_own_class_finishes_tests_and_refits(users_class):
    result = run_cli("sweep", "grid", "optim.lr=0.1,0.01", CALLBACK, *QUICK, "-q")
    assert result.exit_code == 0, result.output
    sweep_dir = next((users_class / "runs" / "sweeps" / "sweep").iterdir())
    summary = read(sweep_dir / "summary.json")
    assert summary["status"] == "completed" and summary["test"]["samples"] > 0
    assert (sweep_dir / "best.yaml").is_file()
    assert (users_class / "epochs_seen").read_text() == "xx"  # the class ran in both trials
    # recorded (to word a resume's refusal), never a vouch: see the resume test below
    assert yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["typed_targets"] == {
        "sweep_user_callback.CountEpochs": "callbacks.mine"}

    # a refit is a new command reading the sweep's files: the user's word again, or one line
    refused = one_line_error(run_cli("train", f"refit={sweep_dir}", "-q"))
    assert "--trust sweep_user_callback" in refused
    assert run_cli("train", f"refit={sweep_dir}", "--trust", "sweep_user_callback", "-q").exit_code == 0


@pytest.mark.slow  # trains a sweep and resumes it
def test_a_resume_asks_for_the_users_word_before_any_trial(users_class):
    assert run_cli("sweep", "grid", "optim.lr=0.1,0.01", CALLBACK, *QUICK, "-q").exit_code == 0
    sweep_dir = next((users_class / "runs" / "sweeps" / "sweep").iterdir())
    fail_trial(sweep_dir)
    before = (sweep_dir / "trials" / "001" / "summary.json").read_text()

    refused = one_line_error(run_cli("sweep", "grid", "--resume", str(sweep_dir)))
    for words in ("callbacks.mine._target_=sweep_user_callback.CountEpochs", "never vouches", "--trust sweep_user_callback",
                  "./conf/trust.yaml", "type the sweep's overrides again"):
        assert words in refused, refused
    assert (sweep_dir / "trials" / "001" / "summary.json").read_text() == before  # no trial ran
    assert read(sweep_dir / "summary.json")["status"] == "completed"  # and the sweep's record is as it was

    # each way of giving the word finishes the sweep: --trust, the overrides typed again, ./conf/trust.yaml
    ways = [["--trust", "sweep_user_callback"], ["optim.lr=0.1,0.01", CALLBACK, *QUICK]]
    for way in ways:
        result = run_cli("sweep", "grid", "--resume", str(sweep_dir), *way, "-q")
        assert result.exit_code == 0, (way, result.output)
        assert read(sweep_dir / "trials" / "001" / "summary.json")["status"] == "completed"
        fail_trial(sweep_dir)
    (users_class / "conf").mkdir()
    (users_class / "conf" / "trust.yaml").write_text("trust: [sweep_user_callback]\n")
    assert run_cli("sweep", "grid", "--resume", str(sweep_dir), "-q").exit_code == 0
    assert read(sweep_dir / "summary.json")["status"] == "completed"


def test_a_sweep_that_breaks_off_at_the_end_does_not_stay_running(workdir, monkeypatch):
    """Whatever fails after the trials (here the look at the test split) leaves the summary failed,
    with the reason, and the command's one line."""
    import dlcli.sweep.best
    from dlcli.errors import UserError

    def broken(*args, **kwargs):
        raise UserError("the test split could not be read")

    monkeypatch.setattr(dlcli.sweep.best, "_test_best", broken)
    result = run_cli("sweep", "grid", "optim.lr=0.1,0.01", *QUICK, "-q")
    assert "the test split could not be read" in one_line_error(result)
    summary = json.loads(next((workdir / "runs" / "sweeps" / "sweep").iterdir()).joinpath("summary.json").read_text())
    assert summary["status"] == "failed" and summary["message"] == "the test split could not be read"
