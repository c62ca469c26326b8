"""A text column of a CSV (data=csv data.text=COLUMN: reviews, titles) for classification or
regression: each text tokenized (data.tokens, words by default), numbered by the vocabulary of the
train rows (data.vocab_size caps it; the rest is <unk>), cut to data.max_len tokens (its longest
train text when unset) and right-padded with 0 (dlcli.data.text_rows). `dl predict` reads the same
column of a new CSV with the run's saved vocabulary; an exported file takes the token ids.
"""

from __future__ import annotations

from pathlib import Path

from dlcli.data.modality import Modality, register
from dlcli.data.new_inputs import NewInputs, id_values, read_table
from dlcli.data.preprocess import encode_targets
from dlcli.data.split import listed
from dlcli.data.text_rows import TextData, TextEncoding, text_tokens
from dlcli.data.text_table import TextTable, as_texts
from dlcli.data.vocab import TOKENIZERS
from dlcli.errors import UserError

# its own settings, and the table's that data=csv sets by default and that still apply (the target's)
TEXT_SETTINGS = ("tokens", "vocab_size", "max_len")
KEPT_TABLE_SETTINGS = ("standardize", "standardize_target")  # data.standardize has no numeric column to act on


@register
class TextColumnModality(Modality):
    kind = TextEncoding.kind
    source_type = TextTable
    settings = (*TEXT_SETTINGS, *KEPT_TABLE_SETTINGS)
    applies_to = "text (data=csv data.text=COLUMN)"
    is_a = "a text column"
    input_dtype = "int64"

    def setting_hint(self, key: str) -> str:
        return " (the texts are read as sequences of tokens already)" if key == "as_sequence" else ""

    def prepare(self, raw: TextTable, split, options: dict, placement) -> TextData:
        tokens = options.get("tokens") or "word"
        pieces = text_tokens(raw.texts, tokens, raw.lowercase)
        train_pieces = [pieces[row] for row in split.train]
        encoding = TextEncoding.fit(train_pieces, raw.text_name, tokens, raw.lowercase, options.get("vocab_size"),
                                    options.get("max_len"))
        targets, class_names, scaler = encode_targets(raw, split.train, bool(options.get("standardize_target", False)),
                                                      str(options.get("target_transform") or "none"))
        longest = "" if options.get("max_len") else " (the longest train text; data.max_len=N sets it)"
        notes = [*raw.notes, f"column '{raw.text_name}' as {tokens} tokens{' (lowercased)' if raw.lowercase else ''}: a vocabulary of {len(encoding.vocabulary)} "
                             f"from the train rows (<pad> and <unk> included), {encoding.length} tokens per text{longest}",
                 *encoding.notes(pieces), *([] if options.get("max_len") else encoding.length_advice(train_pieces))]
        return TextData(ids=encoding.ids(pieces), texts=raw.texts, targets=targets, split=split, task=raw.task,
                        name=raw.name, encoding=encoding, num_outputs=len(class_names) if class_names else 1,
                        class_names=class_names, target_scaler=scaler, notes=notes,
                        target_name=raw.target_name or ("label" if raw.task == "classification" else "target"),
                        id_columns=list(raw.id_columns))

    def record(self, data: TextData) -> dict:
        return {"text": data.encoding.to_json()}

    def check_record(self, record: dict, size: int, bad) -> None:
        text = record.get("text")
        keys = {"kind", "column", "tokens", "lowercase", "vocabulary"}
        if not isinstance(text, dict) or set(text) != keys or text["kind"] != self.kind:
            raise bad(f"text must be a text column's encoding ({', '.join(sorted(keys))})")
        if not isinstance(text["column"], str) or text["tokens"] not in TOKENIZERS or not isinstance(text["lowercase"], bool):
            raise bad(f"text.column must name a column, text.tokens be one of {', '.join(TOKENIZERS)} and text.lowercase true or false")
        if record["input_shape"] != [size] or record.get("stored_shape") is not None:
            raise bad("input_shape must be one length: the tokens of a text")
        try:
            TextEncoding.from_json(text, size)
        except UserError as exc:
            raise bad(f"text.vocabulary: {exc}") from None

    def vocab_size(self, record: dict) -> int | None:
        return len(record["text"]["vocabulary"]["tokens"])

    def read_inputs(self, record: dict, source: Path, given: str, id_column: str | None) -> NewInputs:
        encoding = TextEncoding.from_json(record["text"], record["input_shape"][0])
        if source.is_dir() or source.suffix.lower() == ".npy":
            raise UserError(f"{given} is a {'folder' if source.is_dir() else '.npy array'}, but the run was trained on "
                            f"the text column '{encoding.column}' of a CSV: give a CSV file with that column")
        table = read_table(source, text_columns=[encoding.column])
        if encoding.column not in table.columns:
            raise UserError(f"{source.name} lacks the column '{encoding.column}' the run reads its texts from "
                            f"(columns are {listed(table.columns, 12)})")
        ids, notes = encoding.encode(as_texts(table[encoding.column]))
        ids_column = id_values(table, source.name, id_column, record.get("id_columns", []))
        return NewInputs(len(ids), lambda size: _token_batches(ids, size), ids=ids_column, notes=notes)

    def verification_rows(self, data: TextData, rows, shape: tuple[int, ...]):
        import torch  # noqa: PLC0415  (dl cache list runs without torch)

        return torch.as_tensor(data.ids[rows], dtype=torch.long)

    def stand_in_rows(self, count: int, shape: tuple[int, ...], generator):
        import torch  # noqa: PLC0415  (dl cache list runs without torch)

        # texts of random lengths (at least one token) of known tokens, right-padded with <pad>
        ids = torch.randint(2, 4, (count, *shape), generator=generator)
        lengths = torch.randint(1, shape[0] + 1, (count, 1), generator=generator)
        return ids.masked_fill(torch.arange(shape[0]) >= lengths, 0)

    def export_takes(self, record: dict, shape: list) -> str:
        text = record["text"]
        return (f"int64 token ids of column '{text['column']}', {shape[-1]} per text: the text split into {text['tokens']} "
                "tokens (dlcli.data.vocab.tokenize), each numbered by preprocessing.text.vocabulary (its position; "
                "unknown tokens 1), cut to that length and right-padded with 0; the tokenizer is not included")


def _token_batches(ids, size: int):
    import torch  # noqa: PLC0415  (dl cache list runs without torch)

    x = torch.as_tensor(ids, dtype=torch.long)
    for start in range(0, len(x), size):
        yield x[start : start + size]
