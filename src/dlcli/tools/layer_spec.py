"""Parse layer specs such as `conv(10,k=5,s=1,p=2)`, `maxpool(3,s=2)`, `k=3x1`, `flatten`.

Pure Python (no torch): `dl conv-shape` with a layer chain answers instantly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from dlcli.errors import UserError

_SPEC = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$")
_PAIR = re.compile(r"^(\d+)\s*x\s*(\d+)$")


@dataclass
class LayerSpec:
    text: str
    kind: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)


def parse_value(text: str, spec: str):
    """An int, a float, an HxW pair, true/false, or a word such as `same`."""
    value = text.strip()
    if not value:
        raise UserError(f"layer '{spec}' has an empty argument")
    pair = _PAIR.match(value)
    if pair:
        return (int(pair.group(1)), int(pair.group(2)))
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        pass
    if re.fullmatch(r"[A-Za-z_]+", value):
        return lowered
    raise UserError(f"layer '{spec}': cannot read argument '{value}' (numbers, HxW pairs, true/false or same/valid)")


def parse_layer(spec: str) -> LayerSpec:
    match = _SPEC.match(spec)
    if not match:
        raise UserError(f"cannot read layer '{spec}': write it as name(arg, key=value, ...), e.g. conv(16,k=3,p=1)")
    kind, inner = match.group(1).lower(), match.group(2)
    layer = LayerSpec(text=spec.strip(), kind=kind)
    if inner is None or not inner.strip():
        return layer
    for part in inner.split(","):
        if "=" in part:
            key, _, value = part.partition("=")
            key = key.strip().lower()
            if not key:
                raise UserError(f"layer '{spec}': '{part.strip()}' has no name before '='")
            if key in layer.kwargs:
                raise UserError(f"layer '{spec}': {key} is given twice")
            layer.kwargs[key] = parse_value(value, spec)
        else:
            if layer.kwargs:
                raise UserError(f"layer '{spec}': positional argument '{part.strip()}' after a named one")
            layer.args.append(parse_value(part, spec))
    return layer


MAX_INPUT_VALUES = 2**26  # values per sample: 3x4096x4096 fits


def parse_shape(text: str) -> tuple[int, ...]:
    """`3x32x32` (C x H x W) or `784` (flat features)."""
    parts = text.lower().replace(" ", "").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"--input {text} is not a shape: write CxHxW such as 3x32x32, or a feature count such as 784") from None
    if len(shape) not in (1, 3) or any(s < 1 for s in shape):
        raise UserError(f"--input {text} is not a shape: write CxHxW such as 3x32x32, or a feature count such as 784")
    return shape


def check_traceable(shape: tuple[int, ...] | None, text: str | None) -> None:
    """A shape a configured model is traced with (param-count, conv-shape model=...): bounded, so
    the trace cannot ask for more memory than any model input needs (a layer chain is arithmetic
    and takes any size)."""
    if shape is not None and math.prod(shape) > MAX_INPUT_VALUES:
        raise UserError(f"--input {text} has {math.prod(shape):,} values per sample: a model is traced with at most "
                        f"{MAX_INPUT_VALUES:,} (e.g. 3x4096x4096)")


def shape_warnings(shape: tuple[int, ...], text: str) -> list[str]:
    """What looks wrong in a parsed --input shape, as sentences for `warning: ...` lines (no error:
    the shape may be meant as written).

    dl reads three numbers as C x H x W. `32x32x3` (the H x W x C order of NumPy, PIL and
    TensorFlow) would silently become 32 channels of 32x3 images. The rule: the last number is 1
    or 3 (grey or RGB) while the first two are both at least 8 and more than 4 times it, i.e. two
    image-sized dimensions followed by a channel count. A genuine CxHxW feature map such as 512x3x3
    or 64x1x1 has a small middle number and stays silent.
    """
    if len(shape) != 3:
        return []
    first, middle, last = shape
    if last in (1, 3) and min(first, middle) >= 8 and min(first, middle) > 4 * last:
        return [f"--input {text.strip()} looks like HxWxC; dl reads CxHxW: did you mean --input {last}x{first}x{middle}?"]
    return []
