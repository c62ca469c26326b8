import json
import math
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import read, run_cli
from dlcli.errors import UserError
from dlcli.sweep import SweepSettings, run_sweep
from dlcli.sweep.space import grid, parse_space, sample

QUICK = ["trainer.epochs=2"]


def sweep(*overrides, kind="grid", **options):
    options.setdefault("log", lambda line: None)
    return run_sweep(SweepSettings(kind, list(overrides), trials=options.pop("trials", None), seed=options.pop("seed", 0),
                                   metric=options.pop("metric", None), prune=options.pop("prune", "none")), **options)


def table(result):
    return pd.read_csv(result.sweep_dir / "results.csv").drop(columns=["seconds"])


def test_grid_is_the_cartesian_product():
    space = parse_space(["optim.lr=0.1,0.01", "model.hidden=[32],[64]", "trainer.epochs=3"])
    assert space.fixed == ["trainer.epochs=3"]
    assert grid(space) == [
        {"optim.lr": "0.1", "model.hidden": "[32]"}, {"optim.lr": "0.1", "model.hidden": "[64]"},
        {"optim.lr": "0.01", "model.hidden": "[32]"}, {"optim.lr": "0.01", "model.hidden": "[64]"},
    ]
    assert [t["model"] for t in grid(parse_space(["model=glob(l*)"]))] == ["lenet", "linreg", "lstm"]
    assert [t["+x"] for t in grid(parse_space(["+x=range(1,7,2)"]))] == ["1", "3", "5"]


def test_random_draws_are_seeded_bounded_and_log_uniform():
    space = parse_space(["optim.lr=tag(log,interval(1e-4,1))", "trainer.batch_size=int(interval(16,128))",
                         "optim.weight_decay=interval(0,0.001)", "model=choice(mlp,softmax)"])
    draws = sample(space, 400, seed=7)
    assert draws == sample(space, 400, seed=7) and draws != sample(space, 400, seed=8)
    lrs = [float(d["optim.lr"]) for d in draws]
    assert all(1e-4 <= lr <= 1 for lr in lrs)
    below = sum(lr < 1e-2 for lr in lrs) / len(lrs)
    assert 0.4 < below < 0.6  # half the draws in the lower two of four decades: log-uniform, not uniform
    sizes = [d["trainer.batch_size"] for d in draws]
    assert all(s.isdigit() and 16 <= int(s) <= 128 for s in sizes)
    assert all(0 <= float(d["optim.weight_decay"]) <= 0.001 for d in draws)
    assert 150 < sum(d["model"] == "mlp" for d in draws) < 250


@pytest.mark.parametrize(
    "overrides, kind, message",
    [
        (["optim.lr=interval(0,1)"], "grid", "grid search cannot enumerate the interval"),
        (["trainer.epochs=2"], "grid", "nothing to sweep"),
        (["optim.lr=tag(log,interval(0,1))"], "random", "log-scaled interval needs a positive lower bound"),
        (["optim.lr=0.1,0.1", "optim.lr=1,2"], "grid", "optim.lr is swept twice"),
    ],
)
def test_bad_spaces_are_explained(workdir, overrides, kind, message):
    with pytest.raises(UserError, match=message):
        sweep(*overrides, kind=kind, trials=3)
    assert not (workdir / "runs").exists()


def test_grid_sweep_writes_everything_and_tests_only_the_best(workdir, monkeypatch):
    import dlcli.evaluate

    looks = []
    original = dlcli.evaluate.evaluate_checkpoint
    monkeypatch.setattr(dlcli.evaluate, "evaluate_checkpoint", lambda exp, run, split, ckpt: looks.append((str(run), split)) or original(exp, run, split, ckpt))
    result = sweep("optim.lr=0.3,0.03", "model.hidden=[32],[64]", *QUICK)
    directory = result.sweep_dir
    assert {p.name for p in directory.iterdir()} == {"sweep.yaml", "trials", "results.csv", "best.yaml", "summary.json", "sweep.png", ".lock"}
    frame = table(result)
    assert list(frame.columns) == ["number", "status", "optim.lr", "model.hidden", "val_accuracy", "best_epoch", "message"]
    assert set(zip(frame["optim.lr"].astype(str), frame["model.hidden"])) == {("0.3", "[32]"), ("0.3", "[64]"), ("0.03", "[32]"), ("0.03", "[64]")}
    summary = read(directory / "summary.json")
    best = frame.loc[frame["val_accuracy"].idxmax()]
    assert summary["best_trial"] == best["number"] and summary["test"]["samples"] == 180
    # the test split: never by a trial, once for the best trial after the sweep
    assert looks == [(summary["best_run_dir"], "test")]
    for trial in (directory / "trials").iterdir():
        assert read(trial / "summary.json")["test"] is None
        assert (trial / "eval-test.json").exists() == (str(trial) == summary["best_run_dir"])
    best_overrides = json.loads(json.dumps(__import__("yaml").safe_load((directory / "best.yaml").read_text())))["overrides"]
    assert "trainer.epochs=2" in best_overrides and f"optim.lr={best['optim.lr']}" in best_overrides
    listing = run_cli("runs", str(directory), "--sort", "val_accuracy", "--json")
    rows = json.loads(listing.stdout)
    assert len(rows) == 4 and rows[0]["val_accuracy"] == best["val_accuracy"] and {"optim.lr", "model.hidden"} <= set(rows[0])


