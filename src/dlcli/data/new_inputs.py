"""New inputs for a trained run: read a CSV, an image file, a folder of images or a .npy array and
turn it into model inputs with the preprocessing the run saved (preprocessing.json), unchanged.

Every check happens before any output exists: a missing column, text in a numeric column, an image
of the wrong size or an empty folder is one line naming the problem (dlcli.errors.UserError).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from dlcli.data.image_files import IMAGE_SUFFIXES
from dlcli.data.preprocess import encoding_from_json
from dlcli.data.split import listed
from dlcli.data.tables import check_numbers
from dlcli.errors import UserError, first_line

IMAGE_BATCH = 256  # image files decoded (and resized, one by one) per batch

@dataclass
class NewInputs:
    rows: int
    batches: Callable[[int], Iterator]  # batch size -> float32 tensors in the model's stored input shape
    ids: tuple[str, list] | None = None  # (column name, one value per row)
    notes: list[str] = field(default_factory=list)


def read_inputs(record: dict, path: str | Path, id_column: str | None = None) -> NewInputs:
    source = Path(str(path)).expanduser()
    if not source.exists():
        raise UserError(f"{path}: no such file or folder")
    kind = record["kind"]
    if kind == "images":
        if id_column:
            raise UserError("--id names a CSV column; predictions for images are listed by file name")
        return _images(record, source)
    if source.is_dir():
        raise UserError(f"{path} is a folder, but the run was trained on a table: give a CSV file"
                        + (" or a .npy array" if kind == "array" else ""))
    if source.suffix.lower() == ".npy":
        if kind == "table":
            raise UserError(f"{path} is a .npy array, but the run was trained on a table with named columns: give a CSV file")
        if id_column:
            raise UserError("--id names a CSV column, and a .npy array has none")
        return _tensor_rows(record, _array_rows(record, _load_npy(source), source.name))
    table = _read_csv(source, text_columns=record["features"].get("categorical", []))
    if kind == "table":
        features, ids, notes = _table_rows(record, table, source.name, id_column)
    else:
        features, ids, notes = _array_csv_rows(record, table, source.name, id_column)
    inputs = _tensor_rows(record, features)
    inputs.ids, inputs.notes = ids, notes
    return inputs


# -- tables ---------------------------------------------------------------------------------------
def _read_csv(path: Path, text_columns: list[str] = ()):
    """The table, with the run's text columns read as text: a column of codes ("1", "2", "x") whose
    new rows happen to hold only numbers (and a blank) must not turn into 1.0, 2.0."""
    from dlcli.data.tables import read_csv

    table = read_csv(path, str(path), text_columns)
    if len(table) == 0:
        raise UserError(f"{path} has a header but no rows: nothing to predict")
    return table


def _id_values(table, name: str, id_column: str | None, candidates: list[str]):
    if id_column is not None:
        if id_column not in table.columns:
            raise UserError(f"--id {id_column} is not a column of {name}: columns are {listed(table.columns, 12)}")
        return id_column, table[id_column].tolist()
    for column in candidates:  # a column the run left out of its features, such as Id
        if column in table.columns:
            return column, table[column].tolist()
    return None


def _table_rows(record: dict, table, name: str, id_column: str | None):
    import pandas as pd

    encoding = encoding_from_json(record["features"])
    missing = [c for c in encoding.columns if c not in table.columns]
    if missing:
        raise UserError(f"{name} lacks {len(missing)} column(s) the run was trained on: {listed(missing, 8)} "
                        f"(it needs {listed(encoding.columns, 12)})")
    table = table.copy()
    for column in encoding.numeric:
        values = table[column]
        if not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            numbers = pd.to_numeric(values, errors="coerce")
            bad = values.notna() & numbers.isna()
            if bad.any():
                row = int(np.argmax(bad.to_numpy())) + 2  # the file's line: 1-based, after the header
                raise UserError(f"column '{column}' of {name} holds {values[bad].iloc[0]!r} (line {row}), "
                                "and the run learned it as a number: fix the value or leave the cell empty")
            table[column] = numbers
        check_numbers(table[column].to_numpy(dtype=np.float64, na_value=np.nan), column, name, "fix it or leave the cell empty")
    features, unseen = encoding.transform(table)
    notes = [f"{count} value(s) of '{column}' not seen in training (new categories, or blanks where training had none): "
             "encoded as a missing value" for column, count in unseen.items()]
    ids = _id_values(table, name, id_column, record.get("id_columns", []))
    target = record["target"]["name"]
    ignored = [c for c in table.columns if c not in encoding.columns and c != target and (ids is None or c != ids[0])]
    if ignored:
        notes.append(f"columns the run was not trained on are ignored: {listed(ignored)}")
    return features, ids, notes


def _array_csv_rows(record: dict, table, name: str, id_column: str | None):
    """A CSV for a run trained on an unnamed array (scikit-learn's sets): columns x0..xN-1 if it
    has them, else every numeric column but the id and the target, in order."""
    encoding = encoding_from_json(record["features"])
    ids = _id_values(table, name, id_column, record.get("id_columns", []))
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
    import pandas as pd

    def convert(column):
        numbers = pd.to_numeric(column, errors="coerce")
        if numbers.isna().any() or np.isinf(numbers.to_numpy(dtype=np.float64)).any():
            raise UserError(f"column '{column.name}' of {name} has an empty, text or infinite cell: the run needs a number in every cell")
        return numbers

    return convert


def _load_npy(path: Path) -> np.ndarray:
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


def _tensor_rows(record: dict, features: np.ndarray) -> NewInputs:
    """Encoded rows as tensors of the shape the run's batches had (digits rows become 1x8x8)."""
    import torch

    shape = tuple(record.get("stored_shape") or record["input_shape"])
    x = torch.as_tensor(features, dtype=torch.float32).reshape(-1, *shape)

    def batches(size: int):
        for start in range(0, len(x), size):
            yield x[start : start + size]

    return NewInputs(len(x), batches)


# -- images ---------------------------------------------------------------------------------------
def _images(record: dict, source: Path) -> NewInputs:
    spec = record["images"]
    channels, size = spec["channels"], tuple(record["input_shape"][1:])
    if source.suffix.lower() == ".npy":
        return _image_array(record, _load_npy(source), source.name)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}): nothing to predict")
        names = [str(p.relative_to(source)) for p in files]
    elif source.suffix.lower() in IMAGE_SUFFIXES:
        files, names = [source], [source.name]
    else:
        raise UserError(f"{source} is not an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a folder of images or a .npy "
                        "array: the run was trained on images")
    _check_sizes(files, size, spec["resize"])
    mode = "L" if channels == 1 else "RGB"

    def batches(batch: int):
        import torch
        from torchvision.transforms import v2

        resize = v2.Resize(list(size), antialias=True) if spec["resize"] else None
        batch = min(batch, IMAGE_BATCH)  # decoded files can be large: hold few of them at once
        for start in range(0, len(files), batch):
            images = []
            for path in files[start : start + batch]:
                image = _decode(path, mode)
                images.append(resize(image) if resize is not None and tuple(image.shape[1:]) != size else image)
            yield _model_pixels(torch.stack(images), spec)

    return NewInputs(len(files), batches, ids=("file", names))


