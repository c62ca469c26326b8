import json
import math
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import read, run_cli
from forked_dl import start_dl
from dlcli.errors import UserError
from dlcli.sweep import SweepSettings, run_sweep
from dlcli.sweep.space import parse_space
from dlcli.sweep.kinds import grid_combinations as grid
from dlcli.tracking.plots import wait_for_pictures


def sample(space, trials: int, seed: int) -> list[dict]:
    """What a random sweep asks its study for, in an in-memory study."""
    import optuna

    from dlcli.sweep.kinds import sampler_for
    from dlcli.sweep.study import distributions, trial_params

    study = optuna.create_study(sampler=sampler_for("random", space, seed, trials))
    draws = []
    for _ in range(trials):
        trial = study.ask(distributions(space, "random"))
        draws.append(trial_params(space, trial))
        study.tell(trial, 0.0)
    return draws

QUICK = ["trainer.epochs=2"]
# Where a test's claim does not depend on the data (pruning, resuming, jobs, naming): iris, whose
# trials cost a fraction of digits' (a 4-trial, 4-epoch sweep: about 2 CPU seconds against 13)
IRIS = ["data=iris"]
IRIS_TEST_ROWS = 15  # iris's test split: a tenth of its 150 rows


def sweep(*overrides, kind="grid", **options):
    options.setdefault("log", lambda line: None)
    return run_sweep(SweepSettings(kind, list(overrides), trials=options.pop("trials", None), seed=options.pop("seed", 0),
                                   metric=options.pop("metric", None), prune=options.pop("prune", "none"),
                                   prune_warmup=options.pop("prune_warmup", 1), prune_startup=options.pop("prune_startup", 4)),
                     **options)


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


@pytest.mark.slow  # trains a sweep of several trials
@pytest.mark.pictures  # sweep.png among the files
def test_grid_sweep_writes_everything_and_tests_only_the_best(workdir, monkeypatch):
    import dlcli.run.single
    import dlcli.sweep.best
    import dlcli.trained.evaluate

    looks = []
    original = dlcli.trained.evaluate.evaluate_checkpoint
    for module in (dlcli.sweep.best, dlcli.run.single):  # the sweep's look, and any a trial's run would take
        monkeypatch.setattr(module, "evaluate_checkpoint",
                            lambda exp, run, split, ckpt, **kw: looks.append((str(run), split)) or original(exp, run, split, ckpt, **kw))
    result = sweep("optim.lr=0.3,0.03", "model.hidden=[32],[64]", *IRIS, *QUICK)
    directory = result.sweep_dir
    assert {p.name for p in directory.iterdir()} == {"sweep.yaml", "trials", "results.csv", "best.yaml", "summary.json", "sweep.png",
                                                   ".lock", "study.journal"}
    frame = table(result)
    assert list(frame.columns) == ["number", "status", "optim.lr", "model.hidden", "val_accuracy", "val_loss", "best_epoch", "message"]
    # trial N is the N-th combination, in the order given (the grid's trials are enqueued in the study)
    assert list(zip(frame["optim.lr"], frame["model.hidden"])) == [(0.3, "[32]"), (0.3, "[64]"), (0.03, "[32]"), (0.03, "[64]")]
    assert set(zip(frame["optim.lr"].astype(str), frame["model.hidden"])) == {("0.3", "[32]"), ("0.3", "[64]"), ("0.03", "[32]"), ("0.03", "[64]")}
    summary = read(directory / "summary.json")
    # the highest val_accuracy; among equal ones the lowest val_loss
    top = frame[frame["val_accuracy"] == frame["val_accuracy"].max()]
    best = top.loc[top["val_loss"].idxmin()]
    assert summary["best_trial"] == best["number"] and summary["test"]["samples"] == IRIS_TEST_ROWS
    assert summary["chosen_by"].startswith("the highest val_accuracy; ties broken by the lower val_loss")
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


