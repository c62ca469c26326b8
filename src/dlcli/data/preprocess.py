"""Turn a RawData table into float32 arrays, learning every statistic from the train rows only.

What is learned (imputation values, means and standard deviations, one-hot categories, the target's
transform and scaling) is held in small encodings that turn into plain JSON (`to_json`) and back
(`from_json`), so a run saves them in preprocessing.json and `dl predict` applies them unchanged
to new rows. Training and prediction run the same `transform`, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np

from dlcli.data.sources import RawData, _is_numeric
from dlcli.errors import UserError
from dlcli.engine.targets import TARGET_TRANSFORMS, invert_transform

MISSING_CATEGORY = "<missing>"  # one-hot column that marks a missing (or never seen) categorical value


@dataclass
class TargetScaler:
    """Regression targets are learned transformed (log, log1p) and standardized; metrics and
    predictions are reported in the target's own units. `mean` and `std` are one number, or one
    per output (a forecast's steps of several columns, each column in its own units)."""

    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0
    transform_name: str = "none"

    def forward(self, y: np.ndarray) -> np.ndarray:
        """The target as the model learns it."""
        return (_apply(self.transform_name, y) - _values(self.mean)) / _values(self.std)

    def inverse(self, y):
        """Model outputs (numpy or torch; per-output scaling: numpy, N x outputs) back in the target's own units."""
        return invert_transform(self.transform_name, y * _values(self.std) + _values(self.mean))

    def to_json(self) -> dict:
        return {"mean": _plain(self.mean), "std": _plain(self.std), "transform": self.transform_name}

    @classmethod
    def from_json(cls, record: dict) -> TargetScaler:
        return cls(_number_or_tuple(record["mean"]), _number_or_tuple(record["std"]), str(record.get("transform", "none")))


def _values(value):
    return np.asarray(value, dtype=np.float64) if isinstance(value, tuple) else value


def _plain(value):
    return [float(v) for v in value] if isinstance(value, tuple) else value


def _number_or_tuple(value):
    return tuple(float(v) for v in value) if isinstance(value, list) else float(value)


def _apply(name: str, y):
    if name == "log":
        return np.log(y)
    if name == "log1p":
        return np.log1p(y)
    return y


@dataclass
class ArrayEncoding:
    """A numeric array's columns: divided by a known range (pixels), standardized, or as they are."""

    kind: ClassVar[str] = "array"  # in preprocessing.json, beside the fields
    count: int
    divide_by: float | None = None
    center: list[float] | None = None
    scale: list[float] | None = None

    @classmethod
    def fit(cls, features: np.ndarray, train_rows: np.ndarray, standardize: bool, feature_scale: float | None) -> ArrayEncoding:
        if feature_scale:
            return cls(features.shape[1], divide_by=float(feature_scale))
        if not standardize:
            return cls(features.shape[1])
        train = features[train_rows].astype(np.float64)
        center, scale = train.mean(axis=0), _safe_std(train)
        return cls(features.shape[1], center=center.tolist(), scale=scale.tolist())

    def transform(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        if self.divide_by:
            features = features / self.divide_by
        elif self.center is not None:
            features = (features - np.asarray(self.center)) / np.asarray(self.scale)
        return features.astype(np.float32)

    def feature_names(self) -> list[str]:
        return [f"x{i}" for i in range(self.count)]

    def to_json(self) -> dict:
        return {"kind": self.kind, **asdict(self)}


@dataclass
class TableEncoding:
    """A table's columns: numeric ones imputed with the train mean (then standardized), text ones
    one-hot over the categories seen in the train rows (missing is a category of its own)."""

    kind: ClassVar[str] = "table"  # in preprocessing.json, beside the fields
    numeric: list[str]
    fill: list[float]
    center: list[float]
    scale: list[float]
    categorical: list[str]
    categories: list[list[str]] = field(default_factory=list)

    @classmethod
    def fit(cls, table, train_rows: np.ndarray, standardize: bool) -> TableEncoding:
        numeric = [str(c) for c in table.columns if _is_numeric(table[c])]
        categorical = [str(c) for c in table.columns if str(c) not in numeric]
        train = table.iloc[train_rows]
        values = train[numeric].to_numpy(dtype=np.float64, na_value=np.nan) if numeric else np.zeros((len(train), 0))
        seen = ~np.isnan(values)
        counts = seen.sum(axis=0)
        # a column with no value in any train row is filled with 0 (it carries nothing)
        fill = np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), 0.0)
        imputed = np.where(seen, values, fill)
        center = imputed.mean(axis=0) if standardize and len(imputed) else np.zeros(len(numeric))
        scale = _safe_std(imputed) if standardize and len(imputed) else np.ones(len(numeric))
        categories = [sorted(set(_as_text(train[c]))) for c in categorical]
        return cls(numeric, fill.tolist(), center.tolist(), scale.tolist(), categorical, categories)

    def transform(self, table) -> tuple[np.ndarray, dict[str, int]]:
        """Encoded rows, and per text column the number of values never seen in training (encoded
        as missing). `table` must hold every column; others are ignored."""
        parts, unseen = [], {}
        if self.numeric:
            values = table[self.numeric].to_numpy(dtype=np.float64, na_value=np.nan)
            values = np.where(np.isnan(values), np.asarray(self.fill), values)
            parts.append((values - np.asarray(self.center)) / np.asarray(self.scale))
        for column, known in zip(self.categorical, self.categories):
            text = _as_text(table[column])
            position = {category: i for i, category in enumerate(known)}
            index = np.fromiter((position.get(v, -1) for v in text), dtype=np.int64, count=len(text))
            if (index < 0).any():
                unseen[column] = int((index < 0).sum())
                index = np.where(index < 0, position.get(MISSING_CATEGORY, -1), index)
            onehot = np.zeros((len(text), len(known)))
            rows = np.nonzero(index >= 0)[0]
            onehot[rows, index[rows]] = 1.0
            parts.append(onehot)
        encoded = np.concatenate(parts, axis=1) if parts else np.zeros((len(table), 0))
        return encoded.astype(np.float32), unseen

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def feature_names(self) -> list[str]:
        return [*self.numeric, *(f"{c}_{v}" for c, known in zip(self.categorical, self.categories) for v in known)]

    def to_json(self) -> dict:
        return {"kind": self.kind, **asdict(self)}


