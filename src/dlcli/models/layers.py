"""Small building blocks shared by the model definitions."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from dlcli.errors import InputTooSmall, UserError

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU,
               "gelu": nn.GELU, "elu": nn.ELU, "prelu": nn.PReLU, "mish": nn.Mish}  # prelu learns its slope
POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise UserError(f"model.activation={name} is not an activation: choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def pool(kind: str, kernel: int) -> nn.Module:
    if kind not in POOLS:
        raise UserError(f"model.pool={kind} is not a pooling kind: choose one of {', '.join(POOLS)}")
    return POOLS[kind](kernel)


def image_input(input_shape: tuple[int, ...], model: str) -> tuple[int, int, int]:
    """(C, H, W) of image-shaped data, or a one-line error for flat tables."""
    if len(input_shape) != 3:
        raise UserError(
            f"model={model} needs image-shaped input (C x H x W), but the data has "
            f"{input_shape[0] if len(input_shape) == 1 else input_shape} flat features: "
            "use model=mlp or model=softmax for flat tables"
        )
    return tuple(int(s) for s in input_shape)


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """PyTorch's output length for a conv or pool along one axis (floor division)."""
    return (size + 2 * padding - kernel) // stride + 1


def spatial_output(model: str, height: int, width: int, stages: list[tuple[str, int, int, int]]) -> tuple[int, int]:
    """(H, W) after (layer, kernel, stride, padding) stages; a one-line error if the image vanishes.

    The message says where the input vanishes and the smallest input size that would work.
    """

    def walk(size: int) -> tuple[int, str | None]:
        for layer, kernel, stride, padding in stages:
            if size + 2 * padding < kernel:
                return size, layer
            size = conv_output_size(size, kernel, stride, padding)
        return size, None

    for axis_size, axis in ((height, "height"), (width, "width")):
        _, failed_at = walk(axis_size)
        if failed_at is not None:
            smallest = next(s for s in range(1, 4096) if walk(s)[1] is None)
            raise InputTooSmall(
                f"model={model} cannot take {height}x{width} images: the {axis} shrinks below the "
                f"kernel at {failed_at}; it needs at least {smallest}x{smallest}", smallest
            )
    return walk(height)[0], walk(width)[0]


def feature_shape(features: nn.Module, input_shape: tuple[int, ...], model: str) -> tuple[int, ...]:
    """Per-sample output shape of a feature extractor, traced on the meta device (no compute).

    An input that shrinks to nothing is a one-line error naming the smallest square size that
    works, so the user can set data.resize to it.
    """
    meta = copy.deepcopy(features).to("meta").eval()  # the real weights stay untouched

    def trace(shape) -> tuple[int, ...] | None:
        try:
            with torch.no_grad():
                return tuple(meta(torch.zeros(1, *shape, device="meta")).shape[1:])
        except RuntimeError:
            return None

    out = trace(input_shape)
    if out is not None and all(s > 0 for s in out):
        return out
    if len(input_shape) == 2:  # a sequence (channels, length)
        channels, length = input_shape
        needs = next((n for n in (2 ** k for k in range(1, 21)) if n > length and _traces(trace((channels, n)))), None)
        at_least = f"; with these settings it needs sequences of length at least {needs}" if needs else ""
        raise UserError(f"model={model} cannot take sequences of length {length}: they shrink to nothing "
                        f"{_where_it_vanishes(meta, input_shape)}{at_least}")
    if len(input_shape) != 3:
        raise UserError(f"model={model} cannot take input of shape {'x'.join(map(str, input_shape))}")
    channels, height, width = input_shape
    low, high = max(height, width), 1024
    if trace((channels, high, high)) is None:
        raise UserError(f"model={model} cannot take {height}x{width} images, nor any size up to {high}x{high}")
    while low + 1 < high:  # smallest square size that works (the nets shrink monotonically)
        middle = (low + high) // 2
        ok = trace((channels, middle, middle))
        low, high = (low, middle) if ok is not None and all(s > 0 for s in ok) else (middle, high)
    raise InputTooSmall(
        f"model={model} cannot take {height}x{width} images: they shrink to nothing "
        f"{_where_it_vanishes(meta, input_shape)}; it needs at least {high}x{high}", high
    )


def _where_it_vanishes(meta: nn.Module, input_shape: tuple[int, ...]) -> str:
    """'after the 5th pooling layer (features.14)': walk the leaf layers until the image is gone."""
    x = torch.zeros(1, *input_shape, device="meta")
    pools = 0
    for name, layer in meta.named_modules():
        if any(True for _ in layer.children()):
            continue
        is_pool = "Pool" in type(layer).__name__
        pools += is_pool
        try:
            x = layer(x)
        except RuntimeError:
            x = None
        if x is None or (x.dim() >= 3 and min(x.shape[2:]) < 1):
            kind = f"the {_ordinal(pools)} pooling layer" if is_pool else f"a {type(layer).__name__}"
            settings = ", ".join(f"{k}={getattr(layer, k)}" for k in ("kernel_size", "stride", "padding") if hasattr(layer, k))
            return f"at {kind} (layer {name} of the feature extractor: {type(layer).__name__}({settings}))"
    return "inside the network"


def _traces(shape: tuple[int, ...] | None) -> bool:
    return shape is not None and all(s > 0 for s in shape)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def flat_features(features: nn.Module, input_shape: tuple[int, ...], model: str) -> int:
    """How many numbers the feature extractor hands the classifier head, per sample."""
    return math.prod(feature_shape(features, input_shape, model))
