"""Reading a user's CSV: one reader for training tables (data=csv) and for the rows `dl predict`
is given, so both refuse the same things in one line: an unreadable file (not UTF-8, broken
quoting), a header that names a column twice (pandas would silently rename it `a.1`), no rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from dlcli.config.constraints import FLOAT32_MAX, show  # dl trains in float32: a larger number becomes infinite
from dlcli.errors import UserError, first_line

HEADER_BYTES = 1 << 20  # a header line longer than this is no table's


def check_numbers(values, column: str, name: str, fix: str, lines=None) -> None:
    """A numeric column's values must be finite in float32; else one line naming the first bad
    cell by its line in the file (`lines`: each value's, when rows were dropped; `fix`: what the
    user can do about it)."""
    numbers = np.asarray(values, dtype=np.float64)
    beyond = ~np.isnan(numbers) & ~(np.abs(numbers) <= FLOAT32_MAX)  # inf, or too large for float32
    if beyond.any():
        index = int(np.argmax(beyond))
        what = "an infinite value" if np.isinf(numbers[index]) else f"{numbers[index]:g}, beyond float32's range (±3.4e38)"
        line = int(lines[index]) if lines is not None else index + 2  # 1-based, after the header
        raise UserError(f"column '{column}' of {name} holds {what} (line {line}): {fix}")


def read_csv_file(path: str, example: str):
    """The file named by data.path and its table (read_csv); `example` names a file for the message
    when a folder is given."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise UserError(f"data.path={show(path)} is a directory, not a CSV file: give the file itself, e.g. data.path={file / example}")
    if not file.is_file():
        raise UserError(f"data.path={show(path)}: no such file")
    return file, read_csv(file, f"data.path={show(path)}")


def read_csv(path: Path, what: str, text_columns=()):
    """The table at `path` (`what` names it in messages), with `text_columns` read as text."""
    import pandas as pd  # noqa: PLC0415  (dl cache list runs without pandas)

    header = _header(path, what)
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise UserError(f"{what} names the column {show(twice[0])} {header.count(twice[0])} times: give each column "
                        "a name of its own")
    try:
        table = pd.read_csv(path, dtype={c: str for c in text_columns if c in header})
    except UnicodeDecodeError:
        raise UserError(f"{what} is not UTF-8 text: line {_first_line_not_utf8(path)} has other bytes (save the file as UTF-8)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise UserError(f"{what} is not a readable CSV: {first_line(exc)}") from None
    table.columns = [str(c) for c in table.columns]
    return table


def _first_line_not_utf8(path: Path) -> int:
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1


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
