"""Data sources: each returns a RawData table (features and targets, before any fitting).

A source is named by `data._target_` in the config, so a user's own loader plugs in the same way.
Preprocessing that learns from the data (standardizing, imputing) happens later, on the train
split only (see dlcli.data.preprocess), so no statistic leaks from validation or test rows.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dlcli.config.constraints import (
    BOOLEAN,
    NON_NEGATIVE,
    NUMBER,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    TEXT,
    Interval,
    ListOf,
    Options,
    Text,
    constrained,
    nullable,
)
from dlcli.data.tables import check_numbers, read_csv_file
from dlcli.data.text_table import TextTable, text_table
from dlcli.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

TASKS = ("classification", "regression")


@dataclass
class RawData:
    features: pd.DataFrame | np.ndarray  # a DataFrame keeps column kinds for one-hot encoding
    targets: np.ndarray
    task: str
    name: str
    image_shape: tuple[int, ...] | None = None  # (C, H, W) when each row is an image
    feature_scale: float | None = None  # known range of raw features (pixels), instead of standardizing
    notes: list[str] = field(default_factory=list)
    target_name: str | None = None  # the target column's name, which predictions are written under
    id_columns: list[str] = field(default_factory=list)  # columns left out of the features (ids, ...)


SKLEARN_SETS = {
    # name: (loader name in sklearn.datasets, task)
    "digits": ("load_digits", "classification"),
    "iris": ("load_iris", "classification"),
    "wine": ("load_wine", "classification"),
    "breast_cancer": ("load_breast_cancer", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}


def load_sklearn(name: str) -> RawData:
    """One of scikit-learn's bundled datasets (no download)."""
    if name not in SKLEARN_SETS:
        raise UserError(f"data.name={name} is not a bundled dataset: choose one of {', '.join(SKLEARN_SETS)}")
    loader, task = SKLEARN_SETS[name]
    features, targets = (array.copy() for array in _bundled(loader))  # a copy: whoever gets it may change it in place
    raw = RawData(features=features, targets=targets, task=task, name=name)
    if name == "digits":
        # 8x8 grey images with intensities 0..16: keep the image shape for CNNs, scale to [0, 1].
        raw.image_shape = (1, 8, 8)
        raw.feature_scale = 16.0
    return raw


@functools.lru_cache(maxsize=None)
def _bundled(loader: str) -> tuple[np.ndarray, np.ndarray]:
    """A bundled set's features (float32) and targets, read once per process: scikit-learn parses
    its compressed CSV each call (digits: ~20 ms), and a sweep or k-fold run in one process asks for
    the same set at every trial and fold."""
    import sklearn.datasets  # noqa: PLC0415  (dl cache list runs without sklearn)

    bunch = getattr(sklearn.datasets, loader)()
    return np.asarray(bunch.data, dtype=np.float32), np.asarray(bunch.target)


@constrained(w=ListOf(NUMBER, 1, 10_000), b=NUMBER, num_samples=Interval(10, 10_000_000, integer=True), noise=NON_NEGATIVE, seed=SEED)
def make_linreg_synthetic(
    w: list[float], b: float, num_samples: int = 1000, noise: float = 0.01, seed: int = 0
) -> RawData:
    """y = Xw + b + noise with X ~ N(0, 1): the linear-regression warm-up with a known answer."""
    rng = np.random.default_rng(seed)
    weights = np.asarray(w, dtype=np.float64)
    features = rng.normal(0.0, 1.0, size=(num_samples, len(weights)))
    targets = features @ weights + b + rng.normal(0.0, noise, size=num_samples)
    return RawData(
        features=features.astype(np.float32),
        targets=targets.astype(np.float32),
        task="regression",
        name="linreg_synthetic",
    )


@constrained(num_samples=Interval(10, 10_000_000, integer=True), num_features=Interval(1, 100_000, integer=True),
             num_classes=Interval(2, 1000, integer=True), informative=nullable(POSITIVE_INT), class_sep=POSITIVE, seed=SEED)
def make_classification_synthetic(
    num_samples: int = 1000, num_features: int = 20, num_classes: int = 2, informative: int | None = None,
    class_sep: float = 1.0, seed: int = 0,
) -> RawData:
    """Gaussian clusters per class (scikit-learn's make_classification): a classification set of any
    size and width with no download, for warm-ups, tests and benchmarks."""
    from sklearn.datasets import make_classification  # noqa: PLC0415  (dl cache list runs without sklearn)

    informative = num_features if informative is None else informative
    if informative > num_features:  # a relation between two settings
        raise UserError(f"data.informative={informative} must be at most data.num_features={num_features}")
    if num_samples < num_classes * 2:
        raise UserError(f"data.num_samples={num_samples} is too few for data.num_classes={num_classes}: give at least "
                        f"{num_classes * 2}")
    if num_classes > 2**informative:
        raise UserError(f"data.num_classes={num_classes} needs more informative features: at least {math.ceil(math.log2(num_classes))}")
    features, targets = make_classification(
        n_samples=num_samples, n_features=num_features, n_informative=informative, n_redundant=0, n_repeated=0,
        n_classes=num_classes, n_clusters_per_class=1, class_sep=class_sep, random_state=seed,
    )
    return RawData(features=features.astype(np.float32), targets=targets, task="classification", name="classification_synthetic")


