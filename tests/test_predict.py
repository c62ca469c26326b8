"""Use what you trained: k-fold -> refit -> predict a submission; export to ONNX and TorchScript;
split.val=0 training; target transforms. Through the CLI, on files the tests write."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import read, run_cli
from image_fixtures import write_image_folder


def house_prices(n: int, seed: int, with_target: bool = True) -> pd.DataFrame:
    """A house-prices table: numbers with missing cells, a text column with missing cells, an Id,
    and a price that is multiplicative in its features (so log(price) is nearly linear)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "Id": np.arange(n) + 1000 * seed,
        "LotArea": rng.normal(9000, 2000, n).round(),
        "OverallQual": rng.integers(1, 11, n),
        "Neighborhood": rng.choice(["North", "South", "East", None], n),
        "YearBuilt": rng.integers(1900, 2020, n),
    })
    frame.loc[rng.random(n) < 0.1, "LotArea"] = np.nan
    quality = np.exp(0.1 * frame.OverallQual + 0.004 * (frame.YearBuilt - 1900))
    place = frame.Neighborhood.map({"North": 1.2, "South": 0.9, "East": 1.0}).fillna(1.05).astype(float)
    price = 40000 * quality * place * (frame.LotArea.fillna(9000) / 9000) ** 0.3 * np.exp(rng.normal(0, 0.05, n))
    if with_target:
        frame["SalePrice"] = price.round()
    return frame


def _umask() -> int:
    import os

    current = os.umask(0)
    os.umask(current)
    return current


def newest(root: Path, name: str) -> Path:
    return sorted((root / "runs" / name).iterdir())[-1]


def ok(*args: str):
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result


def refused(*args: str, says: str):
    """A user error: exit 2, one line naming the problem, no traceback."""
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    assert says in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    return result


@pytest.fixture(scope="module")
def house_flow(tmp_path_factory):
    """k-fold on train.csv, then a refit of it, in one working directory (shared by the tests below)."""
    root = tmp_path_factory.mktemp("houses")
    cwd = Path.cwd()
    import os

    os.chdir(root)
    try:
        house_prices(300, 0).to_csv("train.csv", index=False)
        test = house_prices(60, 1, with_target=False)
        test.loc[0, "Neighborhood"] = "Harbour"  # never seen in training: treated as missing
        test.loc[1, "LotArea"] = np.nan
        test.to_csv("test.csv", index=False)
        # 10 epochs a fold: the refit's length is the folds' mean best epoch, whatever they reach (30 took 6 s)
        ok("train", "experiment=house_prices_kfold", "data.path=train.csv", "trainer.epochs=10", "trainer.progress=false", "-q")
        kfold = newest(root, "house_prices")
        ok("train", f"refit={kfold}", "-q")
        refit = newest(root, "house_prices")
        yield root, kfold, refit
    finally:
        os.chdir(cwd)


@pytest.mark.slow  # shares a k-fold of 5 folds and its refit (house_flow)
def test_refit_trains_train_and_val_for_the_mean_best_epoch_of_the_folds(house_flow):
    root, kfold, refit = house_flow
    best = [row["best_epoch"] for row in read(kfold / "kfold.json")["per_fold"]]
    summary = read(refit / "summary.json")
    assert summary["status"] == "completed" and summary["refit_of"] == str(kfold)
    assert summary["refit_epochs"] == int(np.mean(best) + 0.5) == summary["epochs_completed"] == summary["best_epoch"]
    assert "mean best epoch over 5 folds" in summary["refit_epochs_from"]
    assert "best.pt is the last epoch" in summary["selection"]
    split = read(refit / "split.json")
    fold = read(kfold / "fold-1" / "split.json")
    assert split["sizes"]["val"] == 0 and split["hashes"]["test"] == fold["hashes"]["test"]  # the same untouched test rows
    assert split["sizes"]["train"] == fold["sizes"]["train"] + fold["sizes"]["val"]
    assert read(refit / "preprocessing.json")["target"]["scaling"]["transform"] == "log"


