"""Small building blocks shared by the model definitions."""

from __future__ import annotations

from torch import nn

from dlcli.errors import UserError

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}
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
            raise UserError(
                f"model={model} cannot take {height}x{width} images: the {axis} shrinks below the "
                f"kernel at {failed_at}; it needs at least {smallest}x{smallest} input"
            )
    return walk(height)[0], walk(width)[0]