def test_crashing_diverging_and_misconfigured_trials_are_reported_and_the_sweep_goes_on(workdir):
    lines = []
    result = sweep("model._target_=dlcli.models.MLP,exploding_model.Exploding", "optim.lr=0.1,1e12", "trainer.epochs=3", "~model.hidden",
                   "~model.activation", "~model.dropout", "~model.batch_norm", log=lines.append)
    frame = table(result).set_index("number")
    assert result.summary["status"] == "completed"
    assert frame.loc[0, "status"] == "completed"
    assert frame.loc[1, "status"] == "failed" and "nan" in frame.loc[1, "message"].lower()  # diverged
    assert frame.loc[2, "status"] == "failed" and "out of memory" in frame.loc[2, "message"]  # crashed
    assert any(line.startswith("trial 002 failed") and "out of memory" in line for line in lines)  # shown at once
    assert read(result.sweep_dir / "summary.json")["best_trial"] == 0


def test_trials_select_their_checkpoint_on_the_sweep_metric(workdir):
    result = sweep("optim.lr=0.3,0.03", "trainer.epochs=4", metric="val_loss")
    for _, row in table(result).iterrows():
        trial = result.sweep_dir / "trials" / f"{row['number']:03d}"
        assert read(trial / "summary.json")["monitor"] == "val_loss"
        assert __import__("torch").load(trial / "checkpoints" / "best.pt", weights_only=True)["state"]["best_epoch"] == row["best_epoch"]


def test_kfold_inside_a_sweep_is_refused(workdir):
    with pytest.raises(UserError, match="split.kfold inside a sweep is not supported"):
        sweep("optim.lr=0.1,0.2", "split.kfold=2")


def test_random_sweep_resumes_without_repeating_its_options(workdir):
    first = run_cli("sweep", "random", "optim.lr=interval(0.05,0.3)", "--trials", "2", *QUICK)
    assert first.exit_code == 0
    directory = next(workdir.glob("runs/sweeps/sweep/*"))
    again = run_cli("sweep", "random", "--resume", str(directory))
    assert again.exit_code == 0, again.output
    assert "2 of 2 trials already finished" in again.stderr


def test_fail_fast_stops_at_the_first_failure(workdir):
    result = sweep("optim.lr=1e12,0.1,0.2", *QUICK, fail_fast=True)
    assert result.summary["status"] == "failed" and len(table(result)) == 1


def test_pruned_trials_are_marked_pruned_not_failed(workdir):
    median = sweep("optim.lr=0.3,0.2,1e-6,1e-6", "trainer.epochs=4", prune="median")
    assert list(table(median)["status"]) == ["completed", "completed", "pruned", "pruned"]
    asha = sweep("optim.lr=0.3,0.2,0.1,1e-6", "trainer.epochs=3", prune="asha")
    statuses = list(table(asha).sort_values("number")["status"])
    assert statuses[3] == "pruned" and statuses[:3].count("completed") >= 2
    assert read(asha.sweep_dir / "trials" / "003" / "summary.json")["status"] == "pruned"