@pytest.mark.slow  # trains a sweep of several trials
def test_crashing_diverging_and_misconfigured_trials_are_reported_and_the_sweep_goes_on(workdir):
    lines = []
    result = sweep("model._target_=dlcli.models.MLP,exploding_model.Exploding", "optim.lr=0.1,1e12", "trainer.epochs=3", *IRIS, "~model.hidden",
                   "~model.activation", "~model.dropout", "~model.batch_norm", log=lines.append)
    frame = table(result).set_index("number")
    assert result.summary["status"] == "completed"
    assert frame.loc[0, "status"] == "completed"
    assert frame.loc[1, "status"] == "failed" and "nan" in frame.loc[1, "message"].lower()  # diverged
    assert frame.loc[2, "status"] == "failed" and "out of memory" in frame.loc[2, "message"]  # crashed
    assert any(line.startswith("trial 002 failed") and "out of memory" in line for line in lines)  # shown at once
    assert read(result.sweep_dir / "summary.json")["best_trial"] == 0


@pytest.mark.slow  # trains a sweep of several trials
def test_trials_select_their_checkpoint_on_the_sweep_metric(workdir):
    result = sweep("optim.lr=0.3,0.03", "trainer.epochs=4", *IRIS, metric="val_loss")
    for _, row in table(result).iterrows():
        trial = result.sweep_dir / "trials" / f"{row['number']:03d}"
        assert read(trial / "summary.json")["monitor"] == "val_loss"
        assert __import__("torch").load(trial / "checkpoints" / "best.pt", weights_only=True)["state"]["best_epoch"] == row["best_epoch"]


@pytest.mark.slow  # trains a sweep of several trials
@pytest.mark.pictures  # the best trial's folds get their curves
def test_a_kfold_sweep_judges_each_trial_by_its_mean_over_folds(workdir):
    lines = []
    result = sweep("optim.lr=0.3,1e-5", "split.kfold=3", *IRIS, *QUICK, log=lines.append)
    frame = table(result).set_index("number")
    assert list(frame.columns) == ["status", "optim.lr", "val_accuracy", "val_accuracy_std", "val_loss", "best_epoch", "message"]
    for number in (0, 1):
        trial = result.sweep_dir / "trials" / f"{number:03d}"
        report = read(trial / "kfold.json")
        assert read(trial / "summary.json")["kind"] == "kfold" and report["per_fold"][0]["test"] is None  # no test look in a trial
        assert frame.loc[number, "val_accuracy"] == pytest.approx(report["mean"])
        assert frame.loc[number, "val_accuracy_std"] == pytest.approx(report["std"])
    assert result.summary["best_trial"] == 0 and "over 3 folds" in result.summary["chosen_by"]
    assert any(line.startswith("trial 000 completed (optim.lr=0.3): val_accuracy ") and "± " in line and "over 3 folds" in line
               for line in lines)
    # the one test look: each fold model of the best trial on the same held-out split, averaged
    assert result.summary["test"]["samples"] == IRIS_TEST_ROWS
    assert any("mean of its 3 fold models" in line for line in lines)
    wait_for_pictures()  # the best trial's curves, as a plain sweep's: one per fold model (issue 36: none were drawn)
    trials = result.sweep_dir / "trials"
    assert all((trials / "000" / f"fold-{fold}" / "curves.png").is_file() for fold in (1, 2, 3))
    assert not list((trials / "001").rglob("curves.png"))  # trials draw none of their own


@pytest.mark.slow  # trains a k-fold sweep: 2.3 s in the fast lane
def test_the_house_prices_kfold_recipe_sweeps_as_it_is(workdir):
    from dlcli.config.compose import compose

    assert compose(["experiment=house_prices_kfold"]).split.kfold == 5
    csv = workdir / "houses.csv"
    import numpy as np

    rng = np.random.default_rng(0)
    area = rng.uniform(50, 250, 120)
    frame = pd.DataFrame({"Id": range(120), "GrLivArea": area, "SalePrice": 1000 * area * rng.uniform(0.9, 1.1, 120)})
    frame.to_csv(csv, index=False)
    result = sweep("experiment=house_prices_kfold", f"data.path={csv}", "optim.lr=0.01,0.003", "trainer.epochs=2")
    assert result.summary["status"] == "completed" and result.summary["metric"] == "val_log_rmse"
    assert (result.sweep_dir / "trials" / "000" / "fold-5").is_dir()


