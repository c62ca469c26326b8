"""New inputs for a trained run: read a CSV, an image file, a folder of images or a .npy array and
turn it into model inputs with the preprocessing the run saved (preprocessing.json), unchanged.

How depends on the run's modality (dlcli.data.modality: each reads its own inputs); the readers
they share are here. Every check happens before any output exists: a missing column, text in a
numeric column, an image of the wrong size or an empty folder is one line naming the problem
(dlcli.errors.UserError).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterator

import numpy as np

from dlcli.data.modality import modality_named
from dlcli.data.split import listed
from dlcli.data.tables import read_csv
from dlcli.errors import UserError, first_line


@dataclass
class NewInputs:
    rows: int
    batches: Callable[[int], Iterator]  # batch size -> float32 tensors in the model's stored input shape
    ids: tuple[str, list] | None = None  # (column name, one value per row)
    notes: list[str] = field(default_factory=list)
    # a series' inputs answer as a forecast of the steps after it, not one row per input:
    # (the model as a function of a batch, the steps asked or None for the trained horizon) -> a table
    forecast: Callable[[Callable, int | None], object] | None = None


def read_inputs(record: dict, path: str | Path, id_column: str | None = None) -> NewInputs:
    source = Path(str(path)).expanduser()
    if not source.exists():
        raise UserError(f"{path}: no such file or folder")
    return modality_named(record["kind"]).read_inputs(record, source, str(path), id_column)


# -- readers the modalities share ----------------------------------------------------------------
def read_table(path: Path, text_columns: list[str] = ()):
    """The CSV's rows, with the run's text columns read as text: a column of codes ("1", "2", "x") whose
    new rows happen to hold only numbers (and a blank) must not turn into 1.0, 2.0."""
    table = read_csv(path, str(path), text_columns)
    if len(table) == 0:
        raise UserError(f"{path} has a header but no rows: nothing to predict")
    return table


def id_values(table, name: str, id_column: str | None, candidates: list[str]):
    if id_column is not None:
        if id_column not in table.columns:
            raise UserError(f"--id {id_column} is not a column of {name}: columns are {listed(table.columns, 12)}")
        return id_column, table[id_column].tolist()
    for column in candidates:  # a column the run left out of its features, such as Id
        if column in table.columns:
            return column, table[column].tolist()
    return None


def load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)  # never unpickle a file someone sent
    except (ValueError, OSError) as exc:
        raise UserError(f"{path} is not a readable .npy array of numbers: {first_line(exc)}") from None
    if array.dtype.kind not in "biuf":
        raise UserError(f"{path} holds {array.dtype} values: the run needs numbers")
    if array.size == 0:
        raise UserError(f"{path} is empty: nothing to predict")
    if array.ndim == 0:
        raise UserError(f"{path} holds a single number: give rows (an N x features array) or images")
    return array


def tensor_rows(record: dict, features: np.ndarray) -> NewInputs:
    """Encoded rows as tensors of the shape the run's batches had (digits rows become 1x8x8)."""
    import torch  # noqa: PLC0415  (dl cache list runs without torch)

    shape = tuple(record.get("stored_shape") or record["input_shape"])
    x = torch.as_tensor(features, dtype=torch.float32).reshape(-1, *shape)

    def batches(size: int):
        for start in range(0, len(x), size):
            yield x[start : start + size]

    return NewInputs(len(x), batches)
