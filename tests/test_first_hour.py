"""A newcomer's first hour: comparing runs, printed numbers, quiet output, units, small workflow gaps."""

import json

import pytest
from rich.console import Console

import dlcli.cli
import dlcli.tracking.plots
from conftest import only_run, read, run_cli
from dlcli.system.numbers import setting, short
from dlcli.rundir.directory import read_metrics


@pytest.fixture
def narrow(monkeypatch):
    """The terminal most people have: 80 columns."""
    monkeypatch.setattr(dlcli.cli, "console", Console(width=80))
    monkeypatch.setattr(dlcli.cli, "err_console", Console(width=80, stderr=True))


def test_numbers_are_printed_to_about_four_significant_figures():
    assert [short(v) for v in (0.018268998599127650, 0.96, 146.93541, 169791.3115, 1.827e-5, 0.0, 7)] == [
        "0.01827", "0.9600", "146.9", "169,791", "1.827e-05", "0", "7"]
    # a diverging loss (issue 36: `train_loss 416,348,417,973,082,914,816` was printed)
    assert [short(v) for v in (416348417973082914816.0, 999999.4, 1e6, -2.5e7)] == ["4.163e+20", "999,999", "1.000e+06", "-2.500e+07"]
    assert [setting(v) for v in (0.018268998599127650, 0.1, 1e-5, [64, 256], True, None)] == [
        "0.01827", "0.1", "1e-05", "[64, 256]", "true", "null"]


def test_version():
    result = run_cli("--version")
    assert result.exit_code == 0 and result.stdout.startswith("dl 0.")


def _five_mixed_runs():
    for args in (["model=softmax", "--name", "softmax"], ["model.hidden=[64,64]", "model.dropout=0.2", "--name", "mlp_dropout"],
                 ["data=wine"], ["data=diabetes"], ["optim=adam", "optim.lr=0.001"]):
        assert run_cli("train", *args, "trainer.epochs=2", "-q").exit_code == 0


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_runs_compares_mixed_runs_in_80_columns(workdir, narrow):
    """Runs on different data sets (or judged by different metrics) are one table each, best first."""
    _five_mixed_runs()
    result = run_cli("runs")
    assert result.exit_code == 0, result.output
    table = result.stdout
    assert max(map(len, table.splitlines())) <= 80
    assert "data=digits · val_accuracy: 3 runs under runs" in table
    assert "data=wine · val_accuracy: 1 run under runs" in table and "data=diabetes · val_rmse: 1 run under runs" in table
    digits = table.split("data=wine")[0] if table.index("data=digits") < table.index("data=wine") else table
    header = next(line for line in digits.splitlines() if line.startswith("┃"))
    for column in ("val_accuracy", "model", "optim"):  # what differs within the group comes first
        assert f" {column} " in header, header
    values = [float(line.split("│")[2]) for line in digits.splitlines() if line.startswith("│") and "│" in line[1:]][:3]
    assert values == sorted(values, reverse=True)  # best first
    assert "dlcli.models" not in table and "_target_" not in table  # components by their option name


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_runs_where_filters_and_names_a_bad_condition(workdir, narrow):
    _five_mixed_runs()
    wine = run_cli("runs", "--where", "data=wine")
    assert wine.exit_code == 0 and "1 run under runs where data=wine" in wine.stdout and "diabetes" not in wine.stdout
    others = run_cli("runs", "--where", "data!=digits", "--json")
    assert sorted(row["data"] for row in json.loads(others.stdout)) == ["diabetes", "wine"]
    both = run_cli("runs", "--where", "data=digits", "--where", "model=softmax", "--json")
    assert [row["model"] for row in json.loads(both.stdout)] == ["softmax"]
    for bad, says in (("colour=red", "--where colour=red: colour is not a column"), ("data", "is not KEY=VALUE")):
        refused = run_cli("runs", "--where", bad)
        assert refused.exit_code == 2 and says in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_a_kfold_run_is_one_row_with_its_spread_until_you_open_it(workdir, narrow):
    assert run_cli("train", "data=iris", "split.kfold=3", "trainer.epochs=2", "-q").exit_code == 0
    assert run_cli("train", "data=iris", "trainer.epochs=2", "-q").exit_code == 0
    listing = run_cli("runs")
    assert "2 runs under runs" in listing.stdout and " ± " in listing.stdout and "fold-" not in listing.stdout
    parent = next(p for p in (workdir / "runs" / "train").iterdir() if (p / "kfold.json").exists())
    report = json.loads((parent / "kfold.json").read_text())
    row = next(r for r in json.loads(run_cli("runs", "--json").stdout) if "folds" in r)
    assert row["folds"] == 3 and row["val_accuracy"] == report["mean"] and row["val_accuracy_std"] == report["std"]
    folds = run_cli("runs", str(parent))
    assert "3 runs under" in folds.stdout and "fold-1" in folds.stdout