def test_every_trial_is_cross_validated_alike_or_none_is(workdir):
    with pytest.raises(UserError, match="same split.kfold"):
        sweep("split.kfold=2,3", *QUICK)


@pytest.mark.slow  # trains a sweep of several trials
def test_ties_are_broken_by_validation_loss_and_named_as_too_close_to_call(workdir):
    lines = []
    result = sweep("optim.lr=0.3,0.1", *QUICK, log=lines.append)  # both reach 0.9222 on 180 validation rows
    frame = table(result)
    assert frame["val_accuracy"].nunique() == 1
    assert result.summary["best_trial"] == int(frame.loc[frame["val_loss"].idxmin(), "number"])
    warning = next(line for line in lines if line.startswith("warning: trials"))
    assert "within one validation sample" in warning and "1/180" in warning and "split.kfold" in warning
    assert result.summary["close_call"] == warning
    best = __import__("yaml").safe_load((result.sweep_dir / "best.yaml").read_text())
    assert best["trial"] == result.summary["best_trial"] and best["chosen_by"] == result.summary["chosen_by"]


@pytest.mark.slow  # trains a sweep of several trials
def test_trial_lines_and_the_table_show_four_significant_figures_and_whole_keys(workdir):
    result = run_cli("sweep", "random", "optim.lr=tag(log,interval(0.01,0.5))", "model.hidden=[32],[64]", "--trials", "2",
                     *IRIS, *QUICK)  # the CLI's console is 80 columns wide here, as in most terminals
    assert result.exit_code == 0, result.output
    trial_lines = [line for line in result.stderr.splitlines() if line.startswith("trial ")]
    assert len(trial_lines) == 2
    for line in trial_lines:
        value = line.split("optim.lr=")[1].split(",")[0]
        assert len(value.replace("0.", "", 1).lstrip("0")) <= 4, line  # not 0.022881136684755242
    table_lines = result.stdout.splitlines()
    assert max(map(len, table_lines)) <= 80
    header = next(line for line in table_lines if "trial" in line and "status" in line)
    assert "optim.lr" in header and "model.hidden" in header and "val_accuracy" in header and "…" not in result.stdout


@pytest.mark.slow  # trains a sweep of several trials
def test_the_study_and_the_trials_are_named_after_the_sweep(workdir):
    import optuna

    from dlcli.sweep.study import storage

    result = sweep("optim.lr=0.3,0.1", *IRIS, *QUICK, name="titanic")
    assert optuna.get_all_study_names(storage(result.sweep_dir)) == ["titanic"]
    assert __import__("yaml").safe_load((result.sweep_dir / "trials" / "000" / "config.yaml").read_text())["name"] == "titanic"
    resumed = sweep(kind="grid", resume=result.sweep_dir)  # the study is found again by its name
    assert resumed.summary["status"] == "completed"


@pytest.mark.slow  # trains a sweep of several trials
def test_random_sweep_resumes_without_repeating_its_options(workdir):
    first = run_cli("sweep", "random", "optim.lr=interval(0.05,0.3)", "--trials", "2", *IRIS, *QUICK)
    assert first.exit_code == 0
    directory = next(workdir.glob("runs/sweeps/sweep/*"))
    again = run_cli("sweep", "random", "--resume", str(directory))
    assert again.exit_code == 0, again.output
    assert "2 of 2 trials already finished" in again.stderr


@pytest.mark.slow  # trains a sweep: 3.3 s in the fast lane
def test_fail_fast_stops_at_the_first_failure(workdir):
    result = sweep("optim.lr=1e12,0.1,0.2", *IRIS, *QUICK, fail_fast=True)
    assert result.summary["status"] == "failed" and len(table(result)) == 1