def test_resume_runs_exactly_the_unfinished_trials(workdir):
    first = sweep("optim.lr=0.3,0.1,0.03,0.01", *QUICK)
    trials = first.sweep_dir / "trials"
    kept = {n: read(trials / n / "summary.json")["started_at"] for n in ("000", "002")}
    summary = read(trials / "001" / "summary.json")
    summary["status"] = "interrupted"
    (trials / "001" / "summary.json").write_text(json.dumps(summary))
    __import__("shutil").rmtree(trials / "003")
    lines = []
    resumed = sweep(kind="grid", resume=first.sweep_dir, log=lines.append)
    assert any("2 of 4 trials already finished" in line for line in lines)
    assert sorted(line[:9] for line in lines if line.startswith("trial")) == ["trial 001", "trial 003"]
    assert {n: read(trials / n / "summary.json")["started_at"] for n in ("000", "002")} == kept
    assert list(table(resumed)["status"]) == ["completed"] * 4
    assert table(resumed).sort_values("number").equals(table(first).sort_values("number"))


@pytest.mark.slow
def test_a_killed_sweep_loses_no_finished_trial(tmp_path):
    command = [sys.executable, "-m", "dlcli", "sweep", "grid", "optim.lr=0.3,0.2,0.1,0.05,0.03,0.01", "trainer.epochs=12"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, results = time.time() + 120, None
    while time.time() < deadline:
        found = list(tmp_path.glob("runs/sweeps/sweep/*/results.csv"))
        if found and len(found[0].read_text().strip().splitlines()) >= 3:  # two trials done
            results = found[0]
            break
        time.sleep(0.1)
    assert results is not None
    process.send_signal(signal.SIGKILL)  # no chance to clean up
    process.wait(timeout=30)
    directory = results.parent
    done = pd.read_csv(results)
    assert set(done["status"]) == {"completed"} and 2 <= len(done) < 6
    resumed = subprocess.run([*command[:5], "--resume", str(directory)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    final = pd.read_csv(directory / "results.csv")
    assert sorted(final["number"]) == list(range(6)) and set(final["status"]) == {"completed"}
    finished_before = set(done["number"])
    rerun = {int(line.split()[1]) for line in resumed.stderr.splitlines() if line.startswith("trial ")}
    assert rerun == set(range(6)) - finished_before  # exactly the missing trials


@pytest.mark.slow
def test_two_jobs_give_the_same_table_as_one(workdir):
    overrides = ("optim.lr=0.3,0.03", "model.hidden=[32],[64]", *QUICK)
    one = sweep(*overrides, jobs=1, threads=1)
    two = sweep(*overrides, jobs=2, threads=1)
    assert table(one).equals(table(two))


@pytest.mark.slow
def test_ray_backend_gives_the_same_table(workdir):
    pytest.importorskip("ray")
    overrides = ("optim.lr=0.3,0.03", "model.hidden=[32],[64]", *QUICK)
    local = sweep(*overrides, jobs=1, threads=1)
    on_ray = sweep(*overrides, jobs=2, threads=1, backend="ray")
    assert table(local).equals(table(on_ray))


def test_ray_missing_is_a_one_line_install_hint(workdir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = run_cli("sweep", "grid", "optim.lr=0.3,0.1", *QUICK, "--backend", "ray")
    assert result.exit_code == 2 and 'pip install -e ".[ray]"' in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["grid", "optim.lr=0.1,0.2", "--metric", "val_f1"], "--metric val_f1 is not a validation metric"),
        (["grid", "optim.lr=0.1,0.2", "--prune", "hyperband"], "--prune hyperband is not a pruning rule"),
        (["grid", "optim.lr=0.1,0.2", "--jobs", "0"], "--jobs 0 must be at least 1"),
        (["grid", "--resume", "nowhere"], "is not a sweep directory"),
        (["grid", "optim.lrr=0.1,0.2"], "optim.lrr is not a setting of torch.optim.SGD"),
    ],
)
def test_cli_bad_input(workdir, args, message):
    result = run_cli("sweep", *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert not list(workdir.glob("runs/sweeps/*/*/trials/*"))


def test_cli_random_sweep_prints_a_sorted_table(workdir):
    result = run_cli("sweep", "random", "optim.lr=tag(log,interval(0.01,0.5))", "--trials", "3", "--seed", "1", *QUICK)
    assert result.exit_code == 0, result.output
    assert "sorted by val_accuracy" in result.stdout and "trial 002" in result.stderr
    values = [float(v) for v in pd.read_csv(next(workdir.glob("runs/sweeps/sweep/*/results.csv")))["optim.lr"]]
    assert all(0.01 <= v <= 0.5 for v in values) and not math.isnan(sum(values))
