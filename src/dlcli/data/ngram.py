"""Counting baselines for a language model, from token ids alone (numpy, no model): the unigram
perplexity (token frequencies, no context: what a model that has not learnt to read context scores)
and a bigram model's (the previous token only). A network worth its training beats both."""

from __future__ import annotations

import math

import numpy as np

BIGRAM_SMOOTHING = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)  # additive smoothing tried, the best on validation kept


def unigram_perplexity(train: np.ndarray, vocab_size: int) -> float:
    """exp(entropy) of the training tokens' frequencies: the perplexity, on the training span itself,
    of guessing every token from those frequencies alone."""
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64)
    shares = counts[counts > 0] / counts.sum()
    return math.exp(-float((shares * np.log(shares)).sum()))


def bigram_perplexity(train: np.ndarray, held_out: np.ndarray, vocab_size: int, smoothing: float) -> float:
    """The perplexity on `held_out` of P(b | a) = (count(a, b) + k) / (count(a) + k V) counted on
    `train` (additive smoothing k, so an unseen pair still has a chance)."""
    if len(held_out) < 2:
        return float("nan")
    codes = np.sort(train[:-1] * vocab_size + train[1:])
    previous = np.bincount(train[:-1], minlength=vocab_size).astype(np.float64)
    wanted = held_out[:-1] * vocab_size + held_out[1:]
    right = np.searchsorted(codes, wanted, side="right")
    pair_counts = (right - np.searchsorted(codes, wanted, side="left")).astype(np.float64)
    probability = (pair_counts + smoothing) / (previous[held_out[:-1]] + smoothing * vocab_size)
    return math.exp(-float(np.log(probability).mean()))


def bigram_baseline(train: np.ndarray, val: np.ndarray, test: np.ndarray, vocab_size: int) -> dict:
    """A bigram model's perplexity on the validation and test spans, its smoothing chosen on the
    validation span (on the training span when there is no validation span)."""
    tuning = val if len(val) >= 2 else train
    smoothing = min(BIGRAM_SMOOTHING, key=lambda k: bigram_perplexity(train, tuning, vocab_size, k))
    scores = {"smoothing": smoothing}
    for name, span in (("val", val), ("test", test)):
        if len(span) >= 2:
            scores[f"{name}_perplexity"] = bigram_perplexity(train, span, vocab_size, smoothing)
    return scores