@pytest.mark.slow  # trains a sweep of several trials
def test_pruning_waits_for_its_warmup_epochs_and_startup_trials(workdir):
    from dlcli.sweep.study import Pruning, pruner_for

    result = sweep("optim.lr=0.3,0.3,1e-6,1e-6,1e-6,1e-6", "trainer.epochs=3", *IRIS, prune="median")  # defaults: 1 epoch, 4 trials
    statuses = list(table(result).sort_values("number")["status"])
    assert statuses[:4] == ["completed"] * 4 and "pruned" in statuses[4:], statuses
    for number in (4, 5):
        summary = read(result.sweep_dir / "trials" / f"{number:03d}" / "summary.json")
        assert summary["status"] == "completed" or summary["epochs_completed"] >= 2  # never stopped after its first epoch
    median = pruner_for(Pruning("median", warmup=2, startup=3))
    assert median._n_warmup_steps == 3 and median._n_startup_trials == 3  # epochs 1 and 2 always run
    assert pruner_for(Pruning("asha", warmup=2, startup=3))._min_resource == 3
    assert pruner_for(Pruning("hyperband", warmup=1, steps=9))._min_resource == 2
    assert pruner_for(Pruning("median", warmup=5, per_fold=True, steps=3))._n_warmup_steps == 1  # a fold always trains in full
    help_text = run_cli("sweep", "tpe", "--help").stdout
    assert "--prune-warmup" in help_text and "--prune-startup" in help_text
    bad = run_cli("sweep", "grid", "optim.lr=0.1,0.2", "--prune-startup", "-1")
    assert bad.exit_code == 2 and "--prune-startup" in bad.stderr


@pytest.mark.slow  # trains a sweep of several trials
def test_a_kfold_trial_may_be_pruned_after_its_first_fold(workdir):
    result = sweep("optim.lr=0.3,0.2,1e-6", "split.kfold=3", *IRIS, *QUICK, prune="median", prune_startup=2)
    frame = table(result).set_index("number")
    assert frame.loc[2, "status"] == "pruned" and "after fold 1 of 3" in frame.loc[2, "message"]
    assert not (result.sweep_dir / "trials" / "002" / "fold-2").exists()


@pytest.mark.slow  # trains a sweep of several trials
def test_pruned_trials_are_marked_pruned_not_failed(workdir):
    median = sweep("optim.lr=0.3,0.2,1e-6,1e-6", "trainer.epochs=4", *IRIS, prune="median", prune_warmup=0, prune_startup=2)
    assert list(table(median)["status"]) == ["completed", "completed", "pruned", "pruned"]
    assert "MedianPruner" in read(median.sweep_dir / "trials" / "002" / "summary.json")["message"]
    for rule in ("asha", "hyperband"):  # a clearly worse trial among good ones is stopped early
        # (Hyperband's brackets start their first rung at epoch 1 or 3: which one a trial gets
        # hashes the study's name and the trial's number)
        result = sweep("optim.lr=0.3,0.3,0.3,1e-6,1e-6", "trainer.epochs=4", *IRIS, prune=rule, prune_warmup=0, prune_startup=0)
        statuses = list(table(result).sort_values("number")["status"])
        assert statuses[0] == "completed" and "pruned" in statuses[3:], (rule, statuses)
        pruned = next(n for n in (3, 4) if statuses[n] == "pruned")
        assert read(result.sweep_dir / "trials" / f"{pruned:03d}" / "summary.json")["epochs_completed"] < 4


@pytest.mark.slow  # trains a sweep and resumes it: 5.3 CPU seconds
def test_resume_runs_exactly_the_unfinished_trials(workdir):
    first = sweep("optim.lr=0.3,0.1,0.03,0.01", *IRIS, *QUICK)
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
def test_two_jobs_give_the_same_table_as_one(workdir):
    overrides = ("optim.lr=0.3,0.03", "model.hidden=[32],[64]", *IRIS, *QUICK)
    one = sweep(*overrides, jobs=1, threads=1)
    two = sweep(*overrides, jobs=2, threads=1)
    assert table(one).equals(table(two))


