"""Weight initialization schemes, applied to every linear and conv layer."""

from __future__ import annotations

from torch import nn

from dlcli.errors import UserError


def _xavier(weight):
    nn.init.xavier_uniform_(weight)


def _normal(weight):
    nn.init.normal_(weight, mean=0.0, std=0.01)


def _kaiming(weight):
    nn.init.kaiming_normal_(weight, nonlinearity="relu")


SCHEMES = {"default": None, "xavier_uniform": _xavier, "normal": _normal, "kaiming": _kaiming}


def initialize(model: nn.Module, scheme: str) -> None:
    """Re-initialize weights with `scheme` (biases to zero); `default` keeps PyTorch's init."""
    if scheme not in SCHEMES:
        raise UserError(f"model.init={scheme} is not an init scheme: choose one of {', '.join(SCHEMES)}")
    init_weight = SCHEMES[scheme]
    if init_weight is None:
        return
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            init_weight(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
