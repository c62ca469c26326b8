"""Reading a user's CSV: one reader for training tables (data=csv) and for the rows `dl predict`
is given, so both refuse the same things in one line: an unreadable file (not UTF-8, broken
quoting), a header that names a column twice (pandas would silently rename it `a.1`), no rows."""

from __future__ import annotations

import csv
from pathlib import Path

from dlcli.constraints import show
from dlcli.errors import UserError, first_line

HEADER_BYTES = 1 << 20  # a header line longer than this is no table's


def read_csv(path: Path, what: str, text_columns=()):
    """The table at `path` (`what` names it in messages), with `text_columns` read as text."""
    import pandas as pd

    header = _header(path, what)
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise UserError(f"{what} names the column {show(twice[0])} {header.count(twice[0])} times: give each column "
                        "a name of its own")
    try:
        table = pd.read_csv(path, dtype={c: str for c in text_columns if c in header})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{what} is not a readable CSV: {first_line(exc)}") from None
    table.columns = [str(c) for c in table.columns]
    return table


def _header(path: Path, what: str) -> list[str]:
    try:
        with open(path, "rb") as file:
            line = file.readline(HEADER_BYTES + 1)
    except OSError as exc:
        raise UserError(f"{what} cannot be read: {exc.strerror or exc}") from None
    if len(line) > HEADER_BYTES:
        raise UserError(f"{what} has a first line longer than {HEADER_BYTES // 1024} KB: not a CSV header")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{what} is not UTF-8 text: save it as UTF-8 (its first line has other bytes)") from None
    if not text.strip():
        raise UserError(f"{what} is empty: a CSV needs a header line and rows")
    return next(csv.reader([text.rstrip("\r\n")]), [])