@pytest.mark.slow  # shares a k-fold of 5 folds and its refit (house_flow)
def test_predict_writes_a_submission_with_ids_and_the_targets_name(house_flow):
    root, _, refit = house_flow
    result = ok("predict", str(refit), str(root / "test.csv"), "--output", str(root / "submission.csv"))
    assert "not seen in training" in result.output
    submission = pd.read_csv(root / "submission.csv")
    test = pd.read_csv(root / "test.csv")
    assert list(submission.columns) == ["Id", "SalePrice"] and len(submission) == len(test) == 60
    assert submission.Id.tolist() == test.Id.tolist()
    assert submission.SalePrice.notna().all() and (submission.SalePrice > 10000).all()


@pytest.mark.slow  # shares a k-fold of 5 folds and its refit (house_flow)
def test_partial_files_of_a_killed_predict_are_removed_when_the_output_is_written_again(house_flow, tmp_path):
    """A SIGKILL mid-write leaves `.NAME.PID.*.partial`; the next `dl predict` to the same output
    removes those whose process is gone, and keeps one a live process is still writing."""
    import subprocess
    import sys

    root, _, refit = house_flow
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    abandoned = tmp_path / f".out.csv.{dead}.k3j2x.partial"
    abandoned.write_text("Id,SalePr")
    living = tmp_path / f".out.csv.{os.getppid()}.a8b7c.partial"  # a process that is alive now
    living.write_text("Id,Sale")
    unrelated = tmp_path / ".other.csv.1.zzz.partial"
    unrelated.write_text("x")
    ok("predict", str(refit), str(root / "test.csv"), "--output", str(tmp_path / "out.csv"))
    assert (tmp_path / "out.csv").is_file() and not abandoned.exists()
    assert living.exists() and unrelated.exists()
    assert not [p for p in tmp_path.glob(".out.csv.*.partial") if p != living]


@pytest.mark.slow  # shares a k-fold of 5 folds and its refit (house_flow)
def test_predictions_match_dl_eval_on_the_runs_own_test_rows(house_flow):
    """The test rows of train.csv, predicted from the file, score what `dl eval` reports."""
    from omegaconf import OmegaConf

    from dlcli.data import prepare_data

    root, _, refit = house_flow
    cfg = OmegaConf.load(refit / "config.yaml")
    cfg.data.path = str(root / "train.csv")
    rows = prepare_data(cfg.data, cfg.split, cfg.seed).split.test
    table = pd.read_csv(root / "train.csv")
    table.iloc[rows].to_csv(root / "held_out.csv", index=False)
    report = json.loads(ok("eval", str(refit), "--json").stdout)
    predicted = json.loads(ok("predict", str(refit), str(root / "held_out.csv"), "--json").stdout)
    frame = pd.read_csv(predicted["output"])
    actual = table.SalePrice.to_numpy()[rows]
    assert frame.Id.tolist() == table.Id.to_numpy()[rows].tolist()
    rmse = math.sqrt(np.mean((frame.SalePrice.to_numpy() - actual) ** 2))
    log_rmse = math.sqrt(np.mean((np.log(frame.SalePrice.to_numpy()) - np.log(actual)) ** 2))
    assert rmse == pytest.approx(report["rmse"], rel=1e-5) and log_rmse == pytest.approx(report["log_rmse"], rel=1e-4)
    assert report["loss_units"] == "standardized log target"


@pytest.mark.slow  # shares a k-fold of 5 folds and its refit (house_flow)
def test_onnx_export_of_the_refit_gives_pytorchs_outputs(house_flow):
    import onnxruntime

    root, _, refit = house_flow
    result = json.loads(ok("export", str(refit), "--format", "onnx", "--json").stdout)
    sidecar = read(Path(result["sidecar"]))
    assert sidecar["verified"]["rows"] > 0 and sidecar["output"]["gives"].startswith("SalePrice in its own units")
    # the file alone: encode rows with the sidecar's preprocessing, run onnxruntime, compare with dl predict
    from dlcli.data.preprocess import encoding_from_json

    test = pd.read_csv(root / "test.csv")
    features, _ = encoding_from_json(sidecar["preprocessing"]["features"]).transform(test)
    session = onnxruntime.InferenceSession(result["path"], providers=["CPUExecutionProvider"])
    prices = session.run(None, {"input": features})[0].reshape(-1)
    predicted = pd.read_csv(json.loads(ok("predict", str(refit), str(root / "test.csv"), "--json").stdout)["output"])
    assert np.allclose(prices, predicted.SalePrice, rtol=1e-4)


