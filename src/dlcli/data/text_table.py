"""A text column of a user's CSV (data=csv data.text=COLUMN: reviews, titles) as what the source
returns: the column's raw texts and the targets, before anything is learned from them.

Tokens, the vocabulary and the padding are the text-column modality's (dlcli.data.modalities.
text_column): the vocabulary is learned from the train rows, which are known only after the split.
Only the text column is read: the table's other columns are not mixed in (the run log names them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlcli.data.split import listed
from dlcli.data.vocab import tokenize
from dlcli.errors import UserError


@dataclass
class TextTable:
    texts: np.ndarray  # one str per row (an empty cell is "")
    targets: np.ndarray
    task: str
    name: str
    text_name: str  # the column the texts come from, which `dl predict` reads
    lowercase: bool = False  # the texts are lowercased before they are tokenized (data.lowercase)
    notes: list[str] = field(default_factory=list)
    target_name: str | None = None
    id_columns: list[str] = field(default_factory=list)


def text_cells(column, name: str) -> np.ndarray:
    """The cells of a CSV's text column as str ("" for an empty one), refused in one line when
    the column holds numbers only or no text at all (`name`: the column, `file` in messages)."""
    import pandas as pd  # noqa: PLC0415  (dl cache list runs without pandas)

    filled = column.dropna()
    if len(filled) == 0 or not filled.astype(str).str.strip().any():
        raise UserError(f"data.text={column.name} of {name} holds no text (every cell is empty): name a column of text")
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column) or pd.to_numeric(filled, errors="coerce").notna().all():
        raise UserError(f"data.text={column.name} of {name} holds numbers, not text: name a column of text "
                        "(reviews, titles), or train on the table without data.text")
    return as_texts(column)


def tokens_of(text, tokens: str, lowercase: bool) -> list[str]:
    """One text's tokens (dlcli.data.vocab.tokenize: char or word), lowercased first with data.lowercase."""
    return tokenize(str(text).lower() if lowercase else str(text), tokens)


def text_tokens(texts, tokens: str, lowercase: bool) -> list[list[str]]:
    return [tokens_of(text, tokens, lowercase) for text in texts]


def as_texts(column) -> np.ndarray:
    """A column's cells as str, an empty cell as "" (what `dl predict` reads, unchecked: a new
    review may well be "5" or blank)."""
    return column.astype(object).where(column.notna(), "").map(str).to_numpy(dtype=object)


def text_table(table, text: str, target: str, targets: np.ndarray, task: str, file, notes: list[str], drop: list[str],
               lowercase: bool = False) -> TextTable:
    """The source's answer for data.text=`text`: that column's texts, the targets as the table's
    source read them, and a note naming the columns that are not read."""
    if text not in table.columns:
        raise UserError(f"data.text={text} is not a column of {file.name}: columns are {listed(list(table.columns), 12)}")
    if text == target:
        raise UserError(f"data.text={text} is the target column: name the column of text the target is predicted from")
    if text in drop:
        raise UserError(f"data.drop lists {text}, the text column the run reads: leave it out of data.drop")
    unread = [c for c in table.columns if c not in (text, target, *drop)]
    if unread:
        notes = [*notes, f"the model reads only the text column '{text}'; other columns are not used: {listed(unread)} "
                         "(train on them without data.text)"]
    return TextTable(texts=text_cells(table[text], file.name), targets=targets, task=task, name=file.stem, text_name=text,
                     lowercase=lowercase, notes=notes, target_name=str(target), id_columns=[str(c) for c in drop])
