"""Series (data=sine, data=timeseries): windows split by time, expanding-window folds, scaling fitted
on the training span, persistence scored beside the model, forecasts with `dl predict`, bad inputs.
Every series here is written by the test itself."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from sklearn.model_selection import TimeSeriesSplit

from conftest import assert_resumes_exactly, quiet_reporter, read, run_cli
from dlcli.config.compose import compose
from dlcli.data import prepare_data
from dlcli.data.forecast import errors
from dlcli.data.record import check_preprocessing
from dlcli.data.time_split import time_split
from dlcli.diagnostics import analyze
from dlcli.errors import UserError
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest


def steps_of(windows: np.ndarray, span: int) -> set[int]:
    """Every step the windows hold (what they read and what they forecast)."""
    return {int(s) for start in windows for s in range(start, start + span)}


def write_series(path: Path, values: dict, **columns) -> Path:
    pd.DataFrame({**values, **columns}).to_csv(path, index=False)
    return path


def seasonal(n: int = 300, seed: int = 0) -> dict:
    """A daily-like series: trend + weekly season + noise, and a second column that follows it."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    sales = 10 + 0.05 * t + 3 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 0.3, n)
    return {"day": t, "sales": sales, "price": 5 + 0.1 * np.cos(2 * np.pi * t / 7)}


def series_data(*overrides: str):
    cfg = compose(["data=sine", "trainer.progress=false", *overrides])
    return prepare_data(cfg.data, cfg.split, int(cfg.seed))


# -- the split by time ----------------------------------------------------------------------------

