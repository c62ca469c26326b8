"""Seeded, stratified train/val/test splits, recorded so `dl eval` rebuilds the same test set."""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass

import numpy as np

from dlcli.config.schema import CONSTRAINTS
from dlcli.config.constraints import check
from dlcli.errors import UserError, first_line

PARTS = ("train", "val", "test")


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def part(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def record(self) -> dict:
        """What split.json holds: sizes and a hash of each part's (sorted) indices."""
        return {
            "sizes": {p: int(len(self.part(p))) for p in PARTS},
            "hashes": {p: index_hash(self.part(p)) for p in PARTS},
        }


def index_hash(indices: np.ndarray) -> str:
    return hashlib.sha256(np.sort(np.asarray(indices, dtype=np.int64)).tobytes()).hexdigest()[:16]


def split_dataset(
    num_samples: int,
    val: float,
    test: float,
    seed: int,
    stratify_by: np.ndarray | None = None,
    fixed_test: np.ndarray | None = None,
    kfold: int | None = None,
    fold: int | None = None,
) -> Split:
    """Indices of the train, val and test parts; the same inputs always give the same split.

    `fixed_test` keeps a dataset's official test split (then `test` is unused). With `kfold`=K,
    the samples outside the test part are cut into K folds and fold `fold` (1..K) is validation.
    """
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split  # noqa: PLC0415  (dl cache list runs without sklearn)

    for name, value in (("split.val", val), ("split.test", test)):
        check(name, value, CONSTRAINTS[name])  # (checked with the config already; here for the Python API)
    if fixed_test is None and kfold is None and val + test >= 1.0:
        raise UserError(f"split.val + split.test = {val + test:g} leaves nothing to train on: keep the sum below 1")
    indices = np.arange(num_samples)
    _check_enough_rows(num_samples, val, test, stratify_by, fixed_test, kfold)
    try:
        if fixed_test is not None:
            test_idx = np.asarray(fixed_test)
            rest = np.setdiff1d(indices, test_idx)
        elif test > 0:
            rest, test_idx = train_test_split(indices, test_size=test, random_state=seed, stratify=_labels(stratify_by, indices))
        else:
            rest, test_idx = indices, indices[:0]
        if kfold is not None:
            splitter = (StratifiedKFold if stratify_by is not None else KFold)(n_splits=kfold, shuffle=True, random_state=seed)
            folds = list(splitter.split(rest, _labels(stratify_by, rest)))
            train_pos, val_pos = folds[fold - 1]
            train_idx, val_idx = rest[train_pos], rest[val_pos]
        else:
            val_share = val if fixed_test is not None else val / (1.0 - test)
            if val_share > 0:
                train_idx, val_idx = train_test_split(rest, test_size=val_share, random_state=seed, stratify=_labels(stratify_by, rest))
            else:  # no validation split (a refit): every non-test row trains
                train_idx, val_idx = rest, rest[:0]
    except ValueError as exc:
        detail = _cap_lists(first_line(exc, limit=10**6))  # the lists are capped there
        hint = " (set split.stratify=false, or use larger split fractions)" if stratify_by is not None else ""
        raise UserError(f"cannot split {num_samples} samples with val={val}, test={test}: {detail}{hint}") from None
    return Split(train=np.sort(train_idx), val=np.sort(val_idx), test=np.sort(test_idx))


def _check_enough_rows(num_samples: int, val: float, test: float, stratify_by, fixed_test, kfold: int | None) -> None:
    """The relations between the split settings and the data, said in its terms before scikit-learn
    says them in its own: a stratified split needs two rows of every class, k folds need k rows
    (of every class, when stratified) outside the test part."""
    if stratify_by is not None:
        classes, counts = np.unique(stratify_by, return_counts=True)
        rarest = int(counts.min())
        if rarest < 2 and (test > 0 or val > 0 or kfold is not None):
            lonely = classes[counts < 2]
            which = f"class {lonely[0]} has" if len(lonely) == 1 else f"classes {listed(lonely)} have"
            raise UserError(f"{which} only one row, and a stratified split needs at least two rows of every class: "
                            "set split.stratify=false, or give the rare classes more rows")
    if kfold is None:
        return
    outside_test = num_samples - (len(fixed_test) if fixed_test is not None else int(np.ceil(test * num_samples)))
    if stratify_by is not None:
        rarest = int(np.unique(stratify_by, return_counts=True)[1].min())
        most = min(rarest - (1 if test > 0 else 0), outside_test)  # the test part takes about one row of the rarest class
        if kfold > most:
            raise UserError(f"split.kfold={kfold} needs {kfold} rows of every class outside the test split, and the rarest "
                            f"class has about {max(most, 0)}: choose split.kfold={max(2, min(5, most))} (at most {max(most, 2)}), "
                            "or split.stratify=false")
    elif kfold > outside_test:
        raise UserError(f"split.kfold={kfold} needs {kfold} rows outside the test split, and there are {outside_test}: "
                        f"choose split.kfold={min(5, outside_test)} (at most {outside_test})")


def _labels(stratify_by: np.ndarray | None, rows: np.ndarray):
    return None if stratify_by is None else stratify_by[rows]


def listed(items, limit: int = 5) -> str:
    """Items for a message, never hundreds of them: `a, b, c, d, e, ... (270 in all)`."""
    items = [str(item) for item in items]
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])}, ... ({len(items)} in all)"


def _cap_lists(message: str, limit: int = 5) -> str:
    """scikit-learn lists every rare class in its message (`Classes with too few members are:
    ['101141.0', ...]`): keep the first few and the count."""

    def cap(match: re.Match) -> str:
        try:
            items = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            items = [item.strip() for item in match.group(1).split(",")]
        return f"[{listed(items, limit)}]" if len(items) > limit else match.group(0)

    return re.sub(r"\[([^\[\]]*)\]", cap, message)