def test_shortened_run_names_stay_distinct():
    from dlcli.cli.runs_table import elide_distinct

    names = [f"sweeps/{sweep}/2026-12-05_18-44-26/trials/{n:03d}" for sweep in ("titanic_survival", "house_prices_log")
             for n in (1, 2)]
    for width in (16, 20, 30):
        shown = elide_distinct(names, width)
        assert len(set(shown)) == 4 and all(len(name) <= width for name in shown), shown
    assert elide_distinct(["a/b", "a/c"], 10) == ["a/b", "a/c"]  # short enough: as they are


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_runs_takes_several_directories_and_patterns(workdir, narrow):
    _five_mixed_runs()
    both = run_cli("runs", "runs/softmax", "runs/mlp*")
    assert both.exit_code == 0 and "2 runs under runs/softmax, runs/mlp*" in both.stdout
    one = run_cli("runs", "runs/softmax")
    assert "1 run under runs/softmax" in one.stdout
    chosen = run_cli("runs", "runs/softmax", "runs/mlp_dropout", "--columns", "model,model.hidden")
    header = next(line for line in chosen.stdout.splitlines() if line.startswith("┃"))
    assert "model.hidden" in header and "status" not in header and "[64, 64]" in chosen.stdout
    bad = run_cli("runs", "--columns", "modle")
    assert bad.exit_code == 2 and "--columns modle is not a column" in bad.stderr
    nothing = run_cli("runs", "runs/nothing*")
    assert nothing.exit_code == 2 and "matches no directory" in nothing.stderr


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_runs_json_keeps_every_value_in_its_type(workdir):
    _five_mixed_runs()
    listed = json.loads(run_cli("runs", "--json").stdout)
    rows = {row["run"].split("/")[0]: row for row in listed}
    diabetes = next(row for row in listed if row["data"] == "diabetes")
    dropout = rows["mlp_dropout"]
    assert dropout["model.hidden"] == [64, 64] and dropout["model.dropout"] == 0.2 and dropout["model"] == "mlp"
    assert rows["softmax"]["model"] == "softmax" and rows["softmax"]["model.hidden"] is None
    assert isinstance(dropout["val_accuracy"], float) and isinstance(dropout["epochs"], int)
    assert dropout["data.standardize"] is False and diabetes["data.standardize"] is True  # booleans stay booleans


def test_param_count_never_cuts_a_number_in_80_columns(narrow):
    result = run_cli("param-count", "model=vgg", "--input", "1x224x224")
    assert result.exit_code == 0, result.output
    counts = json.loads(run_cli("param-count", "model=vgg", "--input", "1x224x224", "--json").stdout)
    for layer in counts["layers"]:
        assert f"{layer['params']:,}" in result.stdout and f"{layer['macs']:,}" in result.stdout
    assert max(map(len, result.stdout.splitlines()[:-3])) <= 80