@pytest.mark.slow  # trains in its setup: 4.8 s in the fast lane
def test_bad_prediction_inputs_are_one_line_and_write_nothing(house_flow, tmp_path):
    root, kfold, refit = house_flow
    test = pd.read_csv(root / "test.csv")
    test.drop(columns=["OverallQual", "YearBuilt"]).to_csv(tmp_path / "partial.csv", index=False)
    refused("predict", str(refit), str(tmp_path / "partial.csv"), "--output", str(tmp_path / "out.csv"),
            says="partial.csv lacks 2 column(s) the run was trained on: OverallQual, YearBuilt")
    words = test.copy()
    words["LotArea"] = words["LotArea"].astype(object)
    words.loc[3, "LotArea"] = "big"
    words.to_csv(tmp_path / "words.csv", index=False)
    refused("predict", str(refit), str(tmp_path / "words.csv"), "--output", str(tmp_path / "out.csv"),
            says="column 'LotArea' of words.csv holds 'big' (line 5)")
    refused("eval", str(kfold), says="is a k-fold run")
    refused("predict", str(tmp_path), str(root / "test.csv"), says="is not a dl run directory")
    refused("predict", str(refit), str(tmp_path / "absent.csv"), says="absent.csv: no such file or folder")
    refused("predict", str(refit), str(root / "test.csv"), "--id", "Key", says="--id Key is not a column of test.csv")
    refused("predict", str(refit), str(root / "test.csv"), "--proba", says="--proba gives class probabilities")
    (tmp_path / "afile").write_text("")
    refused("predict", str(refit), str(root / "test.csv"), "--output", str(tmp_path / "afile" / "p.csv"), says="afile is a file, not a folder")
    refused("export", str(refit), "--output", str(tmp_path / "afile" / "m.onnx"), says="afile is a file, not a folder")
    assert not (tmp_path / "out.csv").exists() and not list(tmp_path.glob(".out.csv*"))


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_text_columns_stay_text_whatever_the_new_rows_hold(house_flow, tmp_path):
    """A text column of codes whose new rows hold only numbers and a blank keeps its categories."""
    root, _, refit = house_flow
    test = pd.read_csv(root / "test.csv").head(5)
    test["Neighborhood"] = "North"
    test.to_csv(tmp_path / "all.csv", index=False)
    blank = test.copy()
    blank.loc[4, "Neighborhood"] = None
    blank.to_csv(tmp_path / "blank.csv", index=False)
    first = pd.read_csv(json.loads(ok("predict", str(refit), str(tmp_path / "all.csv"), "--json").stdout)["output"])
    second = pd.read_csv(json.loads(ok("predict", str(refit), str(tmp_path / "blank.csv"), "--json").stdout)["output"])
    assert np.allclose(first.SalePrice[:4], second.SalePrice[:4]) and first.SalePrice[4] != second.SalePrice[4]
    import os
    import stat

    ok("predict", str(refit), str(tmp_path / "all.csv"), "-o", str(tmp_path / "written.csv"))
    mode = stat.S_IMODE(os.stat(tmp_path / "written.csv").st_mode)
    assert mode == 0o666 & ~_umask()  # the usual permissions, not a temporary file's 0600


@pytest.mark.slow  # trains and exports: 3.7 CPU seconds
def test_export_from_another_directory_checks_on_random_inputs(house_flow, tmp_path, monkeypatch):
    root, _, refit = house_flow
    monkeypatch.chdir(tmp_path)
    (root / "train.csv").rename(root / "train.csv.away")  # the run's data (recorded as an absolute path) is not here
    try:
        result = json.loads(ok("export", str(refit), "--output", "m.onnx", "--json").stdout)
    finally:
        (root / "train.csv.away").rename(root / "train.csv")
    assert result["verified"]["inputs"].startswith("random inputs (the run's data could not be loaded here")
    assert result["run"] == str(refit.resolve()) and Path("m.onnx").is_file()


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_a_run_trained_before_preprocessing_was_saved_says_so(workdir):
    ok("train", "data=iris", "trainer.epochs=2", "-q")
    run = newest(workdir, "train")
    (run / "preprocessing.json").unlink()
    pd.DataFrame(np.zeros((2, 4))).to_csv("rows.csv", index=False)
    refused("predict", str(run), "rows.csv", says="it was trained before dl saved what a run learns from its data")
    refused("export", str(run), says="cannot be used for prediction or export")


