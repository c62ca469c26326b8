"""A run's preprocessing.json: written from the prepared data, and read back checked to be what dl
writes before anything uses it.

Every record has the same envelope (format, kind, task, data, input_shape, stored_shape, id_columns,
target); its modality (dlcli.data.modality, named by `kind`) adds and checks its own fields. The
file may come from someone else, and `dl predict`, `dl export` and `dl inspect` build from it
(one name per feature, one column per category, a normalization per channel), so a count of
10**12 or a list where a number belongs must be a one-line error, not a traceback or an
out-of-memory kill.
"""

from __future__ import annotations

import math
from pathlib import Path

from dlcli.data.modality import MODALITIES, modality_named
from dlcli.errors import UserError

PREPROCESSING_FILE = "preprocessing.json"  # in every run: what it learned from its train rows
PREPROCESSING_FORMAT = 1  # of preprocessing.json; raise it when a reader could misread a new record
MAX_FEATURES = 100_000_000  # far above any real input (a 224x224 RGB image is 150,528)
TASKS = ("classification", "regression", "language_model")
TRANSFORMS = ("none", "log", "log1p")


def data_record(data) -> dict:
    """What the run learned from its train rows, as plain JSON (the run's preprocessing.json):
    everything `dl predict` needs to turn new inputs into model inputs and outputs into answers.
    `data` is prepared data of any modality (dlcli.data.PreparedData, ImageData, ...)."""
    scaler = data.target_scaler
    return {
        "format": PREPROCESSING_FORMAT,
        "kind": data.kind,
        "task": data.task,
        "data": data.name,
        "input_shape": list(data.input_shape),
        "stored_shape": list(data.stored_shape) if data.stored_shape else None,
        **modality_named(data.kind).record(data),
        "id_columns": list(data.id_columns),
        "target": {"name": data.target_name, "classes": None if data.class_names is None else list(data.class_names),
                   "scaling": scaler.to_json() if scaler else None},
    }


def check_preprocessing(record, path: Path, newest_format: int) -> dict:
    """`record` (parsed JSON) if it is a preprocessing record dl could have written, else a
    one-line error naming the first thing wrong."""
    def bad(what: str):
        return UserError(f"{path} is not a preprocessing record dl wrote ({what}): restore it from a copy of the run")

    if not isinstance(record, dict):
        raise bad("not a JSON object")
    version = record.get("format")
    if not whole(version) or version < 1:
        raise bad("no format number")
    if version > newest_format:
        raise UserError(f"{path} was written by a newer dl (format {version}): upgrade dlcli to use this run")
    kind, task = record.get("kind"), record.get("task")
    if kind not in MODALITIES or task not in TASKS:
        raise bad(f"kind must be one of {', '.join(sorted(MODALITIES))} and task one of {', '.join(TASKS)}")
    shape = record.get("input_shape")
    if not shape_list(shape):
        raise bad("input_shape must be a list of 1 to 4 positive whole numbers")
    size = math.prod(shape)
    if size > MAX_FEATURES:
        raise bad(f"input_shape has {size:,} values")
    stored = record.get("stored_shape")  # the rows as kept (digits' 1x8x8), when the model sees them resized
    if stored is not None:
        if not shape_list(stored) or math.prod(stored) > MAX_FEATURES:
            raise bad("stored_shape must be a list of 1 to 4 positive whole numbers")
        size = math.prod(stored)
    if not texts(record.get("id_columns", [])):
        raise bad("id_columns must be a list of column names")
    _check_target(record.get("target"), task, bad)
    modality_named(kind).check_record(record, size, bad)
    return record


def _check_target(target, task: str, bad) -> None:
    if not isinstance(target, dict) or not isinstance(target.get("name"), str):
        raise bad("target must name the target column")
    classes = target.get("classes")
    if task == "classification" and not (texts(classes) and 1 <= len(classes) <= MAX_FEATURES):
        raise bad("a classification target lists its class names")
    if task != "classification" and classes is not None:
        raise bad(f"a {task} target has no class names")
    scaling = target.get("scaling")
    if scaling is not None:
        if not isinstance(scaling, dict) or set(scaling) - {"mean", "std", "transform"}:
            raise bad("target.scaling holds mean, std and transform")
        if not (_scaling_values(scaling.get("mean")) and _scaling_values(scaling.get("std"), positive=True)
                and scaling.get("transform", "none") in TRANSFORMS):
            raise bad("target.scaling needs a finite mean, a positive std (or one of each per output) and a known transform")


def _scaling_values(value, positive: bool = False) -> bool:
    """A target's mean or std: one number, or one per output (a forecast's steps of several columns)."""
    values = value if isinstance(value, list) and 1 <= len(value) <= MAX_FEATURES else [value]
    return all(number(v) and (v > 0 or not positive) for v in values)


def whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def numbers(values, count: int) -> bool:
    return isinstance(values, list) and len(values) == count and all(number(v) for v in values)


def texts(values) -> bool:
    return isinstance(values, list) and all(isinstance(v, str) for v in values)


def shape_list(values) -> bool:
    return isinstance(values, list) and 1 <= len(values) <= 4 and all(whole(v) and v > 0 for v in values)
