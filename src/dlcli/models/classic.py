"""AlexNet, VGG and Network in Network, as the classic papers (and textbooks) lay them out.

The classifier head is sized from the data by tracing the feature extractor on the meta device,
so the same config works for any image size that survives the pooling (or says which would).
"""

from __future__ import annotations

from torch import nn

from dlcli.models.layers import flat_features, image_input
from dlcli.config.constraints import RATE, Interval, ListOf, Positions, constrained
from dlcli.models.registry import register


def _head(features_out: int, hidden: int, num_outputs: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features_out, hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, num_outputs),
    )


@register
@constrained(hidden=Interval(1, 1_000_000, integer=True), dropout=RATE)
class AlexNet(nn.Module):
    """5 convs (96@11x11/4, 256@5x5, 384, 384, 256 @3x3) with 3x3/2 max-pools; fc 4096, 4096 (dropout)."""

    grows_with = ("hidden",)  # the settings that make it larger (a diagnosis of underfitting suggests them)

    def __init__(self, input_shape, num_outputs: int, hidden: int = 4096, dropout: float = 0.5):
        super().__init__()
        channels, _, _ = image_input(input_shape, "alexnet")
        self.features = nn.Sequential(
            nn.Conv2d(channels, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2),
        )
        self.classifier = _head(flat_features(self.features, input_shape, "alexnet"), hidden, num_outputs, dropout)

    def forward(self, x):
        return self.classifier(self.features(x))


VGG11 = [[1, 64], [1, 128], [2, 256], [2, 512], [2, 512]]


VGG_BLOCK = Positions((("number of convs", Interval(1, 64, integer=True)), ("channels", Interval(1, 65536, integer=True))))


@register
@constrained(hidden=Interval(1, 1_000_000, integer=True), dropout=RATE, ratio=Interval(1, 64, integer=True),
             conv_arch=ListOf(VGG_BLOCK, 1, 32))
class VGG(nn.Module):
    """VGG blocks of (convs, channels): 3x3 convs with padding 1 and ReLU, then a 2x2 max-pool.

    `ratio` divides every conv's channel count (4 gives the small VGG that trains on a laptop).
    """

    grows_with = ("hidden",)  # the settings that make it larger (a diagnosis of underfitting suggests them)

    def __init__(self, input_shape, num_outputs: int, conv_arch=VGG11, ratio: int = 1, hidden: int = 4096, dropout: float = 0.5):
        super().__init__()
        in_channels, _, _ = image_input(input_shape, "vgg")
        blocks = []
        for block in conv_arch:  # each [number of convs, channels]: VGG_BLOCK
            convs, channels = int(block[0]), max(1, int(block[1]) // ratio)
            for _ in range(convs):
                blocks += [nn.Conv2d(in_channels, channels, kernel_size=3, padding=1), nn.ReLU()]
                in_channels = channels
            blocks.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*blocks)
        self.classifier = _head(flat_features(self.features, input_shape, "vgg"), hidden, num_outputs, dropout)

    def forward(self, x):
        return self.classifier(self.features(x))


def nin_block(in_channels: int, out_channels: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    """A conv then two 1x1 convs: a small per-pixel MLP across channels."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
    )


@register
@constrained(dropout=RATE)
class NiN(nn.Module):
    """Network in Network: NiN blocks and max-pools, the last block emits one map per class,
    and global average pooling replaces the fully connected head."""

    def __init__(self, input_shape, num_outputs: int, dropout: float = 0.5):
        super().__init__()
        channels, _, _ = image_input(input_shape, "nin")
        self.features = nn.Sequential(
            nin_block(channels, 96, 11, 4, 0), nn.MaxPool2d(3, stride=2),
            nin_block(96, 256, 5, 1, 2), nn.MaxPool2d(3, stride=2),
            nin_block(256, 384, 3, 1, 1), nn.MaxPool2d(3, stride=2),
            nn.Dropout(dropout),
            nin_block(384, num_outputs, 3, 1, 1),
        )
        flat_features(self.features, input_shape, "nin")  # a clear message if the input is too small
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())

    def forward(self, x):
        return self.classifier(self.features(x))
