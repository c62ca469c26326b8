"""Models for flat feature vectors: linear regression, softmax regression, the MLP."""

from __future__ import annotations

import math

from torch import nn

from dlcli.errors import UserError
from dlcli.models import layers as layers_lib
from dlcli.models.layers import ACTIVATIONS
from dlcli.config.constraints import BOOLEAN, RATE, Interval, ListOf, Options, constrained, one_of
from dlcli.models.registry import register


def _flat_size(input_shape: tuple[int, ...]) -> int:
    return math.prod(input_shape)


@register
class LinearRegression(nn.Module):
    """y = Xw + b."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(_flat_size(input_shape), num_outputs))

    def forward(self, x):
        return self.net(x)


@register
class SoftmaxRegression(LinearRegression):
    """Logits = Xw + b; the softmax is inside the cross-entropy loss, never a layer here."""


def _dropout_rates(dropout, layers: int) -> list[float]:
    """One rate for every hidden layer, or a list with one per layer (the notes' two-dropout MLP)."""
    rates = list(dropout) if isinstance(dropout, (list, tuple)) else [dropout] * layers
    if isinstance(dropout, (list, tuple)) and len(rates) != layers:
        raise UserError(f"model.dropout={list(rates)} gives {len(rates)} rate(s) for {layers} hidden layer(s): "
                        f"give one rate, or {layers} (one per layer of model.hidden)")
    return [float(r) for r in rates]


@register
@constrained(hidden=ListOf(Interval(1, 1_000_000, integer=True)), activation=Options(tuple(ACTIVATIONS)), dropout=one_of(RATE, ListOf(RATE, 1)),
             batch_norm=BOOLEAN)
class MLP(nn.Module):
    """Flatten, then per hidden size: linear, optional batch norm, activation, optional dropout."""

    grows_with = ("hidden",)  # the settings that make it larger (a diagnosis of underfitting suggests them)

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        hidden: list[int] = (256,),
        activation: str = "relu",
        dropout: float | list[float] = 0.0,
        batch_norm: bool = False,
    ):
        super().__init__()
        rates = _dropout_rates(dropout, len(hidden))
        layers: list[nn.Module] = [nn.Flatten()]
        width = _flat_size(input_shape)
        for size, rate in zip(hidden, rates):
            layers.append(nn.Linear(width, int(size)))
            if batch_norm:
                layers.append(nn.BatchNorm1d(int(size)))
            layers.append(layers_lib.activation(activation))
            if rate > 0:
                layers.append(nn.Dropout(rate))
            width = int(size)
        layers.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)