@pytest.mark.slow  # trains: 3.3 CPU seconds
def test_quiet_still_prints_the_line_that_matters(workdir):
    train = run_cli("train", "trainer.epochs=2", "-q")
    run = only_run(workdir)
    assert train.exit_code == 0 and train.stdout.strip().splitlines() == [train.stdout.strip()]
    assert str(run.relative_to(workdir)) in train.stdout and "val_accuracy" in train.stdout and "test accuracy" in train.stdout
    evaluated = run_cli("eval", str(run), "-q")
    assert evaluated.stdout.count("\n") == 1 and "test accuracy" in evaluated.stdout and "eval-test.json" in evaluated.stdout
    swept = run_cli("sweep", "grid", "optim.lr=0.1,0.01", "trainer.epochs=1", "-q")
    assert swept.exit_code == 0 and swept.output.count("\n") == 1 and "best trial" in swept.stdout
    found = run_cli("lr-find", "--steps", "20", "-q")
    assert found.exit_code == 0 and found.output.count("\n") == 1 and found.stdout.startswith("use: dl train optim.lr=")


def test_regression_loss_is_labelled_and_metrics_that_do_not_apply_are_left_out(workdir):
    result = run_cli("train", "data=diabetes", "trainer.epochs=2")
    assert result.exit_code == 0 and "test loss (standardized target)" in result.stdout
    assert "loss: on the standardized target" in result.stdout
    run = only_run(workdir)
    assert "log_rmse" in read(run / "summary.json")["test"]  # prices: positive, so it applies
    assert "loss (standardized target)" in run_cli("eval", str(run)).stdout
    # linreg_synthetic's targets go below zero: log-RMSE does not apply, and says so by its absence
    assert run_cli("train", "data=linreg_synthetic", "trainer.epochs=2", "--name", "linreg").exit_code == 0
    linreg = only_run(workdir, "linreg")
    assert "log_rmse" not in read(linreg / "summary.json")["test"]
    assert "log_rmse" not in json.loads(run_cli("eval", str(linreg), "--json").stdout)
    assert "test_log_rmse" not in json.loads(run_cli("runs", "runs/linreg", "--json").stdout)[0]


@pytest.mark.slow  # trains and evaluates: 6.9 CPU seconds
def test_eval_shows_the_confusion_matrix_and_names_its_files(workdir, monkeypatch):
    assert run_cli("train", "data=iris", "trainer.epochs=2").exit_code == 0
    run = only_run(workdir)
    monkeypatch.setattr(dlcli.tracking.plots, "drawing_enabled", True)
    result = run_cli("eval", str(run))
    assert "confusion matrix (rows: true class, columns: predicted)" in result.stdout
    assert f"wrote {run / 'eval-test.json'}" in result.stdout and f"wrote {run / 'confusion-test.png'}" in result.stdout
    dlcli.tracking.plots.wait_for_pictures()
    assert (run / "confusion-test.png").is_file()


@pytest.mark.parametrize("data", ["diabetes", "linreg_synthetic"])
def test_the_default_settings_train_regression_too(workdir, data):
    summary = json.loads(run_cli("train", f"data={data}", "--json").stdout)
    assert summary["status"] == "completed" and summary["test"]["r2"] > 0.1  # better than predicting the mean


