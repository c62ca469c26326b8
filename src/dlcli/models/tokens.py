"""What the sequence models share about their inputs: token ids (int64, 0 is padding, right-padded;
dlcli.data.vocab) or float sequences (channels x length), and the checks that keep a language
model causal and a tied output layer the shape of its embedding.

How a model learns what it reads: `build_model` passes `vocab_size` (the data's vocabulary; None for
float sequences) and `causal=True` for a language model (task language_model: one next-token
distribution per position, each seeing only the positions before it) to a constructor that takes them.
"""

from __future__ import annotations

import torch
from torch import nn

from dlcli.errors import UserError

PAD = 0  # the padding id of every vocabulary (dlcli.data.vocab)


def sequence_input(input_shape, model: str) -> tuple[int, int]:
    """(channels, length) of a float sequence, or a one-line error for other data."""
    if len(input_shape) != 2:
        raise UserError(
            f"model={model} needs a sequence (channels x length), but the data has shape "
            f"{'x'.join(map(str, input_shape))}: for a table of signal columns add +data.as_sequence=true"
        )
    return int(input_shape[0]), int(input_shape[1])


def token_length(input_shape, model: str) -> int:
    """The sequence length of token data (input_shape = (seq_len,))."""
    if len(input_shape) != 1:
        raise UserError(f"model={model} was given a vocabulary but inputs of shape {'x'.join(map(str, input_shape))}: "
                        "token ids come as one sequence of seq_len ids per sample")
    return int(input_shape[0])


def token_embedding(vocab_size: int, dim: int) -> nn.Embedding:
    """One vector per token id; the padding id's stays zero and learns nothing."""
    if vocab_size < 2:
        raise UserError(f"a vocabulary of {vocab_size} token(s) leaves nothing to learn: the text needs at least one "
                        "token besides padding")
    return nn.Embedding(vocab_size, dim, padding_idx=PAD)


def not_padding(ids: torch.Tensor) -> torch.Tensor:
    """(B, T) True where a real token is (the text is right-padded with PAD)."""
    return ids != PAD


def token_lengths(ids: torch.Tensor) -> torch.Tensor:
    """Each sample's number of tokens, on the CPU (what pack_padded_sequence wants), at least one
    (a sample that is all padding is read as one padding token). On the meta device (shapes only:
    dl param-count) every position counts."""
    if ids.is_meta:
        return torch.full((ids.shape[0],), ids.shape[1], dtype=torch.int64)
    return not_padding(ids).sum(dim=1).clamp(min=1).cpu()


def masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(B, T, D) averaged over the positions where keep (B, T) is True."""
    weights = keep.unsqueeze(-1).to(values.dtype)
    return (values * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def masked_max(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(B, T, D) maximum over the positions where keep (B, T) is True."""
    return values.masked_fill(~keep.unsqueeze(-1), float("-inf")).amax(dim=1)


def check_language_model(model: str, causal: bool, bidirectional: bool, tie_weights: bool, vocab_size: int | None) -> None:
    """A language model predicts each next token from the ones before it: a backward direction
    would read the answer; tied weights need a vocabulary to tie to."""
    if causal and bidirectional:
        raise UserError(f"model={model} with model.bidirectional=true cannot be a language model: its backward direction "
                        "reads the tokens it is asked to predict; set model.bidirectional=false")
    if tie_weights and not causal:
        raise UserError("model.tie_weights=true shares a language model's output layer with its token embedding, and this "
                        "task is not language modelling: drop it")
    if causal and vocab_size is None:
        raise UserError(f"model={model} as a language model needs token data (a vocabulary): use data=text")


def tie(head: nn.Linear, embedding: nn.Embedding, width: int, setting: str) -> None:
    """The output layer uses the embedding's matrix (one tensor, learned once: fewer weights, and
    tokens that are read alike are predicted alike)."""
    if width != embedding.embedding_dim:
        raise UserError(f"model.tie_weights=true needs the output's width ({setting}={width}) equal to "
                        f"model.embedding_dim={embedding.embedding_dim}: set them equal, or drop model.tie_weights")
    head.weight = embedding.weight


def example_input(model: nn.Module, input_shape, device) -> torch.Tensor:
    """One sample the model reads: token ids (1, an unknown token; 0 would be all padding) for a
    model that embeds tokens, zeros otherwise."""
    if getattr(model, "vocab_size", None):
        return torch.ones(1, *input_shape, dtype=torch.int64, device=device)
    return torch.zeros(1, *input_shape, device=device)