@constrained(path=Text(non_empty=True), target=Text(non_empty=True), task=Options(TASKS), drop=nullable(ListOf(TEXT)),
             text=nullable(Text(non_empty=True)), lowercase=BOOLEAN)
def load_csv(path: str, target: str, task: str = "classification", drop: list[str] | None = None,
             text: str | None = None, lowercase: bool = False) -> RawData | TextTable:
    """A user's table: one column is the target, the others (minus `drop`) are features; with
    `text`, that column of text alone is the input (dlcli.data.text_table), lowercased with `lowercase`."""
    import pandas as pd  # noqa: PLC0415  (dl cache list runs without pandas)

    file, table = read_csv_file(path, "train.csv")
    if target not in table.columns:
        raise UserError(
            f"data.target={target} is not a column of {file.name}: columns are {', '.join(map(str, table.columns))}"
        )
    drop = list(drop or [])
    if target in drop:
        kept = [c for c in drop if c != target]
        raise UserError(f"data.drop lists the target column {target}, which is never a feature anyway: "
                        f"use data.drop=[{','.join(kept)}]")
    unknown = [c for c in drop if c not in table.columns]
    if unknown:
        raise UserError(f"data.drop lists {', '.join(unknown)}, not columns of {file.name}")

    notes = []
    lines = np.arange(len(table)) + 2  # each row's line in the file, kept as rows are dropped
    missing_target = table[target].isna()
    if missing_target.any():
        notes.append(f"dropped {int(missing_target.sum())} rows with no value in target column '{target}'")
        table = table.loc[~missing_target].reset_index(drop=True)
        lines = lines[~missing_target.to_numpy()]
    if len(table) < 10:
        raise UserError(f"data.path={path} has {len(table)} usable rows: need at least 10")

    y = table[target]
    if task == "regression":
        numeric = pd.to_numeric(y, errors="coerce")
        if numeric.isna().any():
            bad = y[numeric.isna()].iloc[0]
            raise UserError(
                f"data.target={target} is not numeric (found {bad!r}), so it cannot be regressed: "
                "use data.task=classification or a numeric target column"
            )
        check_numbers(numeric.to_numpy(dtype=float), target, file.name, "fix it, or leave the cell empty to drop the row", lines)
        targets = numeric.to_numpy(dtype=np.float32)
    else:
        _refuse_regression_looking_target(y, target)
        targets = y.astype(str).to_numpy(dtype=object)
    if text is not None:
        return text_table(table, text, target, targets, task, file, notes, drop, lowercase)
    if lowercase:
        raise UserError("data.lowercase=true lowercases the text column of data.text, and none is named: "
                        "add data.text=COLUMN or drop data.lowercase")
    features = table.drop(columns=[target, *drop])
    if features.shape[1] == 0:
        raise UserError(f"{file.name} has no feature columns left after removing the target and data.drop")
    for column in features.columns:
        if _is_numeric(features[column]) and not features[column].dtype == bool:
            check_numbers(features[column].to_numpy(dtype=float, na_value=np.nan), column, file.name,
                          f"fix it, or leave the column out with data.drop=[{column}]", lines)
    for column in features.columns:
        if not _is_numeric(features[column]):
            distinct = features[column].nunique()
            if distinct > 0.5 * len(features) and distinct > 20:
                notes.append(
                    f"column '{column}' has {distinct} distinct values and looks like an id: "
                    f"consider data.drop=[{column}]"
                )
    return RawData(features=features, targets=targets, task=task, name=file.stem, notes=notes, target_name=str(target),
                   id_columns=[str(c) for c in drop])


# A numeric classification target with more distinct values than this may look like a regression target.
MANY_CLASSES = 20


def _refuse_regression_looking_target(y, target: str) -> None:
    """Stop a numeric column of measurements (prices, lengths) from becoming hundreds of classes.

    The rule: more than MANY_CLASSES distinct values, and either some of them are fractional
    (class labels are whole numbers), or they are whole numbers that are not a label coding
    0..K-1 or 1..K and there are more of them than 5% of the rows (fewer than 20 rows a class on
    average, so most "classes" are too rare to learn or stratify). Text labels and compact integer
    codings of any number of classes are left alone.
    """
    if not _is_numeric(y) or y.dtype == bool:
        return
    values = np.unique(y.to_numpy(dtype=float))
    if len(values) <= MANY_CLASSES:
        return
    fractional = bool((values != np.round(values)).any())
    label_coding = values[0] in (0, 1) and values[-1] - values[0] + 1 == len(values)
    if fractional or (not label_coding and len(values) > 0.05 * len(y)):
        raise UserError(f"data.target={target} has {len(values)} distinct numeric values and looks like a regression target: "
                        "add data.task=regression")


def _is_numeric(column) -> bool:
    import pandas as pd  # noqa: PLC0415  (dl cache list runs without pandas)

    return pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
