"""`dl predict RUN --prompt TEXT`: a trained language model continues a text, one token at a time.

The prompt is cleaned and tokenized as the run's text was (preprocessing.json's text record), each
token numbered by the run's vocabulary; a token the vocabulary lacks is read as <unk> and named in
a note (a word never seen in training, a character the cleaning would not remove). Each new token
is drawn from the softmax of the last position's logits over a temperature, optionally kept to the
top k, never <pad> or <unk> (a continuation says something: "<unk>" is no text); the draws come
from a generator seeded by --seed, so the same seed gives the same text.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Sequence

import torch

from dlcli.data.text import LANGUAGE_MODEL, clean
from dlcli.data.vocab import PAD_ID, UNK_ID, Vocabulary, detokenize, tokenize
from dlcli.engine.language import sample_tokens
from dlcli.errors import UserError
from dlcli.trained.opened import open_trained_run, read_preprocessing

MAX_TOKENS = 100_000  # a continuation longer than this is a mistake in the flag, not a wish


def check_sampling(tokens: int, temperature: float, top_k: int | None) -> None:
    """The sampling flags, each refused in one line before the run is opened."""
    if not 1 <= tokens <= MAX_TOKENS:
        raise UserError(f"--tokens {tokens} must be a whole number from 1 to {MAX_TOKENS:,}: how many tokens to add to the prompt")
    if not temperature > 0 or temperature == float("inf"):
        raise UserError(f"--temperature {temperature} must be a positive number (1 samples the model as it is; lower is "
                        "more conservative, higher more varied)")
    if top_k is not None and top_k < 1:
        raise UserError(f"--top-k {top_k} must be a whole number of at least 1 (1 always takes the likeliest token)")


def continue_text(run_path: str | Path, prompt: str, tokens: int = 200, temperature: float = 1.0, top_k: int | None = None,
                  seed: int | None = None, checkpoint: str = "best", device: str = "auto", trust: Sequence[str] = ()) -> dict:
    """The prompt and `tokens` more, sampled from the run's language model; the result says the seed
    used (drawn when none is given), so that any text can be drawn again."""
    check_sampling(tokens, temperature, top_k)
    _, record = read_preprocessing(run_path)
    if record["task"] != LANGUAGE_MODEL:
        raise UserError(f"--prompt continues a text, and this run is a {record['task']}: give the INPUT file to predict instead")
    text = record["text"]
    vocabulary = Vocabulary.from_json(text["vocabulary"])
    cleaned = clean(prompt, **text["cleaning"])
    pieces = tokenize(cleaned, text["tokens"])
    if not pieces:
        raise UserError(f"--prompt {prompt!r} holds no {text['tokens']} tokens once cleaned as the run's text was: give some text")
    notes = []
    unknown = vocabulary.unknown(pieces)
    if unknown:
        notes.append(f"the run's vocabulary lacks {', '.join(repr(t) for t in unknown[:10])}"
                     f"{f' and {len(unknown) - 10} more' if len(unknown) > 10 else ''}: read as <unk>")
    seed = random.randrange(2**31) if seed is None else int(seed)
    trained = open_trained_run(run_path, checkpoint, device, trust)
    started = time.perf_counter()
    ids = sample_tokens(trained.model, torch.as_tensor(vocabulary.encode(pieces)), tokens, float(temperature), top_k,
                        torch.Generator().manual_seed(seed), context=int(record["input_shape"][0]), never=(PAD_ID, UNK_ID))
    seconds = time.perf_counter() - started
    continuation = vocabulary.decode(ids)
    return {
        "run": str(trained.run_dir),
        "prompt": cleaned,
        "text": detokenize([*pieces, *continuation], text["tokens"]),
        "continuation": detokenize(continuation, text["tokens"]),
        "tokens": tokens,
        "temperature": float(temperature),
        "top_k": top_k,
        "seed": seed,
        "checkpoint": checkpoint,
        "epoch": trained.epoch,
        "device": str(next(trained.model.parameters()).device),
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
        "notes": notes,
    }
