"""dlcli.tools.inspect_run: what a run's model learned, and the linear models in the data's own units."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import quiet_reporter
from dlcli.config.compose import compose
from dlcli.errors import UserError
from dlcli.tools.inspect_run import SMALL, inspect_lines, inspect_run
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest

LINREG = ["data=linreg_synthetic", "model=linreg", "optim.lr=0.03", "optim.momentum=0", "trainer.batch_size=10",
          "trainer.epochs=3", "trainer.progress=false"]
TRUE_W, TRUE_B = [2.0, -3.4], 4.2


def trained(*overrides: str):
    result = train(RunRequest(compose(list(overrides)), [], quiet_reporter()))
    assert result.status == "completed"
    return result.run_dir


def entry(entries: list[dict], name: str) -> dict:
    return next(e for e in entries if e["name"] == name)


def flat(values) -> list[float]:
    return np.asarray(values, dtype=float).ravel().tolist()


@pytest.mark.parametrize("standardized", [False, True], ids=["as-given", "standardized"])
def test_linear_regression_recovers_w_and_b_in_the_datas_units(workdir, standardized):
    extra = ["data.standardize=true", "data.standardize_target=true"] if standardized else []
    run = trained(*LINREG, *extra)
    report = inspect_run(run)
    assert json.loads(json.dumps(report)) == report  # JSON as it is
    assert report["checkpoint"] == "best" and report["epoch"] >= 1 and report["run"] == str(run)
    assert report["total_parameters"] == 3

    units = report["units"]
    w, b = (entry(units["parameters"], n)["values"] for n in ("net.1.weight", "net.1.bias"))
    assert np.allclose(flat(w), TRUE_W, atol=0.05) and np.allclose(flat(b), [TRUE_B], atol=0.05)
    stored = flat(entry(report["parameters"], "net.1.weight")["values"])
    if standardized:  # the stored weights are standardized: far from the truth, the conversion says how
        assert not np.allclose(stored, TRUE_W, atol=0.5)
        assert "standardize=true" in units["note"] and "standardize_target=true" in units["note"]
        assert units["target_scale"] > 1 and abs(units["target_shift"] - TRUE_B) < 0.5
    else:  # nothing was scaled: as stored is the data's own units, and the report says so
        assert stored == flat(w) and units["feature_shift"] == [0.0, 0.0] and units["feature_scale"] == [1.0, 1.0]
        assert "already in the data's own units" in units["note"]

    text = "\n".join(inspect_lines(report))
    assert units["note"] in text and "columns of w: x0, x1" in text
    shown = f"net.1.weight  1x2  w = [{float(flat(w)[0]):.4g}, {float(flat(w)[1]):.4g}]"
    assert shown in text


def test_standardization_constants_are_the_runs_own(workdir):
    """mu and sigma are those the run fitted on its train rows (population std), m and s its target's."""
    from dlcli.data import prepare_data
    from dlcli.data.sources import make_linreg_synthetic
    from dlcli.rundir.directory import load_saved_config

    run = trained(*LINREG, "data.standardize=true", "data.standardize_target=true")
    units = inspect_run(run, "last")["units"]
    cfg = load_saved_config(run)
    data = prepare_data(cfg.data, cfg.split, cfg.seed)
    raw = make_linreg_synthetic(w=TRUE_W, b=TRUE_B, seed=cfg.seed)
    train_x, train_y = raw.features[data.split.train], raw.targets[data.split.train].astype(float)
    assert np.allclose(units["feature_shift"], train_x.mean(axis=0), atol=1e-5)
    assert np.allclose(units["feature_scale"], train_x.std(axis=0), rtol=1e-5)
    assert units["target_shift"] == pytest.approx(train_y.mean(), abs=1e-5)
    assert units["target_scale"] == pytest.approx(train_y.std(), rel=1e-5)


def test_softmax_logits_in_raw_units_equal_the_models(workdir):
    """Feature scaling only (classification has no target scaling): W x + b on the raw features
    gives the very logits the stored model gives on the prepared ones."""
    from sklearn.datasets import load_iris

    from dlcli.data import prepare_data
    from dlcli.rundir.directory import load_saved_config

    run = trained("data=iris", "model=softmax", "trainer.epochs=3", "trainer.progress=false")
    report = inspect_run(run)
    units = report["units"]
    assert "classification" in units["note"] and units["target_scale"] is None
    cfg = load_saved_config(run)
    prepared = prepare_data(cfg.data, cfg.split, cfg.seed).features
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"]
    logits = prepared.astype(float) @ state["net.1.weight"].double().numpy().T + state["net.1.bias"].double().numpy()
    w = np.asarray(entry(units["parameters"], "net.1.weight")["values"])
    b = np.asarray(entry(units["parameters"], "net.1.bias")["values"])
    assert w.shape == (3, 4) and b.shape == (3,)  # in full, though larger than SMALL
    assert np.allclose(load_iris().data @ w.T + b, logits, atol=1e-4)


