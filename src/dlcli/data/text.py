"""Text for language modelling: a UTF-8 file (or a folder of .txt files, read in sorted order), or
H. G. Wells' The Time Machine as the classic course uses it, tokenized into one stream.

What the source returns is the whole stream of tokens; the split into contiguous spans, the
vocabulary (learned from the training span only) and the windows a model reads belong to the text
modality (dlcli.data.modalities.text). The cleaning applied here (lowercase, letters only) is
recorded in the run, so that `dl predict --prompt` cleans a prompt the same way.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dlcli.config.constraints import BOOLEAN, Interval, Text, constrained, show
from dlcli.data.vocab import tokenize
from dlcli.errors import UserError

LANGUAGE_MODEL = "language_model"
NOT_LETTERS = re.compile(r"[^A-Za-z]+")
TIMEMACHINE_URL = "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt"
TIMEMACHINE_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"
TIMEMACHINE_FILE = "timemachine.txt"


@dataclass
class TextSource:
    """A text as one stream of tokens, before anything is learned from it."""

    tokens: list[str]
    tokenizer: str  # char | word (dlcli.data.vocab.tokenize)
    seq_len: int  # tokens per window the model reads
    name: str
    cleaning: dict  # {lowercase, letters_only}: what was done to the text before tokenizing
    notes: list[str] = field(default_factory=list)
    task: str = LANGUAGE_MODEL


def clean(text: str, lowercase: bool, letters_only: bool) -> str:
    """The course's cleaning of The Time Machine: every run of characters that are not ASCII
    letters becomes one space (letters_only), and the letters are lowercased (lowercase)."""
    if letters_only:
        text = NOT_LETTERS.sub(" ", text)
    return text.lower() if lowercase else text


@constrained(path=Text(non_empty=True), seq_len=Interval(1, 1_000_000, integer=True), lowercase=BOOLEAN, letters_only=BOOLEAN)
def load_text(path: str, seq_len: int = 35, tokens: str | None = "char", lowercase: bool = False,
              letters_only: bool = False) -> TextSource:
    """A text of your own for language modelling: `path` is a UTF-8 file or a folder of .txt files."""
    files = text_files(path)
    text = "".join(read_utf8(file, path) for file in files)
    name = files[0].stem if len(files) == 1 else Path(path).expanduser().name
    return text_source(text, tokens, seq_len, name, f"data.path={show(path)}", lowercase, letters_only)


@constrained(root=Text(non_empty=True), seq_len=Interval(1, 1_000_000, integer=True), download=BOOLEAN,
             lowercase=BOOLEAN, letters_only=BOOLEAN)
def load_timemachine(root: str = "~/.cache/dlcli/datasets", download: bool = True, seq_len: int = 35,
                     tokens: str | None = "char", lowercase: bool = True, letters_only: bool = True) -> TextSource:
    """H. G. Wells' The Time Machine (the d2l course's copy), downloaded once into `root` and
    checked against its SHA-1; `root` may instead hold a copy of the file made elsewhere."""
    file = Path(root).expanduser() / TIMEMACHINE_FILE
    if not file.is_file():
        if not download:
            raise UserError(f"data=timemachine: no {file}: copy {TIMEMACHINE_URL} there, or set data.download=true")
        fetch_checked(TIMEMACHINE_URL, file, TIMEMACHINE_SHA1, "timemachine")
    return text_source(read_utf8(file, str(file)), tokens, seq_len, "timemachine", f"data=timemachine ({file})",
                       lowercase, letters_only)


def text_source(text: str, tokens: str | None, seq_len: int, name: str, where: str, lowercase: bool,
                letters_only: bool) -> TextSource:
    tokenizer = tokens or "char"
    cleaned = clean(text, lowercase, letters_only)
    stream = tokenize(cleaned, tokenizer)
    if not stream:
        kind = "letters" if letters_only else "characters" if tokenizer == "char" else "words"
        raise UserError(f"{where} holds no text ({len(text):,} characters, no {kind} to learn from): give a text file")
    cleaning = [*(["letters only"] if letters_only else []), *(["lowercased"] if lowercase else [])]
    notes = [f"{name}: {len(stream):,} {tokenizer} tokens" + (f" ({', '.join(cleaning)})" if cleaning else "")]
    return TextSource(stream, tokenizer, int(seq_len), name, {"lowercase": bool(lowercase), "letters_only": bool(letters_only)},
                      notes)


def text_files(path: str) -> list[Path]:
    """The file, or the .txt files of the folder (any depth) in sorted order."""
    given = Path(path).expanduser()
    if given.is_dir():
        files = sorted(p for p in given.rglob("*.txt") if p.is_file())
        if not files:
            raise UserError(f"data.path={show(path)} is a folder with no .txt files: give a text file, or a folder of .txt files")
        return files
    if not given.is_file():
        if given.exists():  # /dev/zero, a FIFO: reading it would never end
            raise UserError(f"data.path={show(path)} is not a regular file (a device, a FIFO): give a text file, or a folder of .txt files")
        raise UserError(f"data.path={show(path)}: no such file or folder")
    return [given]


def read_utf8(file: Path, given: str) -> str:
    """The file's text, its lines ending in \\n whatever wrote it, without a byte-order mark (the same
    text saved by Windows' Notepad gave other tokens: a '\\ufeff' and a '\\r' on every line); a file
    that is not UTF-8 (a binary file, a Latin-1 text) is one line."""
    data = file.read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise UserError(f"data.path={show(given)}: {file.name} is not UTF-8 text (byte {exc.start:,} is 0x{data[exc.start]:02x}): "
                        "give a UTF-8 text file (convert it with iconv -t UTF-8)") from None


def fetch_checked(url: str, file: Path, sha1: str, name: str) -> None:
    """Download `url` to `file` once: written beside it, checked against its SHA-1, then moved into
    place, so an interrupted or altered download never stands as the file."""
    file.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310  (a fixed https/http URL)
            out.write(response.read())
        digest = hashlib.sha1(Path(partial).read_bytes()).hexdigest()
        if digest != sha1:
            raise UserError(f"data={name}: the file downloaded from {url} has SHA-1 {digest}, not {sha1}: try again, or copy the "
                            f"original file to {file}")
        os.replace(partial, file)
    except OSError as exc:
        raise UserError(f"data={name}: could not download {url} into {file.parent} ({exc}): download it elsewhere and copy it "
                        f"to {file}, then set data.download=false") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