@pytest.mark.slow  # trains a sweep and its best: 4.6 CPU seconds
def test_best_yaml_of_a_sweep_trains_as_it_stands(workdir):
    assert run_cli("sweep", "grid", "optim.lr=0.3,0.01", "model.hidden=[32]", "trainer.epochs=2", "-q").exit_code == 0
    sweep = next((workdir / "runs" / "sweeps" / "sweep").iterdir())
    best = read(sweep / "summary.json")["best_overrides"]
    result = run_cli("train", "--overrides-file", str(sweep / "best.yaml"), "trainer.epochs=3", "--json")
    assert result.exit_code == 0, result.output
    config = (only_run(workdir) / "config.yaml").read_text()
    assert f"lr: {next(o for o in best if o.startswith('optim.lr=')).split('=')[1]}" in config and "- 32" in config
    assert "epochs: 3" in config  # typed overrides come after the file's
    (workdir / "bad.yaml").write_text("overrides: 3\n")
    for path, message in (("bad.yaml", "must hold a list of overrides"), ("missing.yaml", "no such file")):
        refused = run_cli("train", "--overrides-file", path)
        assert refused.exit_code == 2 and message in refused.stderr


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_a_finished_run_trains_longer_in_a_new_run_that_matches_a_longer_run(workdir):
    assert run_cli("train", "trainer.epochs=2", "trainer.checkpoint_every=0").exit_code == 0
    first = only_run(workdir)
    before = (first / "metrics.csv").read_text()
    longer = json.loads(run_cli("train", f"resume={first}", "trainer.epochs=4", "--json").stdout)
    assert longer["status"] == "completed" and longer["continued_from"] == str(first) and longer["epochs_completed"] == 4
    assert (first / "metrics.csv").read_text() == before  # the finished run is left as it was
    assert run_cli("train", "trainer.epochs=4", "trainer.checkpoint_every=0", "--name", "straight").exit_code == 0
    straight = read_metrics(only_run(workdir, "straight") / "metrics.csv")
    continued = read_metrics(__import__("pathlib").Path(longer["run_dir"]) / "metrics.csv")
    drop = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_second")} for r in rows]
    assert drop(continued) == drop(straight)  # bit-identical to training 4 epochs at once
    shorter = run_cli("train", f"resume={first}", "trainer.epochs=2")
    assert shorter.exit_code == 2 and "already trained 2 epochs" in shorter.stderr
    assert run_cli("train", "sched=cosine", "trainer.epochs=2", "--name", "cosine").exit_code == 0
    planned = run_cli("train", f"resume={only_run(workdir, 'cosine')}", "trainer.epochs=4")
    assert planned.exit_code == 2 and "sched=cosine is planned over the run's 2 epochs" in planned.stderr


def test_inspect_shows_what_a_linear_regression_learned_in_the_datas_units(workdir):
    train = ["data=linreg_synthetic", "model=linreg", "optim.lr=0.03", "optim.momentum=0", "trainer.batch_size=10",
             "trainer.epochs=3", "data.standardize=true", "data.standardize_target=true"]
    assert run_cli("train", *train, "--quiet").exit_code == 0
    run = only_run(workdir)
    shown = run_cli("inspect", str(run))
    assert shown.exit_code == 0, shown.output
    assert "net.1.weight" in shown.stdout and "in the data's own units" in shown.stdout
    report = json.loads(run_cli("inspect", str(run), "--checkpoint", "last", "--json").stdout)
    weight, bias = report["units"]["parameters"]
    assert weight["values"][0] == pytest.approx([2.0, -3.4], abs=0.05) and bias["values"] == pytest.approx([4.2], abs=0.05)
    for args, message in (([str(run), "--checkpoint", "middle"], "choose one of best, last"),
                          ([str(workdir)], "is not a dl run directory")):
        bad = run_cli("inspect", *args)
        assert bad.exit_code == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_conv_shape_warns_when_the_input_reads_like_hxwxc():
    result = run_cli("conv-shape", "--input", "32x32x3", "flatten")
    assert result.exit_code == 0 and "did you mean --input 3x32x32?" in result.stderr


def test_runs_on_two_csv_files_are_two_groups(workdir, narrow):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    for name in ("a.csv", "b.csv"):
        x = rng.normal(size=(60, 2))
        pd.DataFrame({"x": x[:, 0], "y": x[:, 1], "label": np.where(x[:, 0] > 0, "p", "n")}).to_csv(name, index=False)
        assert run_cli("train", "data=csv", f"data.path={name}", "data.target=label", "trainer.epochs=1", "-q").exit_code == 0
    table = run_cli("runs").stdout
    assert "data=csv (a.csv) · val_accuracy: 1 run" in table and "data=csv (b.csv) · val_accuracy: 1 run" in table
    # --columns over tables of other metrics: each shows the chosen columns it has; one that no table has is refused
    assert run_cli("train", "data=diabetes", "trainer.epochs=1", "-q").exit_code == 0
    chosen = run_cli("runs", "--columns", "status,val_accuracy,seconds")
    assert chosen.exit_code == 0 and chosen.stdout.count("seconds") == 3, chosen.output
    assert "diabetes" in chosen.stdout and chosen.stdout.count("val_accuracy") == 4  # two titles, two headers
    wrong = run_cli("runs", "--columns", "status,val_acuracy")
    assert wrong.exit_code == 2 and "--columns val_acuracy is not a column" in wrong.stderr
