"""ResNet-18/34 from basic residual blocks, and DenseNet from dense blocks and transitions."""

from __future__ import annotations

import torch
from torch import nn

from dlcli.errors import UserError
from dlcli.models.layers import flat_features, image_input
from dlcli.config.constraints import BOOLEAN, Interval, ListOf, Options, constrained
from dlcli.models.registry import register

RESNET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class Residual(nn.Module):
    """Two 3x3 conv + batch norm layers and a skip connection; a 1x1 conv projects the skip
    when the block changes the channel count or the resolution."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.project = nn.Conv2d(in_channels, channels, 1, stride=stride) if stride != 1 or in_channels != channels else None

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (self.project(x) if self.project is not None else x))


@register
@constrained(depth=Options(tuple(RESNET_BLOCKS)), small_input=BOOLEAN, width=Interval(1, 4096, integer=True))
class ResNet(nn.Module):
    """ResNet-18 or -34. `small_input` swaps the 7x7/2 stem and its max-pool for one 3x3/1 conv,
    which keeps 28-32 px images (MNIST, CIFAR) from shrinking to 1x1 before the last stage."""

    grows_with = ("width",)  # the settings that make it larger (a diagnosis of underfitting suggests them)

    def __init__(self, input_shape, num_outputs: int, depth: int = 18, small_input: bool = False, width: int = 64):
        super().__init__()
        channels, _, _ = image_input(input_shape, "resnet")
        if depth not in RESNET_BLOCKS:
            raise UserError(f"model.depth={depth} is not available: choose one of {', '.join(map(str, RESNET_BLOCKS))}")
        if small_input:
            stem = [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        else:
            stem = [nn.Conv2d(channels, width, 7, stride=2, padding=3), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1)]
        stages, in_channels = [], width
        for index, count in enumerate(RESNET_BLOCKS[depth]):
            out_channels = width * 2**index
            blocks = [Residual(in_channels if i == 0 else out_channels, out_channels, 2 if i == 0 and index > 0 else 1) for i in range(count)]
            stages.append(nn.Sequential(*blocks))
            in_channels = out_channels
        self.features = nn.Sequential(*stem, *stages, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
        self.classifier = nn.Linear(flat_features(self.features, input_shape, "resnet"), num_outputs)

    def forward(self, x):
        return self.classifier(self.features(x))


def _bn_relu_conv(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(), nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2))


class DenseBlock(nn.Module):
    """Each conv sees the concatenation of the block input and every earlier conv's output."""

    def __init__(self, in_channels: int, num_convs: int, growth_rate: int):
        super().__init__()
        self.convs = nn.ModuleList(_bn_relu_conv(in_channels + i * growth_rate, growth_rate, 3) for i in range(num_convs))

    def forward(self, x):
        for conv in self.convs:
            x = torch.cat([x, conv(x)], dim=1)
        return x


@register
@constrained(growth_rate=Interval(1, 4096, integer=True), block_sizes=ListOf(Interval(1, 256, integer=True), 1),
             init_channels=Interval(1, 4096, integer=True))
class DenseNet(nn.Module):
    """Stem, dense blocks joined by transitions (1x1 conv halving channels, 2x2 average pool)."""

    grows_with = ("growth_rate",)  # the settings that make it larger (a diagnosis of underfitting suggests them)

    def __init__(self, input_shape, num_outputs: int, growth_rate: int = 32, block_sizes=(4, 4, 4, 4), init_channels: int = 64):
        super().__init__()
        channels, _, _ = image_input(input_shape, "densenet")
        layers = [nn.Conv2d(channels, init_channels, 7, stride=2, padding=3), nn.BatchNorm2d(init_channels), nn.ReLU(),
                  nn.MaxPool2d(3, stride=2, padding=1)]
        width = init_channels
        for index, num_convs in enumerate(block_sizes):
            layers.append(DenseBlock(width, int(num_convs), growth_rate))
            width += int(num_convs) * growth_rate
            if index < len(block_sizes) - 1:
                layers += [_bn_relu_conv(width, width // 2, 1), nn.AvgPool2d(2, stride=2)]
                width //= 2
        layers += [nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(flat_features(self.features, input_shape, "densenet"), num_outputs)

    def forward(self, x):
        return self.classifier(self.features(x))
