"""A text column prepared for a run: each text as token ids right-padded with 0 (`<pad>`), with
what the train rows taught (the tokenizer, the vocabulary, how many tokens a row keeps) held in a
`TextEncoding` that turns into plain JSON and back, so `dl predict` encodes new texts unchanged.

Batches are cut to their longest text: a model pools over the tokens that are not padding, so
fewer pad columns change nothing but the time spent on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from typing import ClassVar

import numpy as np

from dlcli.data.preprocess import TargetScaler
from dlcli.data.prepared import target_tensor
from dlcli.data.record import data_record
from dlcli.data.split import Split
from dlcli.data.text_baseline import bag_of_words_baseline
from dlcli.data.text_table import text_tokens
from dlcli.data.vocab import PAD_ID, UNK_ID, Vocabulary
from dlcli.errors import UserError


@dataclass
class TextEncoding:
    """The text column, its tokenizer, the vocabulary of the train rows and the tokens kept per row."""

    kind: ClassVar[str] = "text_column"
    column: str
    tokens: str  # char | word (dlcli.data.vocab.tokenize)
    lowercase: bool  # texts are lowercased first
    length: int  # tokens kept per text, the model's input length: longer texts are cut
    vocabulary: Vocabulary

    @classmethod
    def fit(cls, train_pieces: list[list[str]], column: str, tokens: str, lowercase: bool, vocab_size: int | None,
            max_len: int | None) -> TextEncoding:
        """The encoding the train rows' tokens (`train_pieces`, one list per row: text_tokens) teach."""
        vocabulary = Vocabulary.build(chain.from_iterable(train_pieces), vocab_size)
        if len(vocabulary) < 4:  # <pad>, <unk> and at most one token: every text reads the same
            which = f" ({vocabulary.tokens[2]!r})" if len(vocabulary) == 3 else ""
            held = "one distinct token" if len(vocabulary) == 3 else "no token"
            raise UserError(f"data.text={column}: the train rows hold {held}{which} with data.tokens={tokens}, so the texts "
                            "cannot tell the targets apart: a vocabulary needs at least two tokens (name a column of text)")
        longest = max(len(pieces) for pieces in train_pieces)
        return cls(column, tokens, lowercase, min(longest, max_len) if max_len else longest, vocabulary)

    def ids(self, pieces: list[list[str]]) -> np.ndarray:
        """Each row's token ids, cut to `length` and right-padded with <pad> (N x length, int64). A text
        with no token is one <unk>: a model must see at least one position."""
        ids = np.full((len(pieces), self.length), PAD_ID, dtype=np.int64)
        for row, tokens in enumerate(pieces):
            kept = self.vocabulary.encode(tokens[: self.length])
            ids[row, : max(len(kept), 1)] = kept if len(kept) else UNK_ID
        return ids

    def encode(self, texts) -> tuple[np.ndarray, list[str]]:
        """New texts as token ids, and notes on what changed them (cut, empty, unseen tokens)."""
        pieces = text_tokens(texts, self.tokens, self.lowercase)
        return self.ids(pieces), self.notes(pieces)

    def notes(self, pieces: list[list[str]]) -> list[str]:
        """Lines for the log on the texts `pieces` were tokenized from: what was cut, empty or unknown."""
        said = []
        cut = sum(len(p) > self.length for p in pieces)
        if cut:
            said.append(f"{cut} text(s) are longer than {self.length} tokens and are cut there "
                        "(data.max_len sets the length)")
        empty = sum(not p for p in pieces)
        if empty:
            said.append(f"{empty} text(s) hold no token: each is read as one unknown token")
        known = self.vocabulary.ids
        unseen = sum(1 for p in pieces for token in p[: self.length] if token not in known)
        total = sum(min(len(p), self.length) for p in pieces)
        if unseen and total:
            said.append(f"{unseen / total:.1%} of the tokens are not in the vocabulary: read as <unk>")
        return said

    def length_advice(self, train_pieces: list[list[str]]) -> list[str]:
        """A line when a few long train texts set a length most texts do not need (every row is
        padded to it: memory, and time for a model that reads every position)."""
        typical = int(np.percentile([len(p) for p in train_pieces], 95))
        if self.length <= 2 * max(typical, 1):
            return []
        return [f"95% of the train texts have at most {typical} tokens and the longest {self.length}: "
                f"data.max_len={typical} would cut the few long ones and train faster"]

    def to_json(self) -> dict:
        return {"kind": self.kind, "column": self.column, "tokens": self.tokens, "lowercase": self.lowercase,
                "vocabulary": self.vocabulary.to_json()}

    @classmethod
    def from_json(cls, record: dict, length: int) -> TextEncoding:
        """The encoding `to_json` wrote (checked first: dlcli.data.modalities.text_column), whose
        run's inputs hold `length` tokens (its input_shape)."""
        return cls(record["column"], record["tokens"], record["lowercase"], length, Vocabulary.from_json(record["vocabulary"]))


@dataclass
class TextData:
    """A text column's rows as token ids, the split, and what a model needs to know about them."""

    ids: np.ndarray  # int64 N x length, right-padded with 0
    texts: np.ndarray  # the raw texts, for the bag-of-words baseline
    targets: np.ndarray  # int64 class indices or float32 values
    split: Split
    task: str
    name: str
    encoding: TextEncoding
    num_outputs: int
    class_names: list[str] | None = None
    target_scaler: TargetScaler | None = None
    notes: list[str] = field(default_factory=list)
    target_name: str = "target"
    id_columns: list[str] = field(default_factory=list)
    stored_shape: tuple[int, ...] | None = None  # rows are stored as the model sees them

    kind: ClassVar[str] = TextEncoding.kind

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.encoding.length,)

    @property
    def vocab_size(self) -> int:
        """The embedding's rows (dlcli.models.build passes it to a model that takes it)."""
        return len(self.encoding.vocabulary)

    def preprocessing(self) -> dict:
        """The run's preprocessing.json (dlcli.data.record.data_record)."""
        return data_record(self)

    def baseline(self) -> dict:
        """A bag-of-words model's scores on the validation and test rows, for the run's summary."""
        return bag_of_words_baseline(self)

    def batches(self, name: str, device, training: bool = False):
        """The part as token ids on the device, each batch cut to its longest text."""
        import torch  # noqa: PLC0415  (dl cache list runs without torch)

        from dlcli.engine.batches import TensorBatches  # noqa: PLC0415  (dl cache list runs without torch: dlcli.engine.batches imports it)

        rows = self.split.part(name)
        x = torch.as_tensor(self.ids[rows], dtype=torch.long)
        return TensorBatches(x.to(device), target_tensor(self.task, self.targets[rows]).to(device), cut_padding)


def cut_padding(x):
    """The batch without the pad columns that every text of it has (at least one column is kept)."""
    width = int((x != PAD_ID).sum(dim=1).max()) if len(x) else 1
    return x[:, : max(width, 1)]
