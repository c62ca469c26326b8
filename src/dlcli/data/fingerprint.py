"""A short fingerprint of a data set's content, as its source returned it (before any split or
encoding), recorded in a new run's summary.json so that `dl runs diff` can tell two runs trained on
different data from two trained on the same data with other settings.

What is hashed is every array, table or list of texts the source returned (the fields of its
dataclass: RawData's features and targets, an ImageSet's pixels, a series' values, a text's tokens),
each under its field's name, with pandas' hashing (one well-kept way to hash numbers, text and
mixed columns alike). A folder of images read from disk is fingerprinted by its files' names and
sizes: reading every image once more would cost as much as an epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd


def content_fingerprint(raw) -> str | None:
    """16 hex digits that change when the data's content does; None for a source that is not a
    dataclass (a data set of someone's own that returns something else: nothing to say about it)."""
    if not dataclasses.is_dataclass(raw):
        return None
    digest = hashlib.blake2b(digest_size=8)
    for field in dataclasses.fields(raw):
        hashed = _field_hash(getattr(raw, field.name))
        if hashed is not None:
            digest.update(field.name.encode())
            digest.update(hashed)
    return digest.hexdigest()


def _field_hash(value) -> bytes | None:
    """The bytes that stand for one field's content, or None for a field that is not data (a name, notes)."""
    if isinstance(value, pd.DataFrame):
        return _hashed_rows(pd.util.hash_pandas_object(value, index=False), list(map(str, value.columns)))
    from dlcli.data.images import ImageFiles  # noqa: PLC0415  (it imports torch; dl cache list reads dlcli.data without it)

    if isinstance(value, ImageFiles):
        return _listing_hash(value)
    if hasattr(value, "numpy") and hasattr(value, "shape"):  # a torch tensor (images held in memory)
        value = value.numpy(force=True)
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        # a text's tokens, as one JSON list (unambiguous, encoded in C) hashed at once: a hash per
        # token cost 0.2 s on a 200,000-token text
        return hashlib.blake2b(json.dumps(value).encode(), digest_size=16).digest() + b"tokens"
    if isinstance(value, np.ndarray) and value.size:
        flat = np.ascontiguousarray(value).reshape(-1)
        if flat.dtype.kind in "biufc":  # numbers: their bytes, without a per-value hash
            return hashlib.blake2b(memoryview(flat).cast("B"), digest_size=16).digest() + str(value.shape).encode()
        return _hashed_rows(pd.util.hash_array(flat.astype(object)), [str(value.shape)])
    return None  # not data (a name, notes), or a data set of someone's own read on demand: its content is not known here


def _hashed_rows(row_hashes, names: list[str]) -> bytes:
    digest = hashlib.blake2b(np.asarray(row_hashes, dtype=np.uint64).tobytes(), digest_size=16)
    digest.update("\0".join(names).encode())
    return digest.digest()


def _listing_hash(files) -> bytes:
    """Each image's path below the folder and its size in bytes, in the listing's order, with its label."""
    digest = hashlib.blake2b(digest_size=16)
    root = Path(files.root) if files.root is not None else None
    for path, label in zip(files.paths, files.labels):
        name = os.path.relpath(path, root) if root is not None else Path(path).name
        digest.update(f"{name}\0{os.path.getsize(path)}\0{int(label)}\n".encode())
    return digest.digest()
