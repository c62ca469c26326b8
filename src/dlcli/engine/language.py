"""Language modelling in the engine: windows of a token stream batched on the device, the loss over
every position, the metrics (perplexity, bits per token, next-token accuracy) and sampling.

A language model takes x (B, T) token ids and returns logits (B, T, vocab), causal: position t
sees only positions <= t; its target y (B, T) is x shifted by one, the next tokens.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional

from dlcli.engine.distributed import World, part_of_batch, shard
from dlcli.engine.loop import autocast

LANGUAGE_MODEL = "language_model"


def metric_reads_outputs(task: str, metric: str) -> bool:
    """Whether an epoch's `metric` needs the predictions: a language model's perplexity and bits per
    token are read from its mean loss alone (a training epoch then keeps no next-token predictions)."""
    return task != LANGUAGE_MODEL or metric == "accuracy"


def sample_unit(task: str) -> str:
    """What one sample of the task is, in the run's output: a language model's are windows of
    seq_len tokens (its rates and counts say so), every other task's are samples."""
    return "windows" if task == LANGUAGE_MODEL else "samples"


class TokenWindows:
    """Windows of `seq_len` tokens cut from one stream held on the device: window i is
    stream[start_i : start_i + seq_len] and its target the same span one token later. A batch is
    one gather on the device, never a loop over samples. Training windows move by one random offset
    each epoch (0..max_offset, drawn from the run's generator, so a resume draws the same), so the
    model does not always see the text cut at the same places."""

    def __init__(self, stream: torch.Tensor, starts: torch.Tensor, seq_len: int, max_offset: int = 0):
        self.stream, self.starts, self.seq_len, self.max_offset = stream, starts, int(seq_len), int(max_offset)
        self.span = torch.arange(self.seq_len + 1, device=stream.device)

    def __len__(self) -> int:
        return len(self.starts)

    def windows(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = self.stream[starts[:, None] + self.span]
        return chunk[:, :-1], chunk[:, 1:]

    def shuffled(self, batch_size: int, generator: torch.Generator, world: World = World()) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self)
        order = torch.randperm(count, generator=generator).to(self.starts.device)
        offset = int(torch.randint(self.max_offset + 1, (), generator=generator)) if self.max_offset else 0
        for start in range(0, count, batch_size):
            rows = order[start : start + batch_size]
            if len(rows) == 1 and count > 1:
                return  # as TensorBatches: a lone trailing window adds only noise
            rows = part_of_batch(rows, world)
            if rows is None:
                return
            yield self.windows(self.starts[rows] + offset)

    def in_order(self, batch_size: int, world: World = World()) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        part = shard(len(self), world)
        for start in range(part.start, part.stop, batch_size):
            yield self.windows(self.starts[start : min(start + batch_size, part.stop)])

    def peek(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.windows(self.starts[:count])


class TokenCrossEntropy(nn.Module):
    """Cross-entropy over every position: logits (B, T, V) against next tokens (B, T), the mean
    over all B*T tokens (in float32 whatever the autocast)."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def token_scores(loss, predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Perplexity = exp(mean token cross-entropy), bits per token (per character for char tokens)
    = that mean / ln 2, and next-token accuracy, as 0-d float64 tensors on the targets' device.
    `predictions`: the predicted next tokens (B, T), or logits (B, T, V)."""
    if predictions.ndim == targets.ndim + 1:
        predictions = predictions.argmax(dim=-1)
    mean = torch.as_tensor(loss, dtype=torch.float64, device=targets.device)
    correct = (predictions == targets).sum(dtype=torch.float64)
    return {"perplexity": mean.exp(), "bits_per_token": mean / math.log(2), "accuracy": correct / max(targets.numel(), 1)}


@torch.no_grad()
def predict_tokens(model: nn.Module, batches, loss_fn: nn.Module, precision: str = "32"):
    """The predicted next tokens (N, T), the true ones, and the mean token loss (0-d), all on the
    device: each batch's logits are reduced where they are made, so a large vocabulary's (N, T, V)
    logits are never held whole."""
    model.eval()
    predicted, targets, loss_sum, count = [], [], None, 0
    for x, y in batches:
        with autocast(x.device, precision):
            logits = model(x).float()
        loss = loss_fn(logits, y) * len(y)
        loss_sum = loss if loss_sum is None else loss_sum + loss
        count += len(y)
        predicted.append(logits.argmax(dim=-1))
        targets.append(y)
    if not count:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.tensor(float("nan"))
    return torch.cat(predicted), torch.cat(targets), loss_sum / count


@torch.no_grad()
def sample_tokens(model: nn.Module, prompt: torch.Tensor, count: int, temperature: float, top_k: int | None,
                  generator: torch.Generator, context: int | None = None, never: tuple[int, ...] = ()) -> list[int]:
    """`count` tokens drawn one at a time after `prompt` (1-d ids): each from the softmax of the
    last position's logits / `temperature`, kept to the `top_k` likeliest when given. The model
    reads at most the last `context` tokens (its training seq_len: a Transformer's positions end
    there). `generator` (CPU) makes a draw reproducible; the ids in `never` (padding) are never drawn."""
    model.eval()
    device = next(model.parameters()).device
    sequence = prompt.to(device).reshape(1, -1)
    drawn = []
    for _ in range(count):
        window = sequence if context is None else sequence[:, -context:]
        logits = model(window)[0, -1].float().cpu() / temperature
        logits[list(never)] = float("-inf")
        if top_k is not None and top_k < len(logits):
            cutoff = torch.topk(logits, top_k).values[-1]
            logits = logits.masked_fill(logits < cutoff, float("-inf"))
        token = int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))
        drawn.append(token)
        sequence = torch.cat([sequence, torch.tensor([[token]], device=device)], dim=1)
    return drawn
