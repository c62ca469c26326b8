"""Small convolutional networks: LeNet-5 and a CIFAR-style CNN.

Input size and class count come from the data; the shape of each stage is checked up front so
an input that is too small fails with the size that would work, not a deep PyTorch error.
"""

from __future__ import annotations

from torch import nn

from dlcli.models.layers import activation as make_activation
from dlcli.models.layers import ACTIVATIONS, POOLS, image_input, spatial_output
from dlcli.models.layers import pool as make_pool
from dlcli.config.constraints import Options, constrained
from dlcli.models.registry import register


@register
@constrained(activation=Options(tuple(ACTIVATIONS)), pool=Options(tuple(POOLS)))
class LeNet(nn.Module):
    """LeNet-5: conv 6@5x5 pad 2, pool 2, conv 16@5x5, pool 2, fc 120, fc 84, fc classes."""

    def __init__(self, input_shape, num_outputs: int, activation: str = "sigmoid", pool: str = "avg"):
        super().__init__()
        channels, height, width = image_input(input_shape, "lenet")
        stages = [("conv1 (5x5, pad 2)", 5, 1, 2), ("pool1 (2x2)", 2, 2, 0), ("conv2 (5x5)", 5, 1, 0), ("pool2 (2x2)", 2, 2, 0)]
        out_h, out_w = spatial_output("lenet", height, width, stages)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, kernel_size=5, padding=2), make_activation(activation), make_pool(pool, 2),
            nn.Conv2d(6, 16, kernel_size=5), make_activation(activation), make_pool(pool, 2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * out_h * out_w, 120), make_activation(activation),
            nn.Linear(120, 84), make_activation(activation),
            nn.Linear(84, num_outputs),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register
@constrained(activation=Options(tuple(ACTIVATIONS)))
class CifarCNN(nn.Module):
    """conv 16@5x5, max-pool 2, conv 36@3x3, max-pool 2, fc 128, fc classes."""

    def __init__(self, input_shape, num_outputs: int, activation: str = "relu"):
        super().__init__()
        channels, height, width = image_input(input_shape, "cifar_cnn")
        stages = [("conv1 (5x5)", 5, 1, 0), ("pool1 (2x2)", 2, 2, 0), ("conv2 (3x3)", 3, 1, 0), ("pool2 (2x2)", 2, 2, 0)]
        out_h, out_w = spatial_output("cifar_cnn", height, width, stages)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=5), make_activation(activation), nn.MaxPool2d(2),
            nn.Conv2d(16, 36, kernel_size=3), make_activation(activation), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(36 * out_h * out_w, 128), make_activation(activation), nn.Linear(128, num_outputs)
        )

    def forward(self, x):
        return self.classifier(self.features(x))

