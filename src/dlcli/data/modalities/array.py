"""Plain numeric arrays (scikit-learn's sets, synthetic data): each column divided by a known range
(digits' pixels) or standardized (dlcli.data.preprocess.ArrayEncoding); new rows for `dl predict`
come as a .npy array or a CSV of numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcli.data.modalities.rows import RowsModality
from dlcli.data.modality import register
from dlcli.data.new_inputs import id_values, load_npy, tensor_rows
from dlcli.data.preprocess import ArrayEncoding, encoding_from_json
from dlcli.data.record import number, numbers
from dlcli.errors import UserError


@register
class ArrayModality(RowsModality):
    kind = "array"
    files_taken = "a CSV file or a .npy array"

    def accepts(self, raw) -> bool:
        return super().accepts(raw) and isinstance(raw.features, np.ndarray)

    def encode(self, raw, train_rows: np.ndarray, standardize: bool):
        encoding = ArrayEncoding.fit(np.asarray(raw.features), train_rows, standardize, raw.feature_scale)
        return encoding.transform(raw.features), encoding

    def check_record(self, record: dict, size: int, bad) -> None:
        features = record.get("features")
        if not isinstance(features, dict) or features.get("kind") != "array" or set(features) - {"kind", "count", "divide_by", "center", "scale"}:
            raise bad("features must be an array encoding (kind, count, divide_by, center, scale)")
        if features.get("count") != size:
            raise bad(f"features.count must be {size}, the values of one stored row")
        divide = features.get("divide_by")
        if divide is not None and not (number(divide) and divide > 0):
            raise bad("features.divide_by must be a positive number")
        for key in ("center", "scale"):
            if features.get(key) is not None and not numbers(features[key], size):
                raise bad(f"features.{key} must list {size} numbers")

    def new_rows(self, record: dict, table, name: str, id_column: str | None):
        return _csv_rows(record, table, name, id_column)

    def new_array(self, record: dict, source: Path, given: str, id_column: str | None):
        if id_column:
            raise UserError("--id names a CSV column, and a .npy array has none")
        return tensor_rows(record, _array_rows(record, load_npy(source), source.name))

    def export_takes(self, record: dict, shape: list) -> str:
        return ("float32 features in the shape above, scaled as preprocessing.features says (divide_by, or center/scale); "
                "the scaling is not included")


def _csv_rows(record: dict, table, name: str, id_column: str | None):
    """A CSV for a run trained on an unnamed array (scikit-learn's sets): columns x0..xN-1 if it
    has them, else every numeric column but the id and the target, in order."""
    encoding = encoding_from_json(record["features"])
    ids = id_values(table, name, id_column, record.get("id_columns", []))
    named = encoding.feature_names()
    if all(c in table.columns for c in named):
        columns = named
    else:
        skip = {record["target"]["name"], *(ids[:1] if ids else [])}
        columns = [c for c in table.columns if c not in skip]
    if len(columns) != encoding.count:
        raise UserError(f"{name} has {len(columns)} feature columns, and the run was trained on {encoding.count} "
                        f"(name them {named[0]}..{named[-1]}, or give exactly {encoding.count} numeric columns)")
    values = table[columns].apply(_numbers_or_error(name))
    return encoding.transform(values.to_numpy(dtype=np.float64)), ids, []


def _numbers_or_error(name: str):
    import pandas as pd  # noqa: PLC0415  (dl cache list runs without pandas)

    def convert(column):
        numbers = pd.to_numeric(column, errors="coerce")
        if numbers.isna().any() or np.isinf(numbers.to_numpy(dtype=np.float64)).any():
            raise UserError(f"column '{column.name}' of {name} has an empty, text or infinite cell: the run needs a number in every cell")
        return numbers

    return convert


def _array_rows(record: dict, array: np.ndarray, name: str) -> np.ndarray:
    encoding = encoding_from_json(record["features"])
    if array.ndim == 1 and array.size == encoding.count:
        array = array[None, :]
    shape = tuple(record.get("stored_shape") or record["input_shape"])
    flat = shape == (encoding.count,)  # a table's rows; image-like rows (digits) may also come as N x 1 x 8 x 8
    if array.ndim < 2 or int(np.prod(array.shape[1:])) != encoding.count or (flat and array.ndim != 2):
        other = "" if flat else f", or N x {'x'.join(map(str, shape))}"
        raise UserError(f"{name} has shape {'x'.join(map(str, array.shape))}: the run needs rows of {encoding.count} "
                        f"values (N x {encoding.count}{other})")
    array = array.reshape(len(array), -1).astype(np.float64)
    if not np.isfinite(array).all():
        raise UserError(f"{name} holds NaN or infinite values: the run needs a number in every cell")
    return encoding.transform(array)