def test_a_table_with_categories_and_missing_values(workdir):
    """data=csv: numeric columns standardized (missing ones filled), categories one-hot (as they are)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 200
    table = pd.DataFrame({"area": rng.normal(1500, 400, n), "rooms": rng.integers(1, 6, n),
                          "kind": rng.choice(["a", "b"], n)})
    table.loc[::17, "area"] = np.nan
    table["price"] = 100 * table["area"].fillna(1500) + 5000 * table["rooms"] + 30000
    table.to_csv(workdir / "house.csv", index=False)
    run = trained("data=csv", "data.path=house.csv", "data.target=price", "data.task=regression", "model=linreg",
                  "trainer.epochs=2", "trainer.progress=false")
    report = inspect_run(run)
    units = report["units"]
    assert units["feature_names"] == ["area", "rooms", "kind_a", "kind_b"]
    assert "one-hot" in units["note"] and "a missing numeric value is filled with its column's train mean" in units["note"]
    assert units["feature_shift"][2:] == [0.0, 0.0] and units["feature_scale"][2:] == [1.0, 1.0]
    # predictions in the data's own units agree with the stored model's, on rows with no missing value
    from dlcli.data import prepare_data
    from dlcli.rundir.directory import load_saved_config

    cfg = load_saved_config(run)
    data = prepare_data(cfg.data, cfg.split, cfg.seed)
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"]
    stored = data.features.astype(float) @ state["net.1.weight"].double().numpy().T + state["net.1.bias"].double().numpy()
    predicted = data.target_scaler.inverse(stored.ravel())
    w = flat(entry(units["parameters"], "net.1.weight")["values"])
    b = flat(entry(units["parameters"], "net.1.bias")["values"])[0]
    raw = np.column_stack([table["area"], table["rooms"], table["kind"] == "a", table["kind"] == "b"]).astype(float)
    known = ~np.isnan(raw[:, 0])
    assert np.allclose(raw[known] @ w + b, predicted[known], rtol=1e-4, atol=1e-2)


def test_statistics_of_a_small_mlp(workdir):
    run = trained("data=iris", "model=mlp", "model.hidden=[4]", "model.batch_norm=true", "trainer.epochs=2",
                  "trainer.progress=false")
    report = inspect_run(run, checkpoint="last")
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert report["epoch"] == state["state"]["epoch"] == 2
    names = [e["name"] for e in report["parameters"]]
    assert names == ["net.1.weight", "net.1.bias", "net.2.weight", "net.2.bias", "net.4.weight", "net.4.bias"]
    assert report["total_parameters"] == 4 * 4 + 4 + 4 + 4 + 3 * 4 + 3
    assert {e["name"] for e in report["buffers"]} == {"net.2.running_mean", "net.2.running_var", "net.2.num_batches_tracked"}
    for e in report["parameters"]:
        t = state["model"][e["name"]].double()
        assert e["shape"] == list(t.shape) and e["numel"] == t.numel()
        assert e["mean"] == pytest.approx(t.mean().item()) and e["std"] == pytest.approx(t.std(correction=0).item())
        assert e["min"] == pytest.approx(t.min().item()) and e["max"] == pytest.approx(t.max().item())
        assert e["norm"] == pytest.approx(t.norm().item())
        if t.numel() <= SMALL:
            assert np.allclose(np.asarray(e["values"]), t.numpy())
        else:
            assert e["values"] is None
    assert report["units"] is None and "as stored" in report["units_note"]
    text = inspect_lines(report)
    assert text[-1] == report["units_note"]
    assert any(line.startswith("net.1.weight") and "4x4" in line for line in text)


def test_bad_inputs_are_one_line_user_errors(workdir):
    def refused(pattern: str, *args) -> None:
        with pytest.raises(UserError, match=pattern) as caught:
            inspect_run(*args)
        assert "\n" not in str(caught.value)

    refused("--checkpoint middle is not valid: choose one of best, last", workdir, "middle")
    refused("nowhere is not a directory: give a run directory", workdir / "nowhere")
    refused("is not a dl run directory", workdir)
    run = trained(*LINREG[:-2], "trainer.epochs=1", "trainer.progress=false")
    (run / "checkpoints" / "best.pt").unlink()
    refused(r"--checkpoint best: .* has no checkpoints/best.pt: choose --checkpoint last", run)
    shutil.rmtree(run / "checkpoints")
    refused(r"--checkpoint last: .* has no checkpoints/last.pt: train \(or resume\) the run", run, "last")


def test_the_renderer_is_plain_and_four_significant_figures():
    report = {
        "run": "runs/train/x", "checkpoint": "best", "epoch": 3, "model": "dlcli.models.LinearRegression",
        "total_parameters": 3, "buffers": [],
        "parameters": [
            {"name": "net.weight", "shape": [1, 2], "numel": 2, "mean": -0.70051, "std": 2.69958, "min": -3.40001,
             "max": 1.99905, "norm": 3.94422, "values": [[1.99905, -3.40001]]},
            {"name": "net.bias", "shape": [1], "numel": 1, "mean": 4.19978, "std": 0.0, "min": 4.19978, "max": 4.19978,
             "norm": 4.19978, "values": [4.19978]},
        ],
        "units": None, "units_note": "values are as stored: the model is not a single linear layer on flat features",
    }
    lines = inspect_lines(report)
    assert all(isinstance(line, str) and "[/" not in line for line in lines)
    assert "net.weight  1x2  w = [1.999, -3.4]" in lines
    assert "net.bias    1    b = [4.2]" in lines
    assert lines[-1] == report["units_note"]


@pytest.mark.slow  # starts an interpreter
def test_importing_it_does_not_import_torch():
    code = "import sys, dlcli.tools.inspect_run; assert 'torch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
