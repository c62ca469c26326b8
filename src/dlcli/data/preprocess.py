"""Turn a RawData table into float32 arrays, learning every statistic from the train rows only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlcli.data.sources import RawData, _is_numeric

MISSING_CATEGORY = "<missing>"  # one-hot column that marks a missing categorical value


@dataclass
class TargetScaler:
    """Regression targets are learned standardized; metrics are reported in the original units."""

    mean: float = 0.0
    std: float = 1.0

    def transform(self, y: np.ndarray) -> np.ndarray:
        return (y - self.mean) / self.std

    def inverse(self, y):
        return y * self.std + self.mean


def encode_features(raw: RawData, train_rows: np.ndarray, standardize: bool) -> tuple[np.ndarray, list[str]]:
    """Features as float32: numeric columns imputed (and standardized), categorical ones one-hot."""
    if not isinstance(raw.features, np.ndarray):  # a pandas table (pandas is imported only for tables)
        return _encode_table(raw.features, train_rows, standardize)
    features = np.asarray(raw.features, dtype=np.float32)
    names = [f"x{i}" for i in range(features.shape[1])]
    if raw.feature_scale:
        return (features / raw.feature_scale).astype(np.float32), names
    if standardize:
        from sklearn.preprocessing import StandardScaler

        features = StandardScaler().fit(features[train_rows]).transform(features)
    return features.astype(np.float32), names


def _encode_table(table, train_rows: np.ndarray, standardize: bool) -> tuple[np.ndarray, list[str]]:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in table.columns if _is_numeric(table[c])]
    categorical = [c for c in table.columns if c not in numeric]
    table = table.copy()
    for column in numeric:
        table[column] = table[column].astype("float64")
    # pandas 3 stores text as its own string dtype with NA; scikit-learn's encoders want plain
    # Python objects, so every categorical value becomes a str and NA becomes its own category.
    for column in categorical:
        values = table[column].astype(object)
        table[column] = values.where(values.notna(), MISSING_CATEGORY).map(str).astype(object)
    numeric_steps = [SimpleImputer(strategy="mean", keep_empty_features=True)]
    if standardize:
        numeric_steps.append(StandardScaler())
    transformer = ColumnTransformer(
        [
            ("numeric", make_pipeline(*numeric_steps), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ],
        sparse_threshold=0.0,
        verbose_feature_names_out=False,
    )
    transformer.fit(table.iloc[train_rows])
    features = np.asarray(transformer.transform(table), dtype=np.float32)
    return features, [str(n) for n in transformer.get_feature_names_out()]


def encode_targets(raw: RawData, train_rows: np.ndarray, standardize_target: bool):
    """Class indices (with their names) for classification; floats (and a scaler) for regression."""
    if raw.task == "classification":
        from sklearn.preprocessing import LabelEncoder

        encoder = LabelEncoder().fit(raw.targets)
        return encoder.transform(raw.targets).astype(np.int64), [str(c) for c in encoder.classes_], None
    targets = np.asarray(raw.targets, dtype=np.float64)
    scaler = TargetScaler()
    if standardize_target:
        train = targets[train_rows]
        scaler = TargetScaler(mean=float(train.mean()), std=float(train.std()) or 1.0)
    return scaler.transform(targets).astype(np.float32), None, scaler