@pytest.mark.slow  # starts a Ray cluster (once: its start costs more than the trials)
def test_ray_backend_gives_the_same_table_with_trials_that_train_on_two_processes(workdir):
    """Ray places the trials (two at a time), each trial trains on two processes in one run
    directory, Ray's workers report their epochs to the one study, and the table is the one a
    local sweep of one-process trials gives: two processes train the weights one does, within
    float32 summation order."""
    pytest.importorskip("ray")
    overrides = ("optim.lr=0.3,0.03", *IRIS, *QUICK, "trainer.plots=false")
    local = sweep(*overrides, jobs=1, threads=1)
    on_ray = sweep(*overrides, "trainer.devices=2", "trainer.device=cpu", jobs=2, threads=1, backend="ray")
    ours, theirs = table(local), table(on_ray)
    assert list(ours.columns) == list(theirs.columns) and ours["status"].equals(theirs["status"])
    numbers = ours.select_dtypes("number").columns
    pd.testing.assert_frame_equal(ours[numbers], theirs[numbers], rtol=1e-4, atol=1e-6)
    assert [read(t / "summary.json")["world_size"] for t in sorted((on_ray.sweep_dir / "trials").iterdir())] == [2, 2]
    trials, attr = trials_in_study(on_ray.sweep_dir)
    assert sorted(t.user_attrs[attr] for t in trials) == [0, 1] and all(len(t.intermediate_values) == 2 for t in trials)


def test_ray_missing_is_a_one_line_install_hint(workdir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = run_cli("sweep", "grid", "optim.lr=0.3,0.1", *QUICK, "--backend", "ray")
    assert result.exit_code == 2 and 'pip install -e ".[ray]"' in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["grid", "optim.lr=0.1,0.2", "--metric", "val_f1"], "--metric val_f1 is not a validation metric"),
        (["grid", "optim.lr=0.1,0.2", "--prune", "bogus"], "--prune bogus is not valid: choose one of none, median, asha, hyperband"),
        (["tpe", "optim.lr=interval(0.01,0.1)"], "dl sweep tpe needs --trials N"),
        (["tpe", "optim.lr=tag(log,interval(0,1))", "--trials", "4"], "a log-scaled interval needs a positive lower bound"),
        (["tpe", "model=mlp,softmax,linreg", "--trials", "2"], "cannot try each of the 3 choices of model once"),
        (["tpe", "optim.lr=interval(0.01,0.1)", "--trials", "2", "--trials-per-gpu", "0"], "--trials-per-gpu 0 must be in [1, 4096]"),
        (["grid", "optim.lr=0.1,0.2", "--jobs", "0"], "--jobs 0 must be in [1, 4096]"),
        (["grid", "--resume", "nowhere"], "is not a sweep directory"),
        (["grid", "optim.lrr=0.1,0.2"], "optim.lrr is not a setting of torch.optim.SGD"),
    ],
)
def test_cli_bad_input(workdir, args, message):
    result = run_cli("sweep", *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert not list(workdir.glob("runs/sweeps/*/*/trials/*"))


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_cli_random_sweep_prints_a_sorted_table(workdir):
    result = run_cli("sweep", "random", "optim.lr=tag(log,interval(0.01,0.5))", "--trials", "3", "--seed", "1", *IRIS, *QUICK)
    assert result.exit_code == 0, result.output
    assert "sorted by val_accuracy" in result.stdout and "trial 002" in result.stderr
    values = [float(v) for v in pd.read_csv(next(workdir.glob("runs/sweeps/sweep/*/results.csv")))["optim.lr"]]
    assert all(0.01 <= v <= 0.5 for v in values) and not math.isnan(sum(values))


def trials_in_study(sweep_dir):
    from dlcli.sweep.study import NUMBER_ATTR, storage

    import optuna

    return optuna.load_study(study_name=optuna.get_all_study_names(storage(sweep_dir))[0], storage=storage(sweep_dir)).get_trials(deepcopy=False), NUMBER_ATTR


@pytest.mark.slow  # trains a sweep: 2.2 s in the fast lane
def test_tpe_sweep_writes_everything_through_one_study(workdir):
    result = run_cli("sweep", "tpe", "optim.lr=tag(log,interval(1e-3,0.5))", "model.dropout=interval(0,0.5)",
                     "model.hidden=choice([16],[64])", "trainer.batch_size=range(16,65,16)", "--trials", "5", "--seed", "3", *IRIS, *QUICK)
    assert result.exit_code == 0, result.output
    directory = next(workdir.glob("runs/sweeps/sweep/*"))
    assert {"study.journal", "results.csv", "best.yaml", "summary.json", "sweep.yaml"} <= {p.name for p in directory.iterdir()}
    frame = pd.read_csv(directory / "results.csv")
    assert list(frame["number"]) == [0, 1, 2, 3, 4] and set(frame["status"]) == {"completed"}
    assert all(1e-3 <= v <= 0.5 for v in frame["optim.lr"]) and set(frame["trainer.batch_size"]) <= {16, 32, 48, 64}
    summary = read(directory / "summary.json")
    assert summary["test"] and summary["study_ms_per_trial"] > 0  # Optuna's ask + tell + journal, per trial (timed in benchmarks/)
    trials, attr = trials_in_study(directory)
    assert sorted(t.user_attrs[attr] for t in trials) == [0, 1, 2, 3, 4]
    by_number = {t.user_attrs[attr]: t for t in trials}
    for _, row in frame.iterrows():  # the study holds what results.csv says
        assert by_number[row["number"]].value == pytest.approx(row["val_accuracy"])
        assert by_number[row["number"]].params["optim.lr"] == pytest.approx(row["optim.lr"])


@pytest.mark.slow
def test_parallel_tpe_trials_share_one_study(workdir):
    result = sweep("optim.lr=tag(log,interval(1e-3,0.5))", "model.hidden=choice([16],[32])", *IRIS, *QUICK, kind="tpe", trials=4,
                   jobs=2, threads=1)
    frame = table(result)
    assert sorted(frame["number"]) == [0, 1, 2, 3] and set(frame["status"]) == {"completed"}
    trials, attr = trials_in_study(result.sweep_dir)
    assert sorted(t.user_attrs[attr] for t in trials) == [0, 1, 2, 3] and all(t.state.name == "COMPLETE" for t in trials)
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials)  # each worker reported its epochs there


