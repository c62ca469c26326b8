import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import assert_cli_runs_without_torch, only_run, read, run_cli
from dlcli.tracking.plots import wait_for_pictures

RUN_FILES = {"config.yaml", "overrides.yaml", "metrics.csv", "summary.json", "split.json", "checkpoints", "curves.png", "train.log"}


@pytest.mark.slow  # trains the default run: 3.7 CPU seconds
@pytest.mark.pictures
def test_train_leaves_a_complete_run_directory(workdir):
    result = run_cli("train", "trainer.epochs=3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    run = only_run(workdir)
    wait_for_pictures()  # drawn by a background process once the run ends
    assert RUN_FILES | {"confusion-test.png", "eval-test.json"} <= {p.name for p in run.iterdir()}
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"best.pt", "last.pt"}
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "samples_per_second"]
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and all(all(v != "" for v in r.values()) for r in rows)
    summary = read(run / "summary.json")
    assert summary["status"] == "completed" and summary["device"] == "cpu" and summary["seed"] == 0
    assert {"best_epoch", "best_val_accuracy", "test", "wall_seconds", "versions", "git_commit"} <= set(summary)
    split = read(run / "split.json")
    assert split["sizes"] == {"train": 1437, "val": 180, "test": 180} and len(split["hashes"]) == 3
    assert "trainer.epochs=3" in (run / "overrides.yaml").read_text()
    assert "epoch 3/3" in (run / "train.log").read_text()
    assert "test accuracy" in result.output


def test_name_option_and_json_output(workdir):
    result = run_cli("train", "trainer.epochs=1", "--name", "quick", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["run_dir"].startswith(os.path.join("runs", "quick"))


def test_two_runs_in_the_same_second_get_their_own_directories(workdir):
    from datetime import datetime

    from dlcli.rundir.directory import create_run_dir

    now = datetime(2026, 11, 24, 10, 31, 7)
    names = [create_run_dir("runs", "train", now).name for _ in range(3)]
    assert names == ["2026-11-24_10-31-07", "2026-11-24_10-31-07-1", "2026-11-24_10-31-07-2"]


def test_cfg_prints_the_resolved_config_and_trains_nothing(workdir):
    result = run_cli("train", "--cfg", "sched=cosine", "trainer.epochs=7")
    assert result.exit_code == 0
    assert "T_max: 7" in result.output and "_target_: dlcli.models.MLP" in result.output
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["model=perceiver"], "unknown model 'perceiver': choose one of"),
        (["optim.lr=="], "malformed override"),
        (["trainer.epochs=-3"], "trainer.epochs=-3 must be at least 1"),
        (["model=lenet"], "model=lenet cannot take 8x8 images"),
        (["model=lenet", "data=iris"], "model=lenet needs image-shaped input"),
        (["data=csv", "data.path=missing.csv", "data.target=y"], "data.path=missing.csv: no such file"),
        (["--device", "cuda:7"], "trainer.device=cuda:7 is not available"),
        (["resume=nowhere"], "nowhere is not a directory"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_no_run(workdir, args, message):
    result = run_cli("train", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not (workdir / "runs").exists() or not any((workdir / "runs").rglob("summary.json"))


def test_csv_regression_end_to_end(workdir):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3))
    frame = pd.DataFrame({"Id": range(200), "a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "color": rng.choice(["red", "blue"], 200)})
    frame["SalePrice"] = 1000 + 300 * frame.a - 200 * frame.b + np.where(frame.color == "red", 100, 0)
    frame.to_csv("house.csv", index=False)
    result = run_cli("train", "data=csv", "data.path=house.csv", "data.target=SalePrice", "data.task=regression", "data.drop=[Id]", "optim.lr=0.01", "trainer.epochs=40", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["monitor"] == "val_rmse" and summary["test"]["r2"] > 0.9


@pytest.mark.slow  # trains and evaluates: 7.8 CPU seconds
@pytest.mark.pictures
def test_eval_reproduces_the_test_numbers_and_writes_reports(workdir):
    assert run_cli("train", "trainer.epochs=3").exit_code == 0
    run = only_run(workdir)
    result = run_cli("eval", str(run), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy"] == read(run / "summary.json")["test"]["accuracy"]
    assert len(report["per_class"]) == 10 and len(report["confusion_matrix"]) == 10
    assert sum(map(sum, report["confusion_matrix"])) == 180
    wait_for_pictures()
    assert (run / "eval-test.json").exists() and (run / "confusion-test.png").exists()
    table = run_cli("eval", str(run), "--split", "val", "--checkpoint", "last")
    assert table.exit_code == 0 and "precision" in table.output and (run / "eval-val.json").exists()


def test_eval_refuses_what_is_not_a_run_or_a_changed_split(workdir):
    result = run_cli("eval", str(workdir))
    assert result.exit_code == 2 and "is not a dl run directory" in result.stderr
    assert run_cli("train", "trainer.epochs=1").exit_code == 0
    run = only_run(workdir)
    assert run_cli("eval", str(run), "--split", "holdout").exit_code == 2
    split = read(run / "split.json")
    split["hashes"]["test"] = "0" * 16
    (run / "split.json").write_text(json.dumps(split))
    result = run_cli("eval", str(run))
    assert result.exit_code == 2 and "differs from split.json" in result.stderr


def test_runs_sorts_higher_is_better_metrics_first(workdir):
    for lr in ("0.3", "0.001"):
        assert run_cli("train", f"optim.lr={lr}", "trainer.epochs=2", "optim.momentum=0").exit_code == 0
    rows = json.loads(run_cli("runs", "--sort", "test_macro_f1", "--json").stdout)
    assert rows[0]["test_macro_f1"] >= rows[1]["test_macro_f1"] and rows[0]["optim.lr"] == 0.3
    assert run_cli("runs", "--sort", "nope").exit_code == 2


@pytest.mark.slow  # starts interpreters
def test_help_does_not_import_torch():
    assert_cli_runs_without_torch("--help")
    assert_cli_runs_without_torch("train", "--help")
    out = subprocess.run([sys.executable, "-m", "dlcli", "--help"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert out.returncode == 0 and "train" in out.stdout
    assert "| torch\n" not in out.stderr  # -X importtime lists every module the real entry point imports


def test_hydras_multirun_habit_gets_the_sweep_command_that_does_it(workdir):
    for args in (["-m", "optim.lr=0.1,0.01", "model.hidden=[8],[16]"], ["optim.lr=0.1,0.01", "model.hidden=[8],[16]", "--multirun"]):
        result = run_cli("train", *args)
        assert result.exit_code == 2
        assert result.stderr.strip() == ("error: dl train runs one config; for Hydra's -m/--multirun grid use: "
                                         "dl sweep grid optim.lr=0.1,0.01 'model.hidden=[8],[16]'")
        assert not (workdir / "runs").exists()


def test_a_command_s_examples_stand_one_a_paragraph():
    """click rewraps an epilog's paragraphs: each example is a paragraph of its own, indented, as
    `dl runs --help` showed them before the examples were written one a line."""
    from dlcli.cli import examples

    block = """
        dl runs
        dl runs runs/train --json      (as JSON)
    """
    assert examples(block) == "Examples:\n\n  dl runs\n\n  dl runs runs/train --json      (as JSON)"
    assert examples("dl cache list", after="Layers: conv, linear") == "Examples:\n\n  dl cache list\n\nLayers: conv, linear"