def encoding_from_json(record: dict) -> ArrayEncoding | TableEncoding:
    """The encoding a record's `features` hold (checked first: dlcli.data.record)."""
    fields = {k: v for k, v in record.items() if k != "kind"}
    return ENCODINGS[record["kind"]](**fields)


ENCODINGS = {encoding.kind: encoding for encoding in (ArrayEncoding, TableEncoding)}


def _safe_std(values: np.ndarray) -> np.ndarray:
    """Population std per column; a constant column keeps scale 1 (as scikit-learn's StandardScaler)."""
    std = values.std(axis=0)
    return np.where(std < 10 * np.finfo(np.float64).eps * np.maximum(np.abs(values.mean(axis=0)), 1.0), 1.0, std)


def _as_text(column) -> list[str]:
    """Text cells as str, NA as MISSING_CATEGORY (pandas 3 stores text with its own NA)."""
    values = column.astype(object)
    return values.where(values.notna(), MISSING_CATEGORY).map(str).tolist()


def encode_targets(raw: RawData, train_rows: np.ndarray, standardize_target: bool, transform: str = "none"):
    """Class indices (with their names) for classification; floats (and a scaler) for regression."""
    if raw.task == "classification":
        if transform != "none":
            raise UserError(f"data.target_transform={transform} applies to regression targets only: drop it")
        from sklearn.preprocessing import LabelEncoder  # noqa: PLC0415  (dl cache list runs without sklearn)

        encoder = LabelEncoder().fit(raw.targets)
        return encoder.transform(raw.targets).astype(np.int64), [str(c) for c in encoder.classes_], None
    if transform not in TARGET_TRANSFORMS:
        raise UserError(f"data.target_transform={transform} is not valid: choose one of {', '.join(TARGET_TRANSFORMS)}")
    targets = np.asarray(raw.targets, dtype=np.float64)
    lowest = float(targets.min()) if len(targets) else 0.0
    if transform == "log" and lowest <= 0:
        raise UserError(f"data.target_transform=log needs targets above 0, and one is {lowest:g}: use log1p (above -1) or none")
    if transform == "log1p" and lowest <= -1:
        raise UserError(f"data.target_transform=log1p needs targets above -1, and one is {lowest:g}: use none")
    learned = _apply(transform, targets)
    scaler = TargetScaler(transform_name=transform)
    if standardize_target:
        train = learned[train_rows]
        scaler = TargetScaler(mean=float(train.mean()), std=float(train.std()) or 1.0, transform_name=transform)
    return scaler.forward(targets).astype(np.float32), None, scaler