@pytest.mark.slow  # trains: 4.0 s in the fast lane
def test_classification_on_a_table_gives_class_names_and_probabilities(workdir):
    rng = np.random.default_rng(0)
    n = 240
    frame = pd.DataFrame({"code": [f"c{i}" for i in range(n)], "size": rng.normal(0, 1, n), "colour": rng.choice(["red", "blue", None], n)})
    frame["kind"] = np.where(frame["size"] > 0, "large", "small")
    frame.to_csv("items.csv", index=False)
    ok("train", "data=csv", "data.path=items.csv", "data.target=kind", "data.drop=[code]", "optim=adam", "optim.lr=0.01",
       "trainer.epochs=15", "-q")
    run = newest(workdir, "train")
    new = frame.drop(columns=["kind"]).head(20)
    new.to_csv("new.csv", index=False)
    result = json.loads(ok("predict", str(run), "new.csv", "--proba", "--json").stdout)
    out = pd.read_csv(result["output"])
    assert list(out.columns) == ["code", "kind", "large", "small"] and out.code.tolist() == new.code.tolist()
    assert np.allclose(out[["large", "small"]].sum(axis=1), 1.0, atol=1e-6)
    assert set(out.kind) <= {"large", "small"}
    assert (out.kind == np.where(new["size"] > 0, "large", "small")).mean() >= 0.9
    assert out.kind.tolist() == np.where(out.large > out.small, "large", "small").tolist()


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_images_from_a_folder_a_file_and_an_array(workdir):
    root = write_image_folder(workdir / "shapes", per_class=12)
    ok("train", "data=imagefolder", f"data.root={root}", "model=lenet", "trainer.epochs=1", "-q")
    run = newest(workdir, "train")
    out = pd.read_csv(json.loads(ok("predict", str(run), str(root), "--json").stdout)["output"])
    assert len(out) == 36 and list(out.columns) == ["file", "label"] and out.file.iloc[0] == "cat/" + sorted(p.name for p in (root / "cat").iterdir())[0]
    assert set(out.label) <= {"cat", "dog", "fox"}
    one = sorted((root / "dog").iterdir())[0]
    single = pd.read_csv(json.loads(ok("predict", str(run), str(one), "--json", "-o", "one.csv").stdout)["output"])
    assert single.file.tolist() == [one.name] and single.label.iloc[0] == out.set_index("file").label[f"dog/{one.name}"]
    from PIL import Image

    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted((root / "dog").iterdir())])
    np.save("dogs.npy", pixels)  # N x H x W x C uint8
    from_array = pd.read_csv(json.loads(ok("predict", str(run), "dogs.npy", "--json").stdout)["output"])
    assert from_array.label.tolist() == out[out.file.str.startswith("dog/")].label.tolist()
    (workdir / "empty").mkdir()
    refused("predict", str(run), str(workdir / "empty"), says="holds no images")
    Image.new("RGB", (40, 30)).save(workdir / "big.png")
    refused("predict", str(run), str(workdir / "big.png"), says="big.png is 40x30 pixels, and the run's model takes 24x24 images")
    assert not list(run.glob("predictions-empty*")) and not list(run.glob("predictions-big*"))