def test_the_split_is_by_time_and_no_window_holds_a_step_of_another_part():
    window, horizon = 4, 2
    split = time_split(100, window, horizon, val=0.2, test=0.2)
    span = window + horizon
    train, val, test = (steps_of(split.part(p), span) for p in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test
    assert max(train) < 60 <= min(val) and max(val) < 80 <= min(test)  # val after train, test after val
    assert list(split.train) == list(range(0, 60 - span + 1))  # every window wholly inside the training span
    assert len(split.val) == len(split.test) == 20 - span + 1


def test_kfold_on_a_series_is_expanding_window_folds_before_the_test_span():
    window, horizon, k = 3, 1, 4
    span = window + horizon
    folds = [time_split(120, window, horizon, val=0.1, test=0.2, kfold=k, fold=f) for f in range(1, k + 1)]
    before_test = np.arange(120 - int(0.2 * 120) - span + 1)  # the windows whose steps all come before the test span
    expected = list(TimeSeriesSplit(n_splits=k, gap=span - 1).split(before_test))
    for fold, (trained_on, validated_on) in zip(folds, expected):
        assert list(fold.train) == list(before_test[trained_on]) and list(fold.val) == list(before_test[validated_on])
        assert max(steps_of(fold.train, span)) < min(steps_of(fold.val, span))  # trains on the past only
        assert list(fold.test) == list(folds[0].test)  # the same held-out test span for every fold
    for earlier, later in zip(folds, folds[1:]):
        assert set(earlier.train) < set(later.train) and earlier.val.max() < later.val.min()  # growing, moving forward


def test_scaling_is_fitted_on_the_training_span_only(tmp_path):
    values = seasonal(200)
    path = write_series(tmp_path / "s.csv", values)
    data = prepare_data(*_data_and_split(path, "data.columns=[sales]", "data.window=5"), 0)
    span_end = int(data.split.train[-1]) + 5 + 1
    assert span_end == 160  # split.val=0.1, split.test=0.1 of 200 steps
    assert data.encoding.center == pytest.approx([values["sales"][:span_end].mean()])
    assert data.encoding.scale == pytest.approx([values["sales"][:span_end].std()])
    shifted = dict(values, sales=np.concatenate([values["sales"][:span_end], values["sales"][span_end:] + 1000]))
    again = prepare_data(*_data_and_split(write_series(tmp_path / "t.csv", shifted), "data.columns=[sales]", "data.window=5"), 0)
    assert again.encoding.center == data.encoding.center  # the future moved, the scaling did not
    assert np.array_equal(again.features[again.split.train], data.features[data.split.train])


def _data_and_split(path: Path, *overrides: str):
    cfg = compose(["data=timeseries", f"data.path={path}", *overrides])
    return cfg.data, cfg.split


# -- persistence, and what the run reports -------------------------------------------------------

def test_persistence_is_scored_as_a_hand_computation_says(tmp_path):
    squares = np.arange(20, dtype=float) ** 2  # 0, 1, 4, 9, ...: persistence is wrong by a known amount
    path = write_series(tmp_path / "sq.csv", {"v": squares})
    cfg = compose(["data=timeseries", f"data.path={path}", "data.window=2", "data.horizon=2", "split.val=0.25", "split.test=0.25"])
    data = prepare_data(cfg.data, cfg.split, 0)
    assert list(data.split.val) == [10, 11] and list(data.split.test) == [15, 16]  # steps 10-14 and 15-19
    # test window 15 reads steps 15, 16 and forecasts 17, 18 as 16^2; window 16 reads 16, 17, forecasts 18, 19 as 17^2
    hand = [17**2 - 16**2, 18**2 - 16**2, 18**2 - 17**2, 19**2 - 17**2]
    facts = data.summary_facts()["persistence"]["test"]
    assert facts["rmse"] == pytest.approx(math.sqrt(np.mean(np.square(hand))))
    assert facts["mae"] == pytest.approx(np.mean(hand))
    report = data.forecast_report("test", data.targets[data.split.test])  # a perfect model, in scaled units
    assert report["rmse_per_step"] == pytest.approx([0, 0], abs=1e-4)  # float32 windows
    assert report["persistence_rmse_per_step"] == pytest.approx([math.sqrt((33**2 + 35**2) / 2), math.sqrt((68**2 + 72**2) / 2)])


def test_errors_per_step_are_over_windows_and_columns():
    predicted = np.array([[1.0, 2.0, 3.0, 4.0]])  # one window, 2 steps x 2 columns, step-major
    actual = np.zeros((1, 4))
    found = errors(predicted, actual, horizon=2)
    assert found["rmse_per_step"] == pytest.approx([math.sqrt(2.5), math.sqrt(12.5)])
    assert found["mae_per_step"] == pytest.approx([1.5, 3.5])


def test_a_forecast_that_does_not_beat_persistence_is_named_plainly():
    summary = {"task": "regression", "metric": "rmse", "monitor": "val_rmse", "best_epoch": 3,
               "persistence": {"val": {"rmse": 0.2, "mae": 0.15}}}
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.0} for e in (1, 2, 3)]
    config = {"data": {"window": 4}, "trainer": {"epochs": 3}}
    found = [f for f in analyze(rows, {**summary, "best_val_rmse": 0.25}, config=config) if f.code == "no_better_than_persistence"]
    assert found and "does not beat persistence" in found[0].message and "0.2" in found[0].message
    assert "data.window=8" in found[0].suggestion
    assert not [f for f in analyze(rows, {**summary, "best_val_rmse": 0.1}, config=config) if f.code == "no_better_than_persistence"]


def test_a_series_run_reports_persistence_beside_the_model_and_predicts_the_steps_after(workdir):
    result = train(RunRequest(compose(["data=sine", "model=mlp", "trainer.epochs=1", "trainer.progress=false",
                                       "data.num_points=200", "data.horizon=2"]), [], quiet_reporter()))
    summary = read(result.run_dir / "summary.json")
    assert set(summary["persistence"]) == {"val", "test"} and summary["test"]["persistence_rmse"] == summary["persistence"]["test"]["rmse"]
    record = check_preprocessing(read(result.run_dir / "preprocessing.json"), result.run_dir, 1)
    assert record["kind"] == "series" and record["input_shape"] == [1, 4] and record["series"]["horizon"] == 2
    report = read(result.run_dir / "eval-test.json")
    assert len(report["rmse_per_step"]) == 2 and report["persistence_rmse"] == summary["test"]["persistence_rmse"]

    history = np.sin(0.01 * np.arange(1, 51))
    write_series(workdir / "tail.csv", {"x": history})
    out = run_cli("predict", str(result.run_dir), "tail.csv", "--horizon", "2", "-o", "two.csv")
    assert out.exit_code == 0, out.output
    two = pd.read_csv("two.csv")
    assert list(two.columns) == ["step", "x"] and list(two.step) == [1, 2]
    out = run_cli("predict", str(result.run_dir), "tail.csv", "--horizon", "5", "-o", "five.csv")  # past the trained horizon: fed back
    assert out.exit_code == 0, out.output
    five = pd.read_csv("five.csv")
    assert list(five.step) == [1, 2, 3, 4, 5] and np.allclose(five.x[:2], two.x)
    # the fed-back steps are the model's forecast from a window ending in its own first two steps
    fed = pd.read_csv(_predict_from(workdir, result.run_dir, np.concatenate([history, two.x.to_numpy()]), 2))
    assert np.allclose(five.x[2:4], fed.x, atol=1e-5)
    out = run_cli("predict", str(result.run_dir), "tail.csv", "--horizon", "0")
    assert out.exit_code == 2 and "--horizon" in out.output
    for flag, value in (("--tokens", "5"), ("--temperature", "0.5"), ("--top-k", "3"), ("--seed", "1")):  # a language model's: not ignored
        out = run_cli("predict", str(result.run_dir), "tail.csv", flag, value)
        assert out.exit_code == 2 and f"{flag} applies with --prompt" in out.output, out.output


