import json

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from dlcli.config.compose import compose
from dlcli.data import prepare_data
from dlcli.data.split import split_dataset
from dlcli.errors import UserError


def prepared(*overrides):
    cfg = compose(list(overrides))
    return prepare_data(cfg.data, cfg.split, cfg.seed)


def test_split_is_disjoint_complete_and_reproducible():
    labels = np.repeat(np.arange(5), 40)
    a = split_dataset(200, 0.1, 0.2, seed=3, stratify_by=labels)
    b = split_dataset(200, 0.1, 0.2, seed=3, stratify_by=labels)
    parts = [set(a.train), set(a.val), set(a.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(range(200))
    assert (len(a.train), len(a.val), len(a.test)) == (140, 20, 40)
    assert a.record() == b.record()
    assert split_dataset(200, 0.1, 0.2, seed=4, stratify_by=labels).record()["hashes"] != a.record()["hashes"]


def test_split_is_stratified():
    labels = np.array([0] * 180 + [1] * 20)
    split = split_dataset(200, 0.1, 0.1, seed=0, stratify_by=labels)
    assert (labels[split.test] == 1).sum() == 2 and (labels[split.val] == 1).sum() == 2


@pytest.mark.parametrize("val, test, message", [(0.5, 0.5, "leaves nothing to train on"), (1.5, 0.1, r"split.val=1.5 must be in \[0, 1\)")])
def test_bad_split_fractions(val, test, message):
    with pytest.raises(UserError, match=message):
        split_dataset(100, val, test, seed=0)


def test_sklearn_sets_have_their_shapes_and_tasks():
    digits = prepared()
    assert digits.input_shape == (1, 8, 8) and digits.num_outputs == 10 and digits.task == "classification"
    assert 0.0 <= digits.features.min() and digits.features.max() <= 1.0
    diabetes = prepared("data=diabetes")
    assert diabetes.task == "regression" and diabetes.num_outputs == 1
    train_targets = diabetes.targets[diabetes.split.train]
    assert abs(train_targets.mean()) < 1e-5 and abs(train_targets.std() - 1) < 1e-4  # standardized on train
    for name in ("iris", "wine", "breast_cancer"):
        data = prepared(f"data={name}")
        train = data.features[data.split.train]
        np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-5)  # statistics from train rows only


def test_linreg_synthetic_follows_its_weights():
    data = prepared("data=linreg_synthetic", "data.noise=0.0")
    w, *_ = np.linalg.lstsq(np.c_[data.features, np.ones(len(data.features))], data.targets, rcond=None)
    np.testing.assert_allclose(w, [2.0, -3.4, 4.2], atol=1e-4)


@pytest.fixture
def table_csv(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame(
        {
            "Id": np.arange(n),
            "area": rng.normal(100, 20, n),
            "zone": rng.choice(["A", "B", "C"], n),
            "price": rng.normal(200, 50, n),
            "kind": rng.choice(["house", "flat"], n),
        }
    )
    frame.loc[::9, "area"] = np.nan
    frame.loc[::11, "zone"] = None
    path = tmp_path / "houses.csv"
    frame.to_csv(path, index=False)
    return path


def csv_data(csv_path, **options):
    cfg = compose(["data=csv", f"data.path={csv_path}", "data.target=price", "data.task=regression", "data.drop=[Id]"])
    for key, value in options.items():
        OmegaConf.update(cfg, f"data.{key}", value)
    return prepare_data(cfg.data, cfg.split, cfg.seed)


def test_csv_is_encoded_with_pandas_string_columns(table_csv):
    assert pd.read_csv(table_csv)["zone"].dtype != np.float64  # text columns, str dtype on pandas 3
    data = csv_data(table_csv)
    assert data.features.dtype == np.float32 and not np.isnan(data.features).any()
    names = data.feature_names
    assert "area" in names and "zone_A" in names and "zone_<missing>" in names and "kind_flat" in names
    assert "Id" not in names
    zone_missing = data.features[:, names.index("zone_<missing>")]
    assert zone_missing[0] == 1.0 and zone_missing.sum() == len(range(0, 120, 11))
    area = data.features[data.split.train, names.index("area")]
    assert abs(area.mean()) < 1e-5  # imputed with the train mean, then standardized on train


@pytest.mark.parametrize(
    "options, message",
    [
        ({"path": "nowhere.csv"}, "data.path=nowhere.csv: no such file"),
        ({"target": "cost"}, "data.target=cost is not a column of houses.csv: columns are Id, area, zone, price, kind"),
        ({"target": "kind"}, "data.target=kind is not numeric (found"),
        ({"task": "ranking"}, "data.task=ranking is not valid: choose one of classification, regression"),
        ({"drop": ["Nope"]}, "data.drop lists Nope"),
    ],
)
def test_csv_mistakes_are_explained(table_csv, options, message):
    with pytest.raises(UserError) as info:
        csv_data(table_csv, **options)
    assert message in str(info.value)


def test_csv_classification_of_text_labels(table_csv):
    cfg = compose(["data=csv", f"data.path={table_csv}", "data.target=kind", "data.drop=[Id]"])
    data = prepare_data(cfg.data, cfg.split, cfg.seed)
    assert data.class_names == ["flat", "house"] and data.targets.dtype == np.int64


def test_missing_csv_path_names_the_key():
    with pytest.raises(UserError, match=r"data.path must be set"):
        prepared("data=csv")


def price_csv(tmp_path, rows: int = 100, whole: bool = False):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"area": rng.normal(100, 20, rows), "rooms": rng.integers(1, 6, rows)})
    frame["SalePrice"] = 1500 * frame["area"] + 9000 * frame["rooms"] + rng.normal(0, 5000, rows)
    if whole:
        frame["SalePrice"] = frame["SalePrice"].round(-2).astype(int)  # whole hundreds: few repeats
    path = tmp_path / "house.csv"
    frame.to_csv(path, index=False)
    return path, frame["SalePrice"].nunique()


@pytest.mark.parametrize("whole", [False, True])
def test_a_price_target_is_not_taken_for_hundreds_of_classes(workdir, whole):
    from conftest import run_cli

    path, distinct = price_csv(workdir, whole=whole)
    base = ["train", "data=csv", f"data.path={path}", "data.target=SalePrice", "trainer.epochs=2", "trainer.plots=false"]
    refused = run_cli(*base)
    assert refused.exit_code == 2, refused.output
    assert (f"data.target=SalePrice has {distinct} distinct numeric values and looks like a regression target: "
            "add data.task=regression") in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (workdir / "runs").exists()
    result = run_cli(*base, "data.task=regression", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "completed"


def test_numeric_class_labels_stay_classes(tmp_path):
    from dlcli.data.sources import load_csv

    rng = np.random.default_rng(0)
    path = tmp_path / "labels.csv"
    coded = pd.DataFrame({"x": rng.normal(size=100), "label": np.arange(100) % 30, "grade": rng.integers(1, 6, 100)})
    coded["code"] = rng.choice([101, 205, 310, 412], 100)  # few category codes
    coded.to_csv(path, index=False)
    for target, classes in (("label", 30), ("grade", 5), ("code", 4)):
        raw = load_csv(str(path), target)
        assert raw.task == "classification" and len(set(raw.targets)) == classes


def test_split_errors_list_a_few_classes_and_the_count():
    with pytest.raises(UserError) as info:
        split_dataset(300, 0.1, 0.1, seed=0, stratify_by=np.arange(300).astype(float).astype(str))
    message = str(info.value)
    assert ", ... (300 in all)" in message and len(message) < 400
    assert "set split.stratify=false" in message
