"""TensorBoard and MLflow loggers, read back with the real libraries."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

from conftest import only_run, read, run_cli
from forked_dl import run_dl
from dlcli.rundir.directory import read_metrics

TESTS = Path(__file__).resolve().parent
USER_CODE_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
QUICK = ["data=iris", "trainer.epochs=4", "trainer.checkpoint_every=0"]


def scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def mlflow_run(run: Path):
    from mlflow.tracking import MlflowClient

    record = read(run / "mlflow.json")
    client = MlflowClient(record["tracking_uri"])
    return client, client.get_run(record["run_id"])


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def same(logged, expected) -> bool:
    """The same epochs, and values equal to float32 precision (TensorBoard stores float32)."""
    return [s for s, _ in logged] == [s for s, _ in expected] and [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)


def csv_column(run: Path, key: str) -> list[tuple[int, float]]:
    return [(row["epoch"], row[key]) for row in read_metrics(run / "metrics.csv")]


def test_tensorboard_holds_every_metrics_csv_column_per_epoch_and_the_batch_loss(workdir):
    result = run_cli("train", *QUICK, "logger=tensorboard", "logger.tensorboard.log_every_n_steps=2", "optim.lr=0.05")
    assert result.exit_code == 0, result.output
    run = only_run(workdir)
    logged = scalars(run / "tensorboard")
    for key in ("lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "samples_per_second"):
        assert same(logged[key], csv_column(run, key)), key
    assert logged["test_accuracy"][0][1] == pytest.approx(read(run / "summary.json")["test"]["accuracy"])
    steps = scalars(run / "tensorboard" / "steps")
    assert [s for s, _ in steps["batch/loss"]] == list(range(2, 4 * 4 + 1, 2))  # 120 samples / 32: 4 steps an epoch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert events.PluginTagToContent("hparams")  # the HPARAMS tab has this run's settings and numbers


@pytest.mark.slow  # trains with a logger that imports its library
def test_mlflow_run_holds_the_config_every_epoch_and_the_final_status(workdir):
    result = run_cli("train", *QUICK, "logger=[tensorboard,mlflow]", "optim.lr=0.05")
    assert result.exit_code == 0, result.output
    run = only_run(workdir)
    assert (workdir / "runs" / "mlflow.db").is_file() and (run / "tensorboard").is_dir()
    client, logged = mlflow_run(run)
    assert logged.info.status == "FINISHED" and logged.data.tags["dl.status"] == "completed"
    assert logged.data.params["optim.lr"] == "0.05" and logged.data.params["data.name"] == "iris"
    for key in ("train_loss", "val_accuracy", "lr"):
        assert same(history(client, logged.info.run_id, key), csv_column(run, key))
    assert logged.data.metrics["test_accuracy"] == pytest.approx(read(run / "summary.json")["test"]["accuracy"])
    assert {"config.yaml", "summary.json"} <= {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert (workdir / "runs" / "mlartifacts").is_dir() and not (workdir / "mlruns").exists()  # beside the store
    listed = json.loads(run_cli("runs", "--json").stdout)[0]
    assert listed["mlflow_run_id"] == logged.info.run_id and listed["logger"] == "tensorboard,mlflow"


@pytest.mark.slow
def test_a_killed_run_resumes_into_the_same_logs_without_repeating_an_epoch(tmp_path, monkeypatch):
    common = ["train", "data=iris", "trainer.epochs=6", "trainer.checkpoint_every=3600",
              "logger=[tensorboard,mlflow]", "trainer.plots=false", "--quiet"]
    # last.pt is written at the start only; the process dies after epoch 4, with 4 epochs logged beyond it
    killed = run_dl([*common, "+callbacks.kill._target_=user_code.KillAt", "+callbacks.kill.epoch=4",
                     f"+callbacks.kill.marker={tmp_path / 'killed'}"], tmp_path, env=USER_CODE_ENV)
    assert killed.returncode == -9
    run = only_run(tmp_path)
    monkeypatch.chdir(tmp_path)  # the resume runs here, in this process (only the kill needs a process of its own)
    resumed = run_cli("train", f"resume={run}", "--trust", "user_code", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    expected = csv_column(run, "val_loss")
    assert [s for s, _ in expected] == [1, 2, 3, 4, 5, 6]
    assert same(scalars(run / "tensorboard")["val_loss"], expected)  # the lost epochs purged
    client, logged = mlflow_run(run)
    assert same(history(client, logged.info.run_id, "val_loss"), expected)
    assert logged.info.status == "FINISHED"


@pytest.mark.slow  # trains with a logger that imports its library
def test_an_interrupted_run_is_killed_in_mlflow_and_resumes_the_same_run(workdir):
    interrupted = run_cli("train", *QUICK, "logger=mlflow", "+callbacks.stop._target_=user_code.CtrlCAt", "+callbacks.stop.epoch=3",
                          f"+callbacks.stop.marker={workdir / 'pressed'}")
    assert interrupted.exit_code == 130, interrupted.output
    run = only_run(workdir)
    client, logged = mlflow_run(run)
    assert logged.info.status == "KILLED" and logged.data.tags["dl.status"] == "interrupted"
    assert [s for s, _ in history(client, logged.info.run_id, "val_loss")] == [1, 2]  # what last.pt holds
    assert run_cli("train", f"resume={run}", "--trust", "user_code").exit_code == 0
    client, again = mlflow_run(run)
    assert again.info.run_id == logged.info.run_id and again.info.status == "FINISHED"
    assert same(history(client, again.info.run_id, "val_loss"), csv_column(run, "val_loss"))


@pytest.mark.slow  # trains with a logger that imports its library
def test_a_sweep_is_a_parent_mlflow_run_with_one_nested_run_per_trial(workdir):
    result = run_cli("sweep", "grid", "optim.lr=0.1,0.01", "data=iris", "trainer.epochs=2", "logger=mlflow", "--name", "irises", "-q")
    assert result.exit_code == 0, result.output
    sweep = next((workdir / "runs" / "sweeps" / "irises").iterdir())
    client, parent = mlflow_run(sweep)
    assert parent.info.status == "FINISHED" and parent.data.tags["dl.kind"] == "sweep"
    assert client.get_experiment(parent.info.experiment_id).name == "irises"  # named after --name, as the study is
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.params["optim.lr"] for c in children) == ["0.01", "0.1"]
    assert all(c.info.status == "FINISHED" for c in children)


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_a_failing_logger_warns_once_and_never_costs_the_run(workdir):
    result = run_cli("train", *QUICK, "logger=mlflow", "logger.mlflow.tracking_uri=sqlite:////proc/no/such/mlflow.db", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and "mlflow" in summary["logger_failures"]
    assert result.stderr.count("logger=mlflow failed") == 1 and len(read_metrics(only_run(workdir) / "metrics.csv")) == 4


def test_a_missing_logger_package_names_the_pip_install(workdir, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    result = run_cli("train", "logger=mlflow")
    assert result.exit_code == 2 and "pip install 'dlcli[mlflow]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (workdir / "runs").exists()
    bad = run_cli("train", "logger=tensorboard", "logger.tensorboard.log_every_n_steps=0")
    assert bad.exit_code == 2 and "log_every_n_steps=0" in bad.stderr


@pytest.mark.slow  # trains with a logger that imports its library
def test_k_fold_is_a_parent_mlflow_run_with_one_nested_run_per_fold(workdir):
    result = run_cli("train", "data=iris", "split.kfold=3", "trainer.epochs=2", "logger=mlflow", "-q")
    assert result.exit_code == 0, result.output
    parent_dir = only_run(workdir)
    client, parent = mlflow_run(parent_dir)
    assert parent.info.status == "FINISHED" and parent.data.tags["dl.kind"] == "kfold" and "mean" in parent.data.metrics
    folds = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(f.info.run_name.split("/")[-1] for f in folds) == ["fold-1", "fold-2", "fold-3"]
