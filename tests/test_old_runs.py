"""A run directory written by dl 0.1.0 before the layered layout (tests/fixtures/run_before_0.2: a
table MLP with logger=tensorboard and sched=step, whose config names dlcli.engine.loggers.*) still
resumes, evaluates, predicts, exports, inspects, diagnoses and lists with its option names."""

import json
import shutil
from pathlib import Path

import pytest

from conftest import read, run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "run_before_0.2"


@pytest.fixture
def old_run(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE, tmp_path / "old")
    monkeypatch.chdir(tmp_path / "old")  # its config reads table.csv from the working directory
    return tmp_path / "old" / "run"


def ok(*args):
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result


def test_it_still_names_the_old_targets():
    assert "dlcli.engine.loggers.TensorBoardLogger" in (FIXTURE / "run" / "config.yaml").read_text()


def test_an_old_run_evaluates_predicts_exports_inspects_and_diagnoses(old_run):
    report = json.loads(ok("eval", str(old_run), "--json").stdout)
    assert report["accuracy"] == read(old_run / "summary.json")["test"]["accuracy"]
    ok("predict", str(old_run), "new.csv", "--output", "predictions.csv")
    assert Path("predictions.csv").read_text().splitlines()[0].startswith("kind")
    ok("export", str(old_run), "--format", "torchscript")
    assert (old_run / "model.torchscript.pt").is_file()
    ok("inspect", str(old_run))
    ok("diagnose", str(old_run))


def test_dl_runs_names_an_old_runs_options(old_run):
    rows = json.loads(ok("runs", str(old_run.parent), "--json").stdout)
    assert rows[0]["logger"] == "tensorboard" and rows[0]["sched"] == "step" and rows[0]["model"] == "mlp"


@pytest.mark.slow
def test_an_old_run_resumes_and_trains_longer(old_run):
    longer = json.loads(ok("train", f"resume={old_run}", "trainer.epochs=5", "--json").stdout)
    assert longer["status"] == "completed" and longer["epochs_completed"] == 5
    assert (Path(longer["run_dir"]) / "tensorboard").is_dir()  # its logger, found at its new place
    summary = old_run / "summary.json"
    summary.write_text(summary.read_text().replace('"completed"', '"interrupted"'))
    resumed = json.loads(ok("train", f"resume={old_run}", "--json").stdout)
    assert resumed["status"] == "completed" and resumed["epochs_completed"] == 3
