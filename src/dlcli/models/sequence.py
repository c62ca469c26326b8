"""Models for sequences: recurrent networks (RNN, LSTM, GRU) and a 1-D CNN.

Float input is (channels, length), e.g. a table whose columns are samples of a curve with
data.as_sequence=true gives (1, columns). The recurrent networks read token ids too (dlcli.models.tokens):
through an embedding, pooled over the real tokens for classification, or one next-token distribution
per position for a language model. Padding never reaches a real token's output: text is right-padded,
so one direction reads it only after every real token (one pass over the padded batch, which on a CPU
took a third of the packed pass's time and exports to ONNX), and a bidirectional network, whose
backward direction would read it first, reads packed sequences.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dlcli.errors import UserError
from dlcli.models.layers import flat_features
from dlcli.config.constraints import BOOLEAN, RATE, Interval, ListOf, Options, constrained
from dlcli.models.registry import register
from dlcli.models.tokens import (check_language_model, masked_max, masked_mean, not_padding, sequence_input, tie,
                                 token_embedding, token_length, token_lengths)

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
POOLING = ("last", "mean", "max")  # what feeds a classifier's head: the final hidden state(s), or all of them pooled


@register
@constrained(cell=Options(tuple(CELLS)), hidden=Interval(1, 1_000_000, integer=True), layers=Interval(1, 64, integer=True),
             bidirectional=BOOLEAN, dropout=RATE, embedding_dim=Interval(1, 1_000_000, integer=True),
             pool=Options(POOLING), tie_weights=BOOLEAN)
class RecurrentClassifier(nn.Module):
    """Many-to-one (a classifier or regressor: `pool` chooses what feeds the linear head) or, for a
    language model (`causal`), many-to-many: logits over the vocabulary at every position."""

    reads_sequences = True  # data.as_sequence means something to it (dlcli.config.no_effect)
    grows_with = ("hidden",)  # the settings that make it larger (a diagnosis of underfitting suggests them)

    def __init__(self, input_shape, num_outputs: int, cell: str = "lstm", hidden: int = 64, layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, embedding_dim: int = 64, pool: str = "last",
                 tie_weights: bool = False, vocab_size: int | None = None, causal: bool = False):
        super().__init__()
        if cell not in CELLS:
            raise UserError(f"model.cell={cell} is not a recurrent cell: choose one of {', '.join(CELLS)}")
        check_language_model(cell, causal, bidirectional, tie_weights, vocab_size)
        self.vocab_size, self.causal, self.pool = vocab_size, causal, pool
        if vocab_size is not None:
            token_length(input_shape, cell)
            self.embedding = token_embedding(vocab_size, embedding_dim)
            self.dropout = nn.Dropout(dropout)  # on the embedded tokens (and a language model's outputs)
            features = embedding_dim
        else:
            features, _ = sequence_input(input_shape, cell)
        self.rnn = CELLS[cell](features, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                               dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_outputs)
        if tie_weights:
            tie(self.head, self.embedding, hidden, "model.hidden")

    def forward(self, x):
        if self.vocab_size is None:
            return self._pooled(self.rnn(x.transpose(1, 2)), None)  # (batch, channels, length) -> (batch, length, channels)
        embedded = self.dropout(self.embedding(x))
        if self.causal:  # the text is contiguous (no padding), each position reads only those before it
            return self.head(self.dropout(self.rnn(embedded)[0]))
        keep = not_padding(x)
        if not self.rnn.bidirectional:  # right-padded: padding comes after the real tokens, which never read it
            output, state = self.rnn(embedded)
            if self.pool == "last":  # the last layer's output at each sequence's own last token
                last = (keep.sum(dim=1).clamp(min=1) - 1)[:, None, None].expand(-1, 1, output.shape[-1])
                return self.head(output.gather(1, last).squeeze(1))
            return self._pooled((output, state), keep)
        lengths = token_lengths(x)  # the backward direction would read the padding first: packed, it never does
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        output, state = self.rnn(packed)
        if self.pool != "last":
            output = pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])[0]
        return self._pooled((output, state), keep)

    @property
    def onnx_refusal(self) -> str | None:
        """Why torch's ONNX exporter cannot take this network (dlcli.trained.export), or None."""
        if self.vocab_size is not None and not self.causal and self.rnn.bidirectional:
            return "a bidirectional network reads padded text as packed sequences, which the ONNX exporter does not take"
        return None

    def _pooled(self, outputs, keep):
        output, state = outputs
        if self.pool == "last":  # the last layer's final state: forward at each sequence's end, backward at its start
            final = state[0] if isinstance(state, tuple) else state  # an LSTM's state is (h, c)
            directions = 2 if self.rnn.bidirectional else 1
            return self.head(torch.cat(list(final[-directions:]), dim=1))
        keep = keep if keep is not None else torch.ones(output.shape[:2], dtype=torch.bool, device=output.device)
        return self.head((masked_mean if self.pool == "mean" else masked_max)(output, keep))


@register
@constrained(channels=ListOf(Interval(1, 4096, integer=True), 1), kernel=Interval(1, 1024, integer=True),
             pool=Interval(1, 1024, integer=True))
class CNN1d(nn.Module):
    """Blocks of conv1d + batch norm + ReLU + max-pool, global average pooling, a linear head."""

    reads_sequences = True  # data.as_sequence means something to it (dlcli.config.no_effect)
    grows_with = ("channels",)  # the settings that make it larger (a diagnosis of underfitting suggests them)

    def __init__(self, input_shape, num_outputs: int, channels=(16, 32), kernel: int = 5, pool: int = 2):
        super().__init__()
        in_channels, _ = sequence_input(input_shape, "cnn1d")
        layers = []
        for width in channels:
            layers += [nn.Conv1d(in_channels, int(width), kernel, padding=kernel // 2), nn.BatchNorm1d(int(width)), nn.ReLU(), nn.MaxPool1d(pool)]
            in_channels = int(width)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.classifier = nn.Linear(flat_features(self.features, tuple(input_shape), "cnn1d"), num_outputs)

    def forward(self, x):
        return self.classifier(self.features(x))