def _check_sizes(files: list[Path], size: tuple[int, int], resize) -> None:
    from dlcli.data.image_files import look

    for path in files:  # headers and structure only: cheap even for many files
        (width, height), _ = look(path)
        if not resize and (height, width) != size:
            raise UserError(f"{path} is {width}x{height} pixels, and the run's model takes {size[1]}x{size[0]} images "
                            "(it was trained without data.resize): resize the images, or train with data.resize=N")


def _decode(path: Path, mode: str):
    from dlcli.data.image_files import decode

    return decode(path, mode)


def _image_array(record: dict, array: np.ndarray, name: str) -> NewInputs:
    """N x H x W (grey), N x C x H x W or N x H x W x C; uint8 pixels 0..255 or floats in [0, 1]."""
    import torch

    spec = record["images"]
    channels, size = spec["channels"], tuple(record["input_shape"][1:])
    if array.ndim == 3 and channels == 1:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[1] != channels and array.shape[3] == channels:
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4 or array.shape[1] != channels:
        raise UserError(f"{name} has shape {'x'.join(map(str, array.shape))}: the run needs N images of {channels} "
                        f"channel(s) (N x {channels} x H x W, N x H x W x {channels}" + (", or N x H x W)" if channels == 1 else ")"))
    if not spec["resize"] and tuple(array.shape[2:]) != size:
        raise UserError(f"{name} holds {array.shape[3]}x{array.shape[2]} images, and the run's model takes {size[1]}x{size[0]} "
                        "(it was trained without data.resize): resize them, or train with data.resize=N")
    if array.dtype.kind in "iub" and array.dtype != np.uint8:
        raise UserError(f"{name} holds {array.dtype} values: give uint8 pixels (0..255) or floats in [0, 1]")
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise UserError(f"{name} holds floating-point values outside [0, 1]: give uint8 pixels (0..255) or floats in [0, 1]")
    images = torch.from_numpy(np.ascontiguousarray(array))

    def batches(batch: int):
        from torchvision.transforms.v2 import functional as F

        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            chunk = chunk.float().div(255.0) if chunk.dtype == torch.uint8 else chunk
            if tuple(chunk.shape[2:]) != size:
                chunk = F.resize(chunk, list(size), antialias=True)
            yield _normalized(chunk, spec)

    return NewInputs(len(images), batches)


def _model_pixels(images, spec: dict):
    """uint8 N x C x H x W at the model's size -> what the model saw in training."""
    return _normalized(images.float().div(255.0), spec)


def _normalized(x, spec: dict):
    from torchvision.transforms.v2 import functional as F

    norm = spec.get("normalize")
    return F.normalize(x, list(norm["mean"]), list(norm["std"])) if norm else x
