"""GoogLeNet: Inception blocks, each four parallel branches concatenated along channels."""

from __future__ import annotations

import torch
from torch import nn

from dlcli.models.layers import flat_features, image_input
from dlcli.models.registry import register


class Inception(nn.Module):
    """Branches: 1x1 conv | 1x1 then 3x3 | 1x1 then 5x5 | 3x3 max-pool then 1x1."""

    def __init__(self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int):
        super().__init__()
        self.branch1 = nn.Sequential(nn.Conv2d(in_channels, c1, 1), nn.ReLU())
        self.branch2 = nn.Sequential(nn.Conv2d(in_channels, c2[0], 1), nn.ReLU(), nn.Conv2d(c2[0], c2[1], 3, padding=1), nn.ReLU())
        self.branch3 = nn.Sequential(nn.Conv2d(in_channels, c3[0], 1), nn.ReLU(), nn.Conv2d(c3[0], c3[1], 5, padding=2), nn.ReLU())
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(in_channels, c4, 1), nn.ReLU())

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


@register
class GoogLeNet(nn.Module):
    """Stem (7x7 conv, 1x1 + 3x3 convs), nine Inception blocks in three stages, global pooling, fc."""

    def __init__(self, input_shape, num_outputs: int):
        super().__init__()
        channels, _, _ = image_input(input_shape, "googlenet")
        pool = lambda: nn.MaxPool2d(3, stride=2, padding=1)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(channels, 64, 7, stride=2, padding=3), nn.ReLU(), pool(),
            nn.Conv2d(64, 64, 1), nn.ReLU(), nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(), pool(),
            Inception(192, 64, (96, 128), (16, 32), 32), Inception(256, 128, (128, 192), (32, 96), 64), pool(),
            Inception(480, 192, (96, 208), (16, 48), 64), Inception(512, 160, (112, 224), (24, 64), 64),
            Inception(512, 128, (128, 256), (24, 64), 64), Inception(512, 112, (144, 288), (32, 64), 64),
            Inception(528, 256, (160, 320), (32, 128), 128), pool(),
            Inception(832, 256, (160, 320), (32, 128), 128), Inception(832, 384, (192, 384), (48, 128), 128),
            nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
        )
        self.classifier = nn.Linear(flat_features(self.features, input_shape, "googlenet"), num_outputs)

    def forward(self, x):
        return self.classifier(self.features(x))
