"""A Transformer encoder: pre-norm residual blocks of multi-head self-attention and a feed-forward
layer, over token ids (an embedding) or float sequences (channels x length: a projection of each
step and its neighbours, a 1-D convolution of `kernel` steps; 1 is a linear projection of each step).

Attention is torch.nn.functional.scaled_dot_product_attention, so CUDA runs the fused kernels: a
language model asks for `is_causal` (no mask tensor: the flash kernel applies), padded text passes
a key padding mask. Positions are learned (one vector per position, up to the data's length) or
sinusoidal (fixed). A classifier pools the positions that are not padding (their mean) or reads a
CLS token; a language model returns logits over the vocabulary at every position.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dlcli.config.constraints import BOOLEAN, RATE, Interval, Options, constrained, nullable
from dlcli.errors import UserError
from dlcli.models.registry import register
from dlcli.models.tokens import check_language_model, masked_mean, not_padding, sequence_input, tie, token_embedding, token_length

POSITIONS = ("learned", "sinusoidal")
POOLING = ("mean", "cls")
EMBEDDING_STD = 0.02  # token, position and CLS vectors start small beside the unit-variance LayerNorm outputs
STEP_KERNEL = 5  # float sequences: steps per projection when model.kernel is null (MNIST-1D: 0.53 val accuracy with 1, 0.90 with 5)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x, keep_keys, causal: bool):
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        mask = keep_keys[:, None, None, :] if keep_keys is not None else None  # (B, 1, 1, T): True where a key may be read
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=causal)
        return self.out(y.transpose(1, 2).reshape(batch, length, dim))


class Block(nn.Module):
    """x + attention(norm(x)), then x + feed_forward(norm(x)): the pre-norm order trains without warm-up."""

    def __init__(self, dim: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads, dropout)
        self.feed_forward = nn.Sequential(nn.Linear(dim, ff), nn.GELU(), nn.Linear(ff, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, keep_keys, causal: bool):
        x = x + self.drop(self.attention(self.norm1(x), keep_keys, causal))
        return x + self.drop(self.feed_forward(self.norm2(x)))


def sinusoids(length: int, dim: int) -> torch.Tensor:
    """The fixed positions of "Attention is all you need": sines and cosines of geometric wavelengths."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return table


class Positions(nn.Module):
    """What each position adds to its vector: learned (a table the model trains) or sinusoidal
    (computed, kept out of the checkpoint); a module of its own so dl param-count shows it."""

    def __init__(self, kind: str, slots: int, dim: int):
        super().__init__()
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(slots, dim) * EMBEDDING_STD)
        else:
            self.register_buffer("table", sinusoids(slots, dim), persistent=False)

    def forward(self, hidden):
        return hidden + self.table[: hidden.shape[1]]


class ClassToken(nn.Module):
    """A learned vector put before every sequence; the head reads what it gathered (pool=cls)."""

    def __init__(self, dim: int):
        super().__init__()
        self.vector = nn.Parameter(torch.randn(1, 1, dim) * EMBEDDING_STD)

    def forward(self, hidden):
        return torch.cat([self.vector.expand(len(hidden), -1, -1), hidden], dim=1)


@register
@constrained(dim=Interval(1, 65_536, integer=True), heads=Interval(1, 1024, integer=True), layers=Interval(1, 256, integer=True),
             ff=Interval(1, 1_000_000, integer=True), dropout=RATE, positions=Options(POSITIONS), pool=Options(POOLING),
             tie_weights=BOOLEAN, kernel=nullable(Interval(1, 1023, integer=True)))
class Transformer(nn.Module):
    reads_sequences = True  # data.as_sequence means something to it (dlcli.config.no_effect)
    grows_with = ("dim", "layers")  # the settings that make it larger (a diagnosis of underfitting suggests them)

    def __init__(self, input_shape, num_outputs: int, dim: int = 64, heads: int = 4, layers: int = 2, ff: int = 256,
                 dropout: float = 0.1, positions: str = "learned", pool: str = "mean", tie_weights: bool = False,
                 kernel: int | None = None, vocab_size: int | None = None, causal: bool = False):
        super().__init__()
        if dim % heads:
            raise UserError(f"model.dim={dim} must be divisible by model.heads={heads} (each head reads dim/heads "
                            f"features): choose e.g. model.dim={heads * max(1, round(dim / heads))}")
        check_language_model("transformer", causal, False, tie_weights, vocab_size)
        self.vocab_size, self.causal, self.pool = vocab_size, causal, pool
        if vocab_size is not None:
            if kernel is not None:  # a setting that changes nothing would be a result believed and not got
                raise UserError(f"model.kernel={kernel} sets how many steps of a float sequence each position reads, and "
                                "this data is token ids (text), which an embedding reads one by one: drop model.kernel")
            length = token_length(input_shape, "transformer")
            self.embedding = token_embedding(vocab_size, dim)
            nn.init.normal_(self.embedding.weight, std=EMBEDDING_STD)
            with torch.no_grad():
                self.embedding.weight[0].zero_()  # the padding vector (padding_idx) stays zero
        else:
            channels, length = sequence_input(input_shape, "transformer")
            kernel = STEP_KERNEL if kernel is None else kernel
            if kernel % 2 == 0:
                raise UserError(f"model.kernel={kernel} must be odd: the projection is centred on each step, so the "
                                f"sequence keeps its length; choose {kernel - 1} or {kernel + 1}")
            # one scalar per step says little about a shape: each step's vector is projected from it and its neighbours
            self.projection = nn.Conv1d(channels, dim, kernel, padding=kernel // 2)
        self.cls = ClassToken(dim) if pool == "cls" and not causal else None
        self.context = length  # the longest sequence it reads (its positions): a sampler keeps the last `context` tokens
        self.positions = Positions(positions, length + (self.cls is not None), dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, ff, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_outputs)
        if tie_weights:
            tie(self.head, self.embedding, dim, "model.dim")

    def forward(self, x):
        if self.vocab_size is None:
            hidden, keep = self.projection(x).transpose(1, 2), None  # (batch, channels, length) -> (batch, length, dim)
        else:
            hidden = self.embedding(x)
            keep = None if self.causal else not_padding(x)  # a language model's text is contiguous: no padding
        if self.cls is not None:
            hidden = self.cls(hidden)
            keep = None if keep is None else torch.cat([keep.new_ones(len(keep), 1), keep], dim=1)
        if hidden.shape[1] > len(self.positions.table):
            raise UserError(f"model=transformer reads at most {self.context} positions (the data's length when it was built), "
                            f"and was given {x.shape[-1]}")
        hidden = self.drop(self.positions(hidden))
        attend = keep if keep is None or self.cls is not None else keep | ~keep.any(dim=1, keepdim=True)  # all padding: read it
        for block in self.blocks:
            hidden = block(hidden, attend, self.causal)
        hidden = self.norm(hidden)
        if self.causal:
            return self.head(hidden)
        if self.cls is not None:
            return self.head(hidden[:, 0])
        return self.head(hidden.mean(dim=1) if keep is None else masked_mean(hidden, keep))