@pytest.mark.slow
def test_a_killed_tpe_sweep_resumes_in_the_same_study(tmp_path, monkeypatch):
    """SIGKILL (no clean-up at all) after two trials; --resume finishes the same study."""
    command = ["sweep", "tpe", "optim.lr=tag(log,interval(1e-3,0.5))", "--trials", "4", "trainer.epochs=8", "trainer.plots=false"]
    process = start_dl(command, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, results = time.time() + 120, None
    while time.time() < deadline:
        found = list(tmp_path.glob("runs/sweeps/sweep/*/results.csv"))
        if found and len(found[0].read_text().strip().splitlines()) >= 3:  # two trials done
            results = found[0]
            break
        time.sleep(0.1)
    assert results is not None
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    directory = results.parent
    done = pd.read_csv(results)
    monkeypatch.chdir(tmp_path)  # the resume runs in this process
    resumed = run_cli("sweep", "tpe", "--resume", str(directory))
    assert resumed.exit_code == 0, resumed.output
    final = pd.read_csv(directory / "results.csv")
    assert sorted(final["number"]) == list(range(4)) and set(final["status"]) == {"completed"}
    rerun = {int(line.split()[1]) for line in resumed.stderr.splitlines() if line.startswith("trial ")}
    assert rerun == set(range(4)) - set(done["number"]) and len(done) < 4  # finished trials never run again
    merged = final.set_index("number")
    for _, row in done.iterrows():
        assert merged.loc[row["number"], "optim.lr"] == row["optim.lr"]
    trials, attr = trials_in_study(directory)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.user_attrs[attr] for t in complete) == list(range(4))  # the killed trial was failed, then run again
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in trials)


