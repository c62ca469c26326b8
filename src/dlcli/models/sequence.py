"""Models for 1-D signals: recurrent classifiers (RNN, LSTM, GRU) and a 1-D CNN.

Input is (channels, length), e.g. a table whose columns are samples of a curve with
data.as_sequence=true gives (1, columns).
"""

from __future__ import annotations

import torch
from torch import nn

from dlcli.errors import UserError
from dlcli.models.layers import flat_features
from dlcli.config.constraints import BOOLEAN, RATE, Interval, ListOf, Options, constrained
from dlcli.models.registry import register

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def _sequence_input(input_shape, model: str) -> tuple[int, int]:
    if len(input_shape) != 2:
        raise UserError(
            f"model={model} needs a sequence (channels x length), but the data has shape "
            f"{'x'.join(map(str, input_shape))}: for a table of signal columns add +data.as_sequence=true"
        )
    return int(input_shape[0]), int(input_shape[1])


@register
@constrained(cell=Options(tuple(CELLS)), hidden=Interval(1, 1_000_000, integer=True), layers=Interval(1, 64, integer=True),
             bidirectional=BOOLEAN, dropout=RATE)
class RecurrentClassifier(nn.Module):
    """Many-to-one: the final hidden state (both directions if bidirectional) feeds a linear head."""

    reads_sequences = True  # data.as_sequence means something to it (dlcli.config.no_effect)
    grows_with = ("hidden",)  # the settings that make it larger (a diagnosis of underfitting suggests them)

    def __init__(self, input_shape, num_outputs: int, cell: str = "lstm", hidden: int = 64, layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0):
        super().__init__()
        if cell not in CELLS:
            raise UserError(f"model.cell={cell} is not a recurrent cell: choose one of {', '.join(CELLS)}")
        channels, _ = _sequence_input(input_shape, cell)
        self.rnn = CELLS[cell](channels, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                               dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_outputs)

    def forward(self, x):
        output, _ = self.rnn(x.transpose(1, 2))  # (batch, channels, length) -> (batch, length, channels)
        size = self.rnn.hidden_size
        last = output[:, -1, :size]
        if self.rnn.bidirectional:  # the backward direction has read the whole sequence at step 0
            last = torch.cat([last, output[:, 0, size:]], dim=1)
        return self.head(last)


@register
@constrained(channels=ListOf(Interval(1, 4096, integer=True), 1), kernel=Interval(1, 1024, integer=True),
             pool=Interval(1, 1024, integer=True))
class CNN1d(nn.Module):
    """Blocks of conv1d + batch norm + ReLU + max-pool, global average pooling, a linear head."""

    reads_sequences = True  # data.as_sequence means something to it (dlcli.config.no_effect)
    grows_with = ("channels",)  # the settings that make it larger (a diagnosis of underfitting suggests them)

    def __init__(self, input_shape, num_outputs: int, channels=(16, 32), kernel: int = 5, pool: int = 2):
        super().__init__()
        in_channels, _ = _sequence_input(input_shape, "cnn1d")
        layers = []
        for width in channels:
            layers += [nn.Conv1d(in_channels, int(width), kernel, padding=kernel // 2), nn.BatchNorm1d(int(width)), nn.ReLU(), nn.MaxPool1d(pool)]
            in_channels = int(width)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.classifier = nn.Linear(flat_features(self.features, tuple(input_shape), "cnn1d"), num_outputs)

    def forward(self, x):
        return self.classifier(self.features(x))
