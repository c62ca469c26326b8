"""A run's preprocessing.json read back: checked to be what dl writes before anything uses it.

The file may come from someone else, and `dl predict`, `dl export` and `dl inspect` build from it
(one name per feature, one column per category, a normalization per channel), so a count of
10**12 or a list where a number belongs must be a one-line error, not a traceback or an
out-of-memory kill. The checks mirror what dlcli.data and dlcli.data.image_data write.
"""

from __future__ import annotations

import math
from pathlib import Path

from dlcli.errors import UserError

MAX_FEATURES = 100_000_000  # far above any real input (a 224x224 RGB image is 150,528)
KINDS = ("array", "table", "images")
TASKS = ("classification", "regression")
TRANSFORMS = ("none", "log", "log1p")


def check_preprocessing(record, path: Path, newest_format: int) -> dict:
    """`record` (parsed JSON) if it is a preprocessing record dl could have written, else a
    one-line error naming the first thing wrong."""
    def bad(what: str):
        return UserError(f"{path} is not a preprocessing record dl wrote ({what}): restore it from a copy of the run")

    if not isinstance(record, dict):
        raise bad("not a JSON object")
    version = record.get("format")
    if not _whole(version) or version < 1:
        raise bad("no format number")
    if version > newest_format:
        raise UserError(f"{path} was written by a newer dl (format {version}): upgrade dlcli to use this run")
    kind, task = record.get("kind"), record.get("task")
    if kind not in KINDS or task not in TASKS:
        raise bad(f"kind must be one of {', '.join(KINDS)} and task one of {', '.join(TASKS)}")
    shape = record.get("input_shape")
    if not _shape(shape):
        raise bad("input_shape must be a list of 1 to 4 positive whole numbers")
    size = math.prod(shape)
    if size > MAX_FEATURES:
        raise bad(f"input_shape has {size:,} values")
    stored = record.get("stored_shape")  # the rows as kept (digits' 1x8x8), when the model sees them resized
    if stored is not None:
        if not _shape(stored) or math.prod(stored) > MAX_FEATURES:
            raise bad("stored_shape must be a list of 1 to 4 positive whole numbers")
        size = math.prod(stored)
    if not _texts(record.get("id_columns", [])):
        raise bad("id_columns must be a list of column names")
    _check_target(record.get("target"), task, bad)
    if kind == "array":
        _check_array(record.get("features"), size, bad)
    elif kind == "table":
        _check_table(record.get("features"), size, bad)
    else:
        _check_images(record.get("images"), shape, bad)
    return record


def _check_target(target, task: str, bad) -> None:
    if not isinstance(target, dict) or not isinstance(target.get("name"), str):
        raise bad("target must name the target column")
    classes = target.get("classes")
    if task == "classification" and not (_texts(classes) and 1 <= len(classes) <= MAX_FEATURES):
        raise bad("a classification target lists its class names")
    if task == "regression" and classes is not None:
        raise bad("a regression target has no class names")
    scaling = target.get("scaling")
    if scaling is not None:
        if not isinstance(scaling, dict) or set(scaling) - {"mean", "std", "transform"}:
            raise bad("target.scaling holds mean, std and transform")
        if not (_number(scaling.get("mean")) and _number(scaling.get("std")) and scaling["std"] > 0
                and scaling.get("transform", "none") in TRANSFORMS):
            raise bad("target.scaling needs a finite mean, a positive std and a known transform")


def _check_array(features, size: int, bad) -> None:
    if not isinstance(features, dict) or features.get("kind") != "array" or set(features) - {"kind", "count", "divide_by", "center", "scale"}:
        raise bad("features must be an array encoding (kind, count, divide_by, center, scale)")
    if features.get("count") != size:
        raise bad(f"features.count must be {size}, the values of one stored row")
    divide = features.get("divide_by")
    if divide is not None and not (_number(divide) and divide > 0):
        raise bad("features.divide_by must be a positive number")
    for key in ("center", "scale"):
        if features.get(key) is not None and not _numbers(features[key], size):
            raise bad(f"features.{key} must list {size} numbers")


def _check_table(features, size: int, bad) -> None:
    keys = {"kind", "numeric", "fill", "center", "scale", "categorical", "categories"}
    if not isinstance(features, dict) or features.get("kind") != "table" or set(features) - keys:
        raise bad(f"features must be a table encoding ({', '.join(sorted(keys))})")
    numeric, categorical, categories = features.get("numeric"), features.get("categorical"), features.get("categories", [])
    if not _texts(numeric) or not _texts(categorical) or not isinstance(categories, list):
        raise bad("features.numeric and features.categorical must be lists of column names")
    for key in ("fill", "center", "scale"):
        if not _numbers(features.get(key), len(numeric)):
            raise bad(f"features.{key} must list one number per numeric column")
    if len(categories) != len(categorical) or not all(_texts(c) for c in categories):
        raise bad("features.categories must list the categories of each categorical column")
    if len(numeric) + sum(len(c) for c in categories) != size:
        raise bad("the numeric columns and the categories must make up input_shape")


def _check_images(images, shape: list, bad) -> None:
    if len(shape) != 3:
        raise bad("images have input_shape channels x height x width")
    if not isinstance(images, dict) or images.get("channels") != shape[0]:
        raise bad("images.channels must be input_shape's first number")
    resize = images.get("resize")
    if resize is not None and not (_whole(resize) and resize > 0):
        raise bad("images.resize must be a positive whole number or null")
    normalize = images.get("normalize")
    if normalize is not None:
        if not (isinstance(normalize, dict) and _numbers(normalize.get("mean"), shape[0]) and _numbers(normalize.get("std"), shape[0])
                and all(s > 0 for s in normalize["std"])):
            raise bad("images.normalize needs a mean and a positive std per channel")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(values, count: int) -> bool:
    return isinstance(values, list) and len(values) == count and all(_number(v) for v in values)


def _texts(values) -> bool:
    return isinstance(values, list) and all(isinstance(v, str) for v in values)


def _shape(values) -> bool:
    return isinstance(values, list) and 1 <= len(values) <= 4 and all(_whole(v) and v > 0 for v in values)
