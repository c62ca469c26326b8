"""Tokens and their ids, shared by every text source (a text file for language modelling, a text
column of a table): a plain tokenizer and a vocabulary built from the training part only.

Id 0 is `<pad>` (what shorter texts are right-padded with), id 1 is `<unk>` (a token the training
part never had, or one cut by the size cap). A run writes its vocabulary into preprocessing.json
and `dl predict` / `dl export` read it back with `Vocabulary.from_json`, which checks it: a run
received from someone else is data, never code, and a malformed list must be a one-line error.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import repeat
from collections.abc import Iterable, Sequence

import numpy as np

from dlcli.errors import UserError

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
TOKENIZERS = ("char", "word")
MAX_VOCABULARY = 10_000_000  # far above any real vocabulary: a received record claiming more is refused
# a word is a run of letters, digits or underscores (with an inner apostrophe: "don't"); any other
# character that is not a space is a token of its own, so punctuation is kept and never glued to a word
WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
NO_SPACE_BEFORE = re.compile(r"[.,;:!?)\]}%]")  # punctuation written against the word before it


def tokenize(text: str, tokens: str = "char") -> list[str]:
    """`text` as a list of tokens: every character (char), or words and punctuation marks (word)."""
    if tokens == "char":
        return list(text)
    if tokens == "word":
        return WORD.findall(text)
    raise UserError(f"tokens={tokens!r} is not a tokenizer: use one of {', '.join(TOKENIZERS)}")


def detokenize(pieces: Sequence[str], tokens: str = "char") -> str:
    """Tokens back into text: characters are joined as they are (exactly the text they came from);
    words with one space between them, except before closing punctuation (spacing is not kept)."""
    if tokens == "char":
        return "".join(pieces)
    text = ""
    for piece in pieces:
        glued = not text or NO_SPACE_BEFORE.fullmatch(piece) is not None
        text += piece if glued else " " + piece
    return text


class Vocabulary:
    """Tokens numbered by frequency in the text it was built from: `<pad>` 0, `<unk>` 1, then the
    most frequent token first (ties in order of first appearance, so the same text always gives
    the same ids)."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)  # id -> token, starting with PAD, UNK
        self.ids = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, tokens: Iterable[str], max_size: int | None = None) -> Vocabulary:
        """The vocabulary of `tokens` (the training part's), keeping at most `max_size` entries
        counting `<pad>` and `<unk>`; what is cut becomes `<unk>`."""
        if max_size is not None and max_size < 3:
            raise UserError(f"a vocabulary size of {max_size} leaves no room for a token beside {PAD} and {UNK}: use 3 or more")
        # Counter keeps first-appearance order and most_common sorts stably: ties keep that order
        counts = Counter(tokens)  # counted in C: a book's tokens in a fraction of a Python loop's time
        for special in (PAD, UNK):
            counts.pop(special, None)
        kept = counts.most_common(None if max_size is None else max_size - 2)
        return cls([PAD, UNK, *(token for token, _ in kept)])

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens)"

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """The ids of `tokens` (int64); a token the vocabulary lacks is `<unk>`."""
        return np.fromiter(map(self.ids.get, tokens, repeat(UNK_ID)), dtype=np.int64)  # ids.get(token, UNK_ID), looped in C

    def decode(self, ids) -> list[str]:
        """The tokens of `ids` (any sequence or array of whole numbers within the vocabulary)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"token ids must lie in 0..{len(self) - 1}, got {int(ids.min())}..{int(ids.max())}")
        return [self.tokens[i] for i in ids.tolist()]

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        """The distinct tokens of `tokens` that this vocabulary lacks, in order of appearance."""
        return list(dict.fromkeys(token for token in tokens if token not in self.ids))

    def to_json(self) -> dict:
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_json(cls, record) -> Vocabulary:
        """The vocabulary `to_json` wrote, checked: a one-line error naming the first thing wrong."""
        def bad(what: str):
            return UserError(f"the vocabulary is not one dl wrote ({what}): restore the run's preprocessing.json from a copy")

        if not isinstance(record, dict) or set(record) != {"tokens"}:
            raise bad("it must be an object holding only a list of tokens")
        tokens = record["tokens"]
        if not isinstance(tokens, list) or not 2 <= len(tokens) <= MAX_VOCABULARY:
            raise bad(f"tokens must be a list of 2 to {MAX_VOCABULARY:,} strings")
        if tokens[:2] != [PAD, UNK]:
            raise bad(f"its first two tokens must be {PAD} and {UNK}")
        if not all(isinstance(token, str) and token for token in tokens):
            raise bad("every token must be a non-empty string")
        if len(set(tokens)) != len(tokens):
            raise bad("a token is listed twice")
        return cls(tokens)