def _predict_from(workdir: Path, run_dir: Path, values: np.ndarray, steps: int) -> Path:
    write_series(workdir / "given.csv", {"x": values})
    out = run_cli("predict", str(run_dir), "given.csv", "--horizon", str(steps), "-o", "given-out.csv")
    assert out.exit_code == 0, out.output
    return workdir / "given-out.csv"


def test_a_forecast_of_other_columns_is_not_fed_back_past_its_horizon(workdir):
    path = write_series(workdir / "s.csv", seasonal(120))
    result = train(RunRequest(compose(["data=timeseries", f"data.path={path}", "data.columns=[sales,price]", "data.target=sales",
                                       "data.window=7", "model=mlp", "trainer.epochs=1", "trainer.progress=false"]), [],
                              quiet_reporter()))
    assert result.status == "completed"
    out = run_cli("predict", str(result.run_dir), str(path), "--horizon", "3")
    assert out.exit_code == 2 and "--horizon 1 or less, or train with data.horizon=3" in out.output


# -- bad inputs: one line, exit 2, nothing written ----------------------------------------------

BAD_SERIES = {
    "empty": (lambda p: p.write_text(""), [], "is empty"),
    "binary": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4), [], "not UTF-8"),
    "text column": (lambda p: p.write_text("a,b\n1,x\n2,y\n" + "3,z\n" * 40), ["data.columns=[a,b]"], "column 'b' of s.csv is not numeric"),
    "missing value": (lambda p: p.write_text("a,b\n" + "1,1\n" * 10 + "2,\n" + "3,3\n" * 30), ["data.window=2"],
                      "column 'b' of s.csv has no value on line 12"),
    "missing column": (lambda p: p.write_text("a\n" + "1\n" * 40), ["data.columns=[a,nope]"], "data.columns names nope, not a column"),
    "longer than the series": (lambda p: p.write_text("a\n" + "1\n" * 40), ["data.window=40"], "longer than the series (40 steps)"),
    "longer than the training span": (lambda p: p.write_text("a\n" + "1\n" * 40), ["data.window=10", "split.val=0.4", "split.test=0.4"],
                                      "longer than the training span (8 steps"),
    "horizon 0": (lambda p: p.write_text("a\n" + "1\n" * 40), ["data.horizon=0"], "data.horizon=0"),
    "missing time": (lambda p: p.write_text("t,a\n" + "1,1\n" * 5 + ",2\n" + "3,3\n" * 30), ["data.time=t", "data.window=2"], "line 7"),
    "a column twice": (lambda p: p.write_text("a,b\n" + "1,2\n" * 40), ["data.columns=[a,a]"], "data.columns lists a twice"),
}


@pytest.mark.parametrize("case", sorted(BAD_SERIES))
def test_a_bad_series_is_one_line_and_writes_nothing(workdir, case):
    write, overrides, words = BAD_SERIES[case]
    write(workdir / "s.csv")
    out = run_cli("train", "data=timeseries", "data.path=s.csv", "model=mlp", *overrides)
    assert out.exit_code == 2, out.output
    assert words in out.output and len(out.output.strip().splitlines()) == 1, out.output
    assert not (workdir / "runs").exists()


