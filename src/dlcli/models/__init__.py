"""Models: each conf/model option names one of these (or any nn.Module) with `_target_`.

A model class takes `input_shape` and `num_outputs` (both from the data) plus its own settings;
`build_model` supplies the first two, applies the init scheme and checks the data fits.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from dlcli.errors import UserError
from dlcli.factory import call_target
from dlcli.models.classic import VGG, AlexNet, NiN
from dlcli.models.cnn import CifarCNN, LeNet
from dlcli.models.inception import GoogLeNet
from dlcli.models.init import initialize
from dlcli.models.pretrained import TorchvisionModel
from dlcli.models.resnet import DenseNet, ResNet
from dlcli.models.sequence import CNN1d, RecurrentClassifier
from dlcli.models.tabular import MLP, LinearRegression, SoftmaxRegression

__all__ = [
    "build_model", "LinearRegression", "SoftmaxRegression", "MLP", "LeNet", "CifarCNN", "AlexNet", "VGG", "NiN",
    "GoogLeNet", "ResNet", "DenseNet", "TorchvisionModel", "RecurrentClassifier", "CNN1d",
]

# Config keys handled here rather than passed to the model's constructor.
BUILD_KEYS = ("init", "freeze")


def build_model(model_cfg: DictConfig, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """Build, initialize, freeze and dry-run the configured model on one zero sample of the data's shape."""
    model = call_target(model_cfg, "model", skip=BUILD_KEYS, expect=nn.Module, expect_name="torch.nn.Module",
                        input_shape=tuple(input_shape), num_outputs=num_outputs)
    scheme = model_cfg.get("init", "default")
    if scheme != "default" and getattr(model, "has_pretrained_weights", False):
        raise UserError(f"model.init={scheme} would overwrite the weights from model.weights: keep model.init=default")
    initialize(model, scheme)
    freeze(model, list(model_cfg.get("freeze") or []))
    _dry_run(model, model_cfg._target_, input_shape, num_outputs)
    return model


def freeze(model: nn.Module, prefixes: list[str]) -> None:
    """Stop gradients for parameters under these module names (e.g. `features`, `net.1`)."""
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        matched = [n for n in names if n == prefix or n.startswith(f"{prefix}.")]
        if not matched:
            modules = sorted({n.rsplit(".", 1)[0] for n in names})
            raise UserError(f"model.freeze lists '{prefix}', which matches no module: modules with parameters are {', '.join(modules)}")
        for name, param in model.named_parameters():
            if name in matched:
                param.requires_grad_(False)


def _dry_run(model: nn.Module, name: str, input_shape: tuple[int, ...], num_outputs: int) -> None:
    was_training = model.training
    model.eval()  # batch norm cannot take a batch of one in training mode
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *input_shape, device=_device_of(model)))
    except RuntimeError as exc:  # torch's shape errors; anything else is a bug and keeps its traceback
        shape = "x".join(map(str, input_shape))
        raise UserError(f"{name} cannot take input of shape {shape}: {str(exc).splitlines()[0]}") from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (1, num_outputs):
        raise UserError(f"{name} returns shape {tuple(out.shape[1:])} per sample; the data needs ({num_outputs},)")


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")