@pytest.mark.slow  # trains each model, exports and runs it in onnxruntime
@pytest.mark.parametrize("model, data", [
    ("mlp", ["data=digits"]),
    ("lenet", ["data=digits", "data.resize=28"]),
    ("resnet", ["data=digits", "model.small_input=true", "model.width=8"]),
    ("lstm", ["data=digits", "+data.as_sequence=true"]),
])
def test_onnx_export_matches_pytorch_for_the_classic_models(workdir, model, data):
    import onnxruntime
    import torch

    from dlcli.trained.export import exported_module, verification_rows
    from dlcli.trained.opened import open_trained_run

    ok("train", f"model={model}", *data, "trainer.epochs=1", "-q")
    run = newest(workdir, "train")
    result = json.loads(ok("export", str(run), "--json").stdout)
    assert result["verified"]["max_abs_difference"] <= 1e-3 and result["input"]["shape"][0] == "batch"
    trained = open_trained_run(run)
    rows = verification_rows(trained)[0][:5]  # another batch size than the export's example
    with torch.no_grad():
        expected = exported_module(trained.model, trained.record)(rows).numpy()
    got = onnxruntime.InferenceSession(result["path"], providers=["CPUExecutionProvider"]).run(None, {"input": rows.numpy()})[0]
    assert np.allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_torchscript_export_includes_image_normalization(workdir):
    import torch

    root = write_image_folder(workdir / "shapes", per_class=8)
    ok("train", "data=imagefolder", f"data.root={root}", "model=lenet", "data.normalize=computed", "trainer.epochs=1", "-q")
    run = newest(workdir, "train")
    result = json.loads(ok("export", str(run), "--format", "torchscript", "-o", "net.pt", "--json").stdout)
    assert result["normalization_included"] and Path("net.pt").is_file() and Path("net.pt.json").is_file()
    loaded = torch.jit.load("net.pt")
    pixels = torch.rand(3, 3, 24, 24)
    from dlcli.trained.opened import open_trained_run

    trained = open_trained_run(run)
    norm = trained.record["images"]["normalize"]
    normalized = (pixels - torch.tensor(norm["mean"]).view(1, 3, 1, 1)) / torch.tensor(norm["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(loaded(pixels), trained.model(normalized), atol=1e-5)


def test_an_export_that_fails_says_why_and_leaves_nothing(workdir, monkeypatch):
    import torch

    ok("train", "data=iris", "trainer.epochs=1", "-q")
    run = newest(workdir, "train")

    def unsupported(*args, **kwargs):
        raise RuntimeError("\x1b[96maten::weird_op\x1b[0m is not supported\nlong details")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    refused("export", str(run), says="MLP cannot be exported to ONNX (aten::weird_op is not supported): try --format torchscript")
    refused("export", str(run), "--format", "tflite", says="--format tflite is not valid: choose one of onnx, torchscript")
    assert not list(run.glob("model*")) and not list(run.glob(".export-*"))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    refused("export", str(run), says="pip install 'dlcli[export]'")


@pytest.mark.slow  # trains and exports twice: 2.0-3.1 s in the fast lane
def test_a_model_torch_export_cannot_trace_goes_through_the_torchscript_exporter(workdir, monkeypatch):
    """Older torch releases cannot trace some models with torch.export (an LSTM on torch 2.9): the
    TorchScript-based exporter takes over, and its file is checked against PyTorch like any."""
    import torch

    ok("train", "data=iris", "trainer.epochs=1", "-q")
    run = newest(workdir, "train")
    real, calls = torch.onnx.export, []

    def dynamo_cannot(*args, dynamo=True, **kwargs):
        calls.append(dynamo)
        if dynamo:
            raise RuntimeError("Failed to export the model with torch.export")
        return real(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_cannot)
    result = json.loads(ok("export", str(run), "--json").stdout)
    assert calls == [True, False] and (run / "model.onnx").is_file()
    assert result["verified"]["max_abs_difference"] <= 1e-4


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_training_without_a_validation_split_keeps_the_last_epoch(workdir):
    ok("train", "data=iris", "split.val=0", "trainer.epochs=4", "-q")
    run = newest(workdir, "train")
    summary = read(run / "summary.json")
    assert summary["best_epoch"] == 4 and "best.pt is the last epoch" in summary["selection"] and summary["test"]
    assert "diagnostics_skipped" not in summary and summary["diagnosis"] is not None  # the live checks look at train rows
    import torch

    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["state"]["epoch"] == 4
    refused("train", "data=iris", "split.val=0", "trainer.early_stopping.enabled=true", says="trainer.early_stopping watches the validation split")
    refused("train", "data=iris", "split.val=0", "sched=plateau", says="sched=plateau steps on a validation metric")


@pytest.mark.slow  # trains: 2.4 s in the fast lane
def test_target_transforms_train_on_logs_and_report_in_the_targets_units(workdir):
    house_prices(200, 0).to_csv("houses.csv", index=False)
    base = ["data=csv", "data.path=houses.csv", "data.target=SalePrice", "data.task=regression", "data.drop=[Id]",
            "model=linreg", "optim=adam", "optim.lr=0.05", "trainer.epochs=40"]
    ok("train", *base, "data.target_transform=log", "-q")
    summary = read(newest(workdir, "train") / "summary.json")
    assert summary["loss_units"] == "standardized log target" and summary["test"]["rmse"] > 1000  # dollars, not logs
    assert summary["test"]["log_rmse"] < 0.2
    ok("train", *base, "data.target_transform=log1p", "data.standardize_target=false", "-q")
    assert read(newest(workdir, "train") / "summary.json")["loss_units"] == "log1p target"
    frame = pd.read_csv("houses.csv")
    frame.loc[5, "SalePrice"] = 0
    frame.to_csv("zero.csv", index=False)
    refused("train", *base, "data.path=zero.csv", "data.target_transform=log", says="needs targets above 0, and one is 0")
    refused("train", *base, "data.target_transform=sqrt", says="data.target_transform=sqrt is not valid: choose one of none, log, log1p")
    refused("train", "data=iris", "+data.target_transform=log", says="applies to regression targets only")


@pytest.mark.slow  # trains a run and its refits
def test_refit_of_a_single_run_and_what_it_refuses(workdir):
    ok("train", "data=iris", "trainer.epochs=6", "-q")
    run = newest(workdir, "train")
    best = read(run / "summary.json")["best_epoch"]
    ok("train", f"refit={run}", "-q")
    refit = newest(workdir, "train")
    summary = read(refit / "summary.json")
    assert summary["refit_epochs"] == best == summary["epochs_completed"] and summary["refit_of"] == str(run)
    ok("train", f"refit={run}", "trainer.epochs=2", "-q")
    assert read(newest(workdir, "train") / "summary.json")["epochs_completed"] == 2
    count = len(list((workdir / "runs" / "train").iterdir()))
    refused("train", f"refit={run}", "optim.lr=0.5", says="refit trains")
    ok("train", "data=iris", "sched=plateau", "trainer.epochs=3", "--name", "plateau", "-q")
    ok("train", f"refit={newest(workdir, 'plateau')}", "-q")  # plateau needs validation: the refit trains at a constant rate
    refit = read(newest(workdir, "plateau") / "summary.json")
    assert refit["status"] == "completed" and "constant optim.lr" in refit["refit_schedule"]
    refused("train", f"refit={workdir / 'nowhere'}", says="is not a directory")
    summary_path = run / "summary.json"
    summary_path.write_text(json.dumps({**read(summary_path), "status": "interrupted"}))
    refused("train", f"refit={run}", says="is interrupted: refit a completed run")
    assert len(list((workdir / "runs" / "train").iterdir())) == count  # nothing half-made


@pytest.mark.slow  # shares house_flow (a 5-fold k-fold and its refit) with slow tests only: 13 CPU seconds alone
def test_a_kfold_run_predicts_with_the_mean_of_its_fold_models(house_flow, tmp_path):
    root, kfold, _ = house_flow
    test_csv = str(root / "test.csv")
    result = ok("predict", str(kfold), test_csv, "--output", str(tmp_path / "mean.csv"))
    assert "the mean of 5 fold models' predicted SalePrice (in its own units)" in result.stdout
    folds = []
    for fold in range(1, 6):
        one = ok("predict", str(kfold), test_csv, "--fold", str(fold), "--output", str(tmp_path / f"fold{fold}.csv"))
        assert "best checkpoint" in one.stdout
        folds.append(pd.read_csv(tmp_path / f"fold{fold}.csv"))
    mean = pd.read_csv(tmp_path / "mean.csv")
    assert list(mean.columns) == ["Id", "SalePrice"] and mean.Id.tolist() == folds[0].Id.tolist()
    np.testing.assert_allclose(mean.SalePrice, np.mean([f.SalePrice for f in folds], axis=0), rtol=1e-9)
    assert not np.allclose(folds[0].SalePrice, folds[1].SalePrice)  # the folds are different models
    refused("predict", str(kfold), test_csv, "--fold", "6", says="--fold 6 is not a fold of")
    refused("predict", str(kfold), test_csv, "--fold", "0", says="--fold 0")
    refused("predict", str(kfold / "fold-1"), test_csv, "--fold", "1", says="is a single run: drop --fold")
    refused("export", str(kfold), says=f"dl train refit={kfold}")


@pytest.mark.slow  # trains a 3-fold k-fold: 4.8 s in the fast lane
def test_fold_models_average_class_probabilities(workdir):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 2))
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")})
    frame.to_csv("labelled.csv", index=False)
    frame.drop(columns=["label"]).head(20).to_csv("new.csv", index=False)
    ok("train", "data=csv", "data.path=labelled.csv", "data.target=label", "split.kfold=3", "trainer.epochs=3", "-q")
    kfold = newest(workdir, "train")
    ok("predict", str(kfold), "new.csv", "--proba", "--output", "mean.csv")
    for fold in (1, 2, 3):
        ok("predict", str(kfold), "new.csv", "--proba", "--fold", str(fold), "--output", f"fold{fold}.csv")
    mean = pd.read_csv("mean.csv")
    folds = [pd.read_csv(f"fold{n}.csv") for n in (1, 2, 3)]
    np.testing.assert_allclose(mean[["no", "yes"]], np.mean([f[["no", "yes"]] for f in folds], axis=0), rtol=1e-6)
    assert (mean["label"] == np.where(mean["yes"] > mean["no"], "yes", "no")).all()
    np.testing.assert_allclose(mean[["no", "yes"]].sum(axis=1), 1.0, rtol=1e-6)


