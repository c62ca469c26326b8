"""A regression target's transform (data.target_transform): the model learns log(y) or log1p(y),
and every metric and prediction is mapped back to the target's own units. Shared by the data
(which applies it) and the engine's metrics (which undo it); numpy and torch alike, no imports."""

from __future__ import annotations

import numpy

TARGET_TRANSFORMS = ("none", "log", "log1p")


def invert_transform(name: str, y):
    """exp/expm1 for numpy arrays and torch tensors alike (both have the methods)."""
    if name == "log":
        return y.exp() if hasattr(y, "exp") else _numpy().exp(y)
    if name == "log1p":
        return y.expm1() if hasattr(y, "expm1") else _numpy().expm1(y)
    return y


def _numpy():
    return numpy
