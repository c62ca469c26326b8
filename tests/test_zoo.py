"""Each classic model: builds from config, right output shape for its intended input, parameter
count equal to the same network written out here in torch, and one training step lowers the loss."""

import pytest
import torch
import torchvision
from torch import nn

from dlcli.config.compose import compose
from dlcli.errors import UserError
from dlcli.models import build_model


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def alexnet_written_out(c, classes):
    return nn.Sequential(
        nn.Conv2d(c, 96, 11, 4, 1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(),
        nn.Linear(6400, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, classes))


def vgg_small_written_out(c, classes):  # VGG-11 with every conv's channels divided by 4
    arch, layers = [(1, 16), (1, 32), (2, 64), (2, 128), (2, 128)], []
    for convs, out in arch:
        for _ in range(convs):
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU()]
            c = out
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, classes))


def nin_written_out(c, classes):
    def block(i, o, k, s, p):
        return [nn.Conv2d(i, o, k, s, p), nn.ReLU(), nn.Conv2d(o, o, 1), nn.ReLU(), nn.Conv2d(o, o, 1), nn.ReLU()]
    return nn.Sequential(*block(c, 96, 11, 4, 0), nn.MaxPool2d(3, 2), *block(96, 256, 5, 1, 2), nn.MaxPool2d(3, 2),
                         *block(256, 384, 3, 1, 1), nn.MaxPool2d(3, 2), nn.Dropout(0.5), *block(384, classes, 3, 1, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def googlenet_count(c, classes):
    """Parameters of GoogLeNet counted layer by layer from the paper's table (convs have biases)."""
    def conv(i, o, k):
        return i * o * k * k + o
    def inception(i, c1, c2, c3, c4):
        return conv(i, c1, 1) + conv(i, c2[0], 1) + conv(c2[0], c2[1], 3) + conv(i, c3[0], 1) + conv(c3[0], c3[1], 5) + conv(i, c4, 1)
    total = conv(c, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3)
    for spec in [(192, 64, (96, 128), (16, 32), 32), (256, 128, (128, 192), (32, 96), 64), (480, 192, (96, 208), (16, 48), 64),
                 (512, 160, (112, 224), (24, 64), 64), (512, 128, (128, 256), (24, 64), 64), (512, 112, (144, 288), (32, 64), 64),
                 (528, 256, (160, 320), (32, 128), 128), (832, 256, (160, 320), (32, 128), 128), (832, 384, (192, 384), (48, 128), 128)]:
        total += inception(*spec)
    return total + 1024 * classes + classes


def resnet_count(c, classes, blocks, small):
    def conv(i, o, k):
        return i * o * k * k + o
    bn = lambda ch: 2 * ch  # noqa: E731
    total = (conv(c, 64, 3) if small else conv(c, 64, 7)) + bn(64)
    channels = 64
    for stage, n in enumerate(blocks):
        out = 64 * 2**stage
        for i in range(n):
            first_in = channels if i == 0 else out
            total += conv(first_in, out, 3) + bn(out) + conv(out, out, 3) + bn(out)
            if first_in != out:
                total += conv(first_in, out, 1)
        channels = out
    return total + 512 * classes + classes


def densenet_written_out(c, classes):
    def dense(i, convs, growth):
        layers = []
        for k in range(convs):
            layers.append(nn.Sequential(nn.BatchNorm2d(i + k * growth), nn.ReLU(), nn.Conv2d(i + k * growth, growth, 3, padding=1)))
        return layers
    parts, width = [nn.Conv2d(c, 64, 7, 2, 3), nn.BatchNorm2d(64)], 64
    for index in range(4):
        parts += dense(width, 4, 32)
        width += 4 * 32
        if index < 3:
            parts += [nn.BatchNorm2d(width), nn.Conv2d(width, width // 2, 1)]
            width //= 2
    return nn.Sequential(*parts, nn.BatchNorm2d(width), nn.Linear(width, classes))


CASES = [
    ("alexnet", ["model=alexnet"], (1, 224, 224), lambda: count(alexnet_written_out(1, 10))),
    ("vgg_small", ["model=vgg", "model.ratio=4"], (1, 224, 224), lambda: count(vgg_small_written_out(1, 10))),
    ("nin", ["model=nin"], (1, 224, 224), lambda: count(nin_written_out(1, 10))),
    ("googlenet", ["model=googlenet"], (1, 96, 96), lambda: googlenet_count(1, 10)),
    ("resnet18", ["model=resnet"], (1, 96, 96), lambda: resnet_count(1, 10, (2, 2, 2, 2), False)),
    ("resnet34_small", ["model=resnet", "model.depth=34", "model.small_input=true"], (3, 32, 32), lambda: resnet_count(3, 10, (3, 4, 6, 3), True)),
    ("densenet", ["model=densenet"], (1, 96, 96), lambda: count(densenet_written_out(1, 10))),
    ("torchvision_resnet18", ["model=torchvision", "model.name=resnet18"], (3, 64, 64), lambda: count(torchvision.models.resnet18(num_classes=10))),
]


@pytest.mark.parametrize("name, overrides, shape, expected", CASES, ids=[c[0] for c in CASES])
def test_model_builds_with_the_written_out_parameter_count(name, overrides, shape, expected):
    with torch.device("meta"):  # counting needs no memory
        model = build_model(compose(overrides).model, shape, 10)
    assert count(model) == expected()
    assert model(torch.zeros(2, *shape, device="meta")).shape == (2, 10)


def _one_step_lowers_loss(model, x, y):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()

    def loss():
        torch.manual_seed(1)  # same dropout masks before and after the step
        return nn.functional.cross_entropy(model(x), y)

    before = loss()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss()
    assert after.item() < before.item()


@pytest.mark.parametrize(
    "overrides, shape",
    [
        (["model=alexnet", "model.hidden=256"], (1, 224, 224)),
        (["model=vgg", "model.ratio=16", "model.hidden=128"], (1, 64, 64)),
        (["model=nin"], (1, 224, 224)),
        (["model=googlenet"], (1, 96, 96)),
        (["model=resnet", "model.small_input=true", "model.width=16"], (1, 28, 28)),
        (["model=densenet", "model.growth_rate=8", "model.init_channels=16"], (3, 32, 32)),
        (["model=torchvision", "model.name=resnet18"], (1, 32, 32)),
        (["model=lstm"], (1, 40)),
        (["model=gru", "model.bidirectional=true", "model.layers=2"], (1, 40)),
        (["model=rnn"], (2, 30)),
        (["model=cnn1d"], (1, 40)),
    ],
)
def test_one_training_step_lowers_the_loss(overrides, shape):
    torch.manual_seed(0)
    model = build_model(compose(overrides).model, shape, 10)
    x = torch.randn(4, *shape)
    y = torch.tensor([0, 1, 2, 3])
    assert model(x).shape == (4, 10)
    _one_step_lowers_loss(model, x, y)


def test_recurrent_models_match_torch_counts():
    model = build_model(compose(["model=lstm", "model.hidden=32"]).model, (1, 40), 5)
    reference = nn.ModuleList([nn.LSTM(1, 32, batch_first=True), nn.Linear(32, 5)])
    assert count(model) == count(reference)
    bidirectional = build_model(compose(["model=gru", "model.hidden=16", "model.bidirectional=true"]).model, (3, 20), 4)
    assert count(bidirectional) == count(nn.GRU(3, 16, bidirectional=True)) + 32 * 4 + 4


@pytest.mark.parametrize(
    "overrides, shape, message",
    [
        (["model=vgg"], (1, 28, 28), "model=vgg cannot take 28x28 images: they shrink to nothing at the 5th pooling layer"),
        (["model=vgg"], (1, 28, 28), "it needs at least 32x32"),  # the data.resize hint is added where the data is known
        (["model=alexnet"], (1, 28, 28), "it needs at least"),
        (["model=resnet", "model.depth=50"], (1, 96, 96), "model.depth=50 is not valid: choose one of 18, 34"),
        (["model=lstm"], (1, 8, 8), "needs a sequence (channels x length)"),
        (["model=lstm"], (64,), "data.as_sequence=true"),
        (["model=torchvision", "model.name=resnet_nine"], (3, 32, 32), "model.name=resnet_nine is not a torchvision model"),
        (["model=torchvision", "model.weights=/no/such.pth"], (3, 32, 32), "is neither a file nor a weights name"),
    ],
)
def test_shape_and_setting_mistakes_are_explained(overrides, shape, message):
    with pytest.raises(UserError) as info:
        build_model(compose(overrides).model, shape, 10)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_torchvision_weights_from_a_local_file_and_head_lr(tmp_path, workdir):
    from dlcli.engine.optim import build_optimizer

    source = torchvision.models.resnet18(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    cfg = compose(["model=torchvision", f"model.weights={tmp_path / 'resnet18.pth'}", "model.freeze=[net.conv1,net.layer1]",
                   "optim.head_lr=0.5", "optim.lr=0.01"])
    model = build_model(cfg.model, (3, 32, 32), 7)
    assert torch.equal(model.net.conv1.weight, source.conv1.weight)  # weights loaded
    assert model.net.fc.out_features == 7  # head replaced for the data's classes
    assert not model.net.conv1.weight.requires_grad and model.net.layer2[0].conv1.weight.requires_grad
    optimizer = build_optimizer(cfg.optim, model)
    head = {id(p) for p in model.net.fc.parameters()}
    lrs = {group["lr"] for group in optimizer.param_groups if any(id(p) in head for p in group["params"])}
    assert lrs == {0.5} and {g["lr"] for g in optimizer.param_groups} == {0.01, 0.5}