@pytest.mark.slow  # starts processes
def test_a_killed_kfold_tpe_sweep_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path, monkeypatch):
    """SIGKILL in the middle of a cross-validated trial; --resume reruns that trial from its first
    fold and ends with exactly the table a sweep never killed ends with."""
    args = ["sweep", "tpe", "optim.lr=tag(log,interval(1e-3,0.5))", "split.kfold=3", "--trials", "4", "--seed", "3",
            "trainer.epochs=3", "trainer.plots=false", *IRIS, "--threads", "1"]  # a trial: 3 folds of 3 epochs, which the kill lands inside
    killed_dir, whole_dir = tmp_path / "killed", tmp_path / "whole"
    killed_dir.mkdir()
    whole_dir.mkdir()
    process = start_dl(args, killed_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, directory = time.time() + 120, None
    while time.time() < deadline:  # kill once trial 002 has begun its folds
        found = list(killed_dir.glob("runs/sweeps/sweep/*/trials/002/fold-1/metrics.csv"))
        if found:
            directory = found[0].parents[3]
            break
        time.sleep(0.02)
    assert directory is not None
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (directory / "trials" / "002" / "kfold.json").exists()  # killed inside the trial
    monkeypatch.chdir(killed_dir)
    resumed = run_cli("sweep", "tpe", "--resume", str(directory))
    assert resumed.exit_code == 0, resumed.output
    monkeypatch.chdir(whole_dir)
    assert run_cli(*args).exit_code == 0
    whole = next(whole_dir.glob("runs/sweeps/sweep/*"))
    compared = ["number", "status", "optim.lr", "val_accuracy", "val_accuracy_std", "val_loss", "best_epoch"]
    pd.testing.assert_frame_equal(pd.read_csv(directory / "results.csv")[compared], pd.read_csv(whole / "results.csv")[compared])
    assert read(directory / "summary.json")["best_trial"] == read(whole / "summary.json")["best_trial"]


def test_trials_per_gpu_places_k_trials_on_each_gpu():
    from dlcli.sweep.backends import plan_slots, slot_device

    assert plan_slots(None, 2, gpus=4) == (8, 0.0, None)
    devices = [slot_device(slot, 4) for slot in range(8)]
    assert sorted(devices) == sorted([f"cuda:{g}" for g in range(4)] * 2)  # two trials on each of the 4 GPUs
    assert [slot_device(slot, 1) for slot in range(3)] == [None] * 3  # one GPU: every trial on the auto device, cuda:0
    assert plan_slots(None, 3, gpus=1) == (3, 0.0, None)
    assert plan_slots(None, 4, gpus=2, backend="ray") == (8, 0.25, None)  # Ray: a quarter of a GPU per trial
    assert plan_slots(None, 4, gpus=0, backend="ray") == (4, 0.25, None)  # the cluster's GPUs, not the driver's
    jobs, _, note = plan_slots(2, 2, gpus=0)
    assert jobs == 2 and "no CUDA GPU here" in note
    with pytest.raises(UserError, match="--jobs 5 would put more than 2 trials on a GPU"):
        plan_slots(5, 2, gpus=2)


@pytest.mark.slow  # trains three sweeps
def test_a_resumed_random_sweep_draws_what_an_uninterrupted_one_draws(workdir):
    """Trial N's draw is seeded by (seed, N): stopping after two trials and resuming gives the
    values the whole sweep gives at once, never trial 0's values again."""
    overrides = ("optim.lr=tag(log,interval(1e-3,0.5))", "model.dropout=interval(0,0.5)", "trainer.epochs=1", *IRIS)
    whole = sweep(*overrides, kind="random", trials=4, seed=5, name="whole")

    def stop_after_two(line):
        if line.startswith("trial 001"):
            raise KeyboardInterrupt

    stopped = sweep(*overrides, kind="random", trials=4, seed=5, name="stopped", log=stop_after_two)
    assert stopped.summary["status"] == "interrupted" and len(table(stopped)) == 2
    resumed = sweep(kind="random", resume=stopped.sweep_dir)
    columns = ["number", "optim.lr", "model.dropout"]
    assert table(resumed)[columns].sort_values("number").equals(table(whole)[columns].sort_values("number"))


def test_a_trial_killed_inside_ask_before_its_values_were_written_runs_again(tmp_path):
    """A kill between Optuna's ask() taking the queued trial (number set, RUNNING) and writing its
    values leaves a trial with no values: resuming fails it and runs its number again, instead of
    reading values it never had (a KeyError once seen under load)."""
    from optuna.trial import TrialState

    from dlcli.sweep.asker import collect
    from dlcli.sweep.study import NUMBER_ATTR, Pruning, open_study

    space = parse_space(["optim.lr=tag(log,interval(1e-3,0.5))"])
    study = open_study(tmp_path, "s", "tpe", space, 0, 4, "max", Pruning("none"))
    study.enqueue_trial({}, user_attrs={NUMBER_ATTR: 0})
    study.ask()  # no distributions: the queued trial is taken, its value never written (the kill)
    records, again = collect(tmp_path, study, space, "val_accuracy", "max")
    assert records == [] and 0 not in again
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.FAIL]
