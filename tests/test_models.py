import pytest
import torch
from torch import nn

from dlcli.config.compose import compose
from dlcli.errors import UserError
from dlcli.models import CifarCNN, LeNet, build_model


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_lenet_is_the_classic_lenet5():
    model = LeNet((1, 28, 28), 10)
    assert count(model) == 61_706
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_cifar_cnn_matches_the_network_written_out():
    written = nn.Sequential(
        nn.Conv2d(3, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 36, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(36 * 6 * 6, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    model = CifarCNN((3, 32, 32), 10)
    assert count(model) == count(written)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_mlp_options_build_the_layers_asked_for():
    cfg = compose(["model.hidden=[32,16]", "model.batch_norm=true", "model.dropout=0.3", "model.activation=tanh"])
    model = build_model(cfg.model, (1, 8, 8), 10)
    kinds = [type(m).__name__ for m in model.net]
    assert kinds == ["Flatten", "Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear"]


@pytest.mark.parametrize("scheme", ["xavier_uniform", "normal", "kaiming"])
def test_init_schemes_reset_weights_and_zero_biases(scheme):
    torch.manual_seed(0)
    model = build_model(compose([f"model.init={scheme}", "model.hidden=[400]"]).model, (64,), 10)
    first = model.net[1]
    assert torch.count_nonzero(first.bias) == 0
    if scheme == "normal":
        assert abs(first.weight.std().item() - 0.01) < 0.001


def test_softmax_and_linreg_are_single_linear_layers():
    assert count(build_model(compose(["model=softmax"]).model, (64,), 10)) == 650
    assert count(build_model(compose(["model=linreg"]).model, (2,), 1)) == 3


@pytest.mark.parametrize(
    "overrides, shape, message",
    [
        (["model=lenet"], (1, 8, 8), "model=lenet cannot take 8x8 images: the height shrinks below the kernel at conv2 (5x5); it needs at least 12x12"),
        (["model=lenet"], (4,), "model=lenet needs image-shaped input"),
        (["model=cifar_cnn"], (3, 8, 8), "it needs at least 12x12"),
        (["+model.widht=3"], (64,), "model.widht is not a setting of dlcli.models.MLP: valid settings are activation, batch_norm, dropout, hidden"),
        (["model.activation=swish"], (64,), "model.activation=swish is not valid: choose one of relu, sigmoid, tanh, leaky_relu"),
        (["model.init=lecun"], (64,), "model.init=lecun is not an init scheme"),
        (["model._target_=nowhere.Net"], (64,), "model._target_=nowhere.Net cannot be imported"),
    ],
)
def test_models_that_cannot_be_built_say_why(overrides, shape, message):
    with pytest.raises(UserError) as info:
        build_model(compose(overrides).model, shape, 10)
    assert message in str(info.value)


def test_a_users_own_module_plugs_in_by_target():
    cfg = compose(["model._target_=torch.nn.Identity", "~model.hidden", "~model.activation", "~model.dropout", "~model.batch_norm"])
    with pytest.raises(UserError, match="returns shape"):
        build_model(cfg.model, (12,), 10)  # builds, but its output does not fit the data
