"""A text for language modelling (data=text data.path=FILE, data=timemachine): one stream of tokens
cut into three contiguous spans, train | val | test (split.val and split.test as fractions of the
stream, never interleaved windows), numbered by a vocabulary learned from the training span only
(a token only the later spans have is <unk>), and read by the model as windows of data.seq_len
tokens whose targets are the next tokens, gathered on the device batch by batch
(dlcli.engine.language.TokenWindows). The run records the tokenizer, the cleaning and the
vocabulary, which `dl predict RUN --prompt TEXT` reads back to continue a text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlcli.data.modality import Modality, register
from dlcli.data.ngram import bigram_baseline, unigram_perplexity
from dlcli.data.record import data_record, whole
from dlcli.data.split import Split
from dlcli.data.text import LANGUAGE_MODEL, TextSource
from dlcli.data.vocab import TOKENIZERS, Vocabulary
from dlcli.errors import UserError

KIND = "text"


@dataclass
class SpanSplit(Split):
    """The windows' first tokens of each part (what split.json hashes), and the [start, stop) span
    of the stream each part holds."""

    spans: dict = field(default_factory=dict)


@dataclass
class TokenData:
    """A token stream prepared for a language model (the Prepared protocol of dlcli.data.modality)."""

    stream: np.ndarray  # int64 ids of the whole text
    vocabulary: Vocabulary
    tokenizer: str
    cleaning: dict
    seq_len: int
    split: SpanSplit
    name: str
    max_offset: int  # how far the training windows may move each epoch
    notes: list[str] = field(default_factory=list)
    kind: str = KIND
    task: str = LANGUAGE_MODEL
    stored_shape: tuple | None = None
    class_names: list | None = None
    target_name: str = "next token"
    id_columns: tuple = ()
    target_scaler: None = None

    def __post_init__(self):
        self._on_device = {}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.seq_len,)

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    @property
    def num_outputs(self) -> int:
        return len(self.vocabulary)  # logits over the vocabulary at every position

    @property
    def targets(self) -> np.ndarray:
        return self.stream  # every token is the target of the one before it

    def span(self, part: str) -> np.ndarray:
        start, stop = self.split.spans[part]
        return self.stream[start:stop]

    def preprocessing(self) -> dict:
        return data_record(self)

    def baseline(self) -> dict:
        """Counting models beside the network (dlcli.data.ngram), in the summary's shape of a
        baseline (name, label, val and test scores): a bigram model's perplexity on the validation
        and test spans, and the unigram perplexity of the training tokens (the diagnosis's level)."""
        train = self.span("train")
        bigram = bigram_baseline(train, self.span("val"), self.span("test"), self.vocab_size)
        return {"name": f"bigram model counted on the training span (additive smoothing {bigram['smoothing']:g}, chosen on "
                        "the validation span)", "label": "bigram",
                **{part: {"perplexity": bigram[f"{part}_perplexity"]} for part in ("val", "test") if f"{part}_perplexity" in bigram},
                "unigram_perplexity": unigram_perplexity(train, self.vocab_size)}

    def batches(self, part: str, device, training: bool = False):
        import torch  # noqa: PLC0415  (dl cache list runs without torch)

        from dlcli.engine.language import TokenWindows  # noqa: PLC0415  (dl cache list runs without torch: it imports it)

        key = str(device)
        if key not in self._on_device:  # one copy of the stream per device, shared by the parts
            self._on_device[key] = torch.as_tensor(self.stream, dtype=torch.long).to(device)
        starts = torch.as_tensor(self.split.part(part), dtype=torch.long).to(device)
        return TokenWindows(self._on_device[key], starts, self.seq_len, self.max_offset if training else 0)


def span_bounds(count: int, val: float, test: float) -> dict[str, tuple[int, int]]:
    """train | val | test as [start, stop) of a stream of `count` tokens, in that order."""
    test_size, val_size = round(count * test), round(count * val)
    train_end = count - val_size - test_size
    return {"train": (0, train_end), "val": (train_end, train_end + val_size), "test": (train_end + val_size, count)}


def window_starts(start: int, stop: int, seq_len: int, training: bool) -> tuple[np.ndarray, int]:
    """The first token of each window of a span, and how far they may all move (training only): a
    window and its target (one token later) stay inside the span. Training keeps one window's
    length of slack, when the span has room, for a new offset each epoch."""
    full = (stop - start - 1) // seq_len
    count = full - 1 if training and full >= 2 else full
    slack = (stop - start - 1) - count * seq_len
    return start + np.arange(count, dtype=np.int64) * seq_len, min(seq_len - 1, slack) if training else 0


@register
class TextModality(Modality):
    kind = KIND
    source_type = TextSource
    input_dtype = "int64"
    settings = ("tokens", "vocab_size")
    applies_to = "text (data=text, data=timemachine, or a text column)"
    is_a = "a text for language modelling"

    def split(self, raw: TextSource, split_cfg) -> SpanSplit:
        if split_cfg.get("kfold") is not None:
            raise UserError(f"split.kfold={split_cfg.kfold} cuts rows into folds, and {raw.name} is one stream of text whose "
                            "parts are contiguous spans: drop split.kfold")
        spans = span_bounds(len(raw.tokens), float(split_cfg.val), float(split_cfg.test))
        parts = {}
        for part, (start, stop) in spans.items():
            if stop - start == 0 and part != "train":
                parts[part] = np.zeros(0, dtype=np.int64)
                continue
            if stop - start < raw.seq_len + 1:
                # the advice fits every span, not only this one (the next check would refuse it otherwise)
                fits = min(b - a for name, (a, b) in spans.items() if b > a or name == "train") - 1
                raise UserError(too_short(raw, part, stop - start, split_cfg, fits))
            parts[part] = window_starts(start, stop, raw.seq_len, part == "train")[0]
        return SpanSplit(train=parts["train"], val=parts["val"], test=parts["test"], spans=spans)

    def prepare(self, raw: TextSource, split: SpanSplit, options: dict, placement) -> TokenData:
        start, stop = split.spans["train"]
        vocabulary = Vocabulary.build(raw.tokens[start:stop], options.get("vocab_size"))
        if len(vocabulary) < 4:
            only = vocabulary.tokens[2] if len(vocabulary) > 2 else ""
            raise UserError(f"the training span of {raw.name} has only one distinct token ({only!r}): a language model needs a "
                            "text of at least two different tokens")
        stream = vocabulary.encode(raw.tokens)
        max_offset = window_starts(start, stop, raw.seq_len, training=True)[1]
        unknown = {part: int((stream[a:b] == 1).sum()) for part, (a, b) in split.spans.items() if part != "train"}
        notes = [*raw.notes, f"a vocabulary of {len(vocabulary)} {raw.tokenizer} tokens (<pad> and <unk> included) from the "
                             f"training span; windows of {raw.seq_len} tokens"
                 + ("; " + ", ".join(f"{count} {part} tokens unknown to it (<unk>)" for part, count in unknown.items() if count)
                    if any(unknown.values()) else "")]
        return TokenData(stream, vocabulary, raw.tokenizer, dict(raw.cleaning), raw.seq_len, split, raw.name, max_offset, notes)

    def record(self, data: TokenData) -> dict:
        return {"text": {"tokens": data.tokenizer, "cleaning": dict(data.cleaning), "vocabulary": data.vocabulary.to_json()}}

    def check_record(self, record: dict, size: int, bad) -> None:
        text = record.get("text")
        if not isinstance(text, dict) or set(text) != {"tokens", "cleaning", "vocabulary"} or text["tokens"] not in TOKENIZERS:
            raise bad(f"text must hold tokens (one of {', '.join(TOKENIZERS)}), cleaning and vocabulary")
        cleaning = text["cleaning"]
        if not isinstance(cleaning, dict) or set(cleaning) != {"lowercase", "letters_only"} \
                or not all(isinstance(v, bool) for v in cleaning.values()):
            raise bad("text.cleaning must be {lowercase: true|false, letters_only: true|false}")
        if len(record["input_shape"]) != 1 or not whole(record["input_shape"][0]) or record.get("stored_shape") is not None:
            raise bad("input_shape must be [seq_len], the tokens of one window")
        if record.get("task") != LANGUAGE_MODEL:
            raise bad(f"a text's task is {LANGUAGE_MODEL}")
        try:
            Vocabulary.from_json(text["vocabulary"])
        except UserError as exc:
            raise bad(f"text.vocabulary: {exc}") from None

    def vocab_size(self, record: dict) -> int:
        return len(record["text"]["vocabulary"]["tokens"])

    def read_inputs(self, record: dict, source: Path, given: str, id_column: str | None):
        raise UserError(f"{given}: this run is a language model, which continues a text rather than labelling rows: "
                        "dl predict RUN --prompt \"some text\" --tokens 200")

    def verification_rows(self, data: TokenData, rows, shape: tuple[int, ...]):
        import torch  # noqa: PLC0415  (dl cache list runs without torch)

        batches = data.batches("test" if len(data.split.test) else "train", torch.device("cpu"))
        return batches.windows(batches.starts[torch.as_tensor(rows) % len(batches)])[0]

    def stand_in_rows(self, count: int, shape: tuple[int, ...], generator):
        import torch  # noqa: PLC0415  (dl cache list runs without torch)

        return torch.randint(2, 4, (count, *shape), generator=generator)  # ids every vocabulary has (at least 4 tokens)

    def export_takes(self, record: dict, shape: list) -> str:
        text = record["text"]
        return (f"int64 token ids, {shape[-1]} per window: the text cleaned as preprocessing.text.cleaning says, split into "
                f"{text['tokens']} tokens (dlcli.data.vocab.tokenize), each numbered by preprocessing.text.vocabulary (its "
                "position; unknown tokens 1); it returns the next token's logits at every position (batch, window, vocabulary)")


def too_short(raw: TextSource, part: str, tokens: int, split_cfg, fits: int | None = None) -> str:
    """Why a span cannot hold one window of data.seq_len tokens and its target, and what would:
    `fits`, the longest window every span holds."""
    share = {"train": "what split.val and split.test leave", "val": f"split.val={split_cfg.val}",
             "test": f"split.test={split_cfg.test}"}[part]
    fits = tokens - 1 if fits is None else fits
    more = {"train": "smaller split.val and split.test", "val": "a larger split.val", "test": "a larger split.test"}[part]
    fix = f"data.seq_len={fits} or less, {more}, or a longer text" if fits >= 1 else f"a longer text, or {more}"
    return (f"data.seq_len={raw.seq_len} is longer than the {part} span of {raw.name} ({tokens:,} of its {len(raw.tokens):,} "
            f"{raw.tokenizer} tokens, {share}), which must hold a window and its next token: use {fix}")