def test_a_linear_forecaster_is_inspected_as_stored_and_evaluated_beside_persistence(workdir):
    result = train(RunRequest(compose(["data=sine", "model=linreg", "trainer.epochs=1", "trainer.progress=false",
                                       "data.num_points=100"]), [], quiet_reporter()))
    out = run_cli("inspect", str(result.run_dir))
    assert out.exit_code == 0 and "windows of standardized steps" in out.output, out.output
    out = run_cli("eval", str(result.run_dir))
    assert out.exit_code == 0 and "persistence_rmse" in out.output, out.output


def test_a_received_record_with_a_bad_series_encoding_is_refused(tmp_path):
    data = series_data("data.num_points=100")
    record = data.preprocessing()
    assert check_preprocessing(record, tmp_path, 1) is record
    record["series"]["scale"] = [0.0]
    with pytest.raises(UserError, match="series.scale must be positive"):
        check_preprocessing(record, tmp_path, 1)


# -- training for real (slow) --------------------------------------------------------------------

@pytest.mark.slow  # trains an LSTM for several epochs
def test_an_lstm_beats_persistence_on_a_clean_sine(workdir):
    result = train(RunRequest(compose(["data=sine", "model=lstm", "data.noise=0", "data.frequency=0.1", "data.num_points=400",
                                       "data.window=8", "data.horizon=3", "trainer.epochs=8", "trainer.batch_size=16",
                                       "trainer.progress=false"]), [],
                              quiet_reporter()))
    summary = result.summary
    assert summary["test"]["rmse"] < 0.5 * summary["test"]["persistence_rmse"], summary["test"]
    assert "no_better_than_persistence" not in summary["diagnosis"]


@pytest.mark.slow  # trains an LSTM three times over
def test_an_lstm_on_sine_resumes_exactly(workdir):
    assert_resumes_exactly(["data=sine", "model=lstm", "trainer.epochs=4", "trainer.progress=false", "data.num_points=300"],
                           ("epoch", "lr", "train_loss", "val_loss", "val_rmse"))



@pytest.mark.slow  # trains, then exports and runs the file
@pytest.mark.parametrize("model", ["gru", "cnn1d"])
def test_a_forecaster_exports_to_onnx(workdir, model):
    pytest.importorskip("onnxruntime")
    path = write_series(workdir / "s.csv", seasonal(200))
    result = train(RunRequest(compose(["data=timeseries", f"data.path={path}", "data.columns=[sales,price]", "data.window=7",
                                       "data.horizon=3", "data.time=day", f"model={model}", "trainer.epochs=1",
                                       "trainer.progress=false"]), [], quiet_reporter()))
    out = run_cli("export", str(result.run_dir), "--format", "onnx", "--json")
    assert out.exit_code == 0, out.output
    assert "3 steps x 2 target columns" in out.output


@pytest.mark.slow  # k folds of a run
def test_kfold_on_a_series_trains_each_fold_on_its_past(workdir):
    path = write_series(workdir / "s.csv", seasonal(200))
    result = train(RunRequest(compose(["data=timeseries", f"data.path={path}", "data.columns=[sales]", "data.window=7",
                                       "model=mlp", "split.kfold=3", "trainer.epochs=1", "trainer.progress=false"]), [],
                              quiet_reporter()))
    assert result.status == "completed"
    sizes = [read(result.run_dir / f"fold-{k}" / "split.json")["sizes"]["train"] for k in (1, 2, 3)]
    assert sizes[0] < sizes[1] < sizes[2]
    out = run_cli("predict", str(result.run_dir), str(path), "--horizon", "3", "-o", "mean.csv")  # the folds' mean forecast
    assert out.exit_code == 0, out.output
    folds = [pd.read_csv(_fold_forecast(result.run_dir, path, k)).sales for k in (1, 2, 3)]
    assert np.allclose(pd.read_csv("mean.csv").sales, np.mean(folds, axis=0))


def _fold_forecast(run_dir: Path, path: Path, fold: int) -> str:
    out = run_cli("predict", str(run_dir), str(path), "--horizon", "3", "--fold", str(fold), "-o", f"fold-{fold}.csv")
    assert out.exit_code == 0, out.output
    return f"fold-{fold}.csv"


def test_the_sine_config_is_the_courses():
    cfg = OmegaConf.to_container(compose(["data=sine"]).data)
    assert (cfg["num_points"], cfg["noise"], cfg["frequency"], cfg["window"], cfg["horizon"]) == (1000, 0.2, 0.01, 4, 1)