def test_refit_on_every_labelled_row_has_no_test_number_and_says_why(workdir):
    ok("train", "data=iris", "trainer.epochs=4", "-q")
    run = newest(workdir, "train")
    result = ok("train", f"refit={run}", "split.test=0", "-q")
    assert "no test split (split.test=0" in result.stdout
    refit = newest(workdir, "train")
    summary, split = read(refit / "summary.json"), read(refit / "split.json")
    assert split["sizes"] == {"train": 150, "val": 0, "test": 0} and summary["test"] is None
    assert "every labelled row" in summary["no_test"]
    refused("train", f"refit={run}", "split.test=0.3", says="split.test=0.3: a refit keeps its source's test split")


@pytest.mark.slow  # trains a sweep and its refit
def test_refit_of_a_sweep_trains_its_best_trial_again(workdir):
    ok("sweep", "grid", "optim.lr=0.3,0.05", "split.kfold=3", "trainer.epochs=3", "data=iris", "--name", "irises", "-q")
    sweep_dir = next((workdir / "runs" / "sweeps" / "irises").iterdir())
    summary = read(sweep_dir / "summary.json")
    best = sweep_dir / "trials" / f"{summary['best_trial']:03d}"
    ok("train", f"refit={sweep_dir}", "split.test=0", "-q")
    refit = newest(workdir, "irises")  # the trials' name: the sweep's
    facts = read(refit / "summary.json")
    assert facts["refit_of"] == str(best) and facts["refit_of_sweep"] == str(sweep_dir)
    assert "mean best epoch over 3 folds" in facts["refit_epochs_from"]
    config = __import__("yaml").safe_load((refit / "config.yaml").read_text())
    trial_config = __import__("yaml").safe_load((best / "config.yaml").read_text())
    assert trial_config["trainer"]["plots"] is False and config["trainer"]["plots"] is True  # presentation: this command's
    assert str(config["optim"]["lr"]) == summary["best_overrides"][-1].split("=")[1]
    refused("predict", str(sweep_dir), "x.csv", says="is a sweep, with one run per trial")
