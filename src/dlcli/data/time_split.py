"""A series split by time: windows of `window` past steps and `horizon` steps to forecast, the
last spans of the series for validation and test, folds that grow forward in time.

Window i holds the steps i .. i + window + horizon - 1 (what it reads, then what it forecasts).
The series is cut into contiguous spans (train, then val, then test) and a window belongs to a part
only when every step it holds lies in that part's span, so a window that would straddle a
boundary belongs to none: no value of the validation or test spans is ever inside a training
window, not even as the target of its last steps.
"""

from __future__ import annotations

import numpy as np

from dlcli.config.constraints import Interval, check
from dlcli.config.schema import CONSTRAINTS
from dlcli.data.split import Split
from dlcli.errors import UserError, first_line


def window_count(length: int, window: int, horizon: int) -> int:
    """How many windows of `window` + `horizon` steps a series of `length` steps holds."""
    return max(length - window - horizon + 1, 0)


def time_split(length: int, window: int, horizon: int, val: float, test: float, kfold: int | None = None,
               fold: int | None = None) -> Split:
    """The windows of each part (their first step's index, in time order). With `kfold`=K the
    windows before the test span are cut into K expanding-window folds (scikit-learn's
    TimeSeriesSplit): fold k validates on the k-th span after the first and trains on every window
    before it."""
    for name, value in (("split.val", val), ("split.test", test)):
        check(name, value, CONSTRAINTS[name])
    span = window + horizon
    if span > length:
        raise UserError(f"data.window + data.horizon = {window} + {horizon} steps is longer than the series ({length} steps): "
                        "shorten them, or give a longer series")
    if kfold is None and val + test >= 1.0:
        raise UserError(f"split.val + split.test = {val + test:g} leaves nothing to train on: keep the sum below 1")
    test_start = length - int(round(test * length))  # the first step of the test span
    starts = np.arange(window_count(length, window, horizon))
    ends = starts + span  # one past each window's last step
    before_test = starts[ends <= test_start]
    if kfold is not None:
        train, val_windows = _expanding_fold(before_test, span, kfold, 1 if fold is None else fold)
    else:
        val_start = test_start - int(round(val * length))
        train = starts[ends <= val_start]
        if len(train) == 0:
            raise UserError(f"data.window + data.horizon = {span} steps is longer than the training span ({val_start} steps: "
                            f"the first {1 - val - test:g} of {length}): shorten the windows, or lower split.val and split.test")
        val_windows = before_test[before_test >= val_start]
        if val > 0 and len(val_windows) == 0:
            raise UserError(f"the validation span ({test_start - val_start} steps, split.val={val:g}) is shorter than "
                            f"data.window + data.horizon = {span}: raise split.val, or shorten the windows")
    test_windows = starts[starts >= test_start]
    if test > 0 and len(test_windows) == 0:
        raise UserError(f"the test span ({length - test_start} steps, split.test={test:g}) is shorter than data.window + "
                        f"data.horizon = {span}: raise split.test, or shorten the windows")
    return Split(train=train, val=val_windows, test=test_windows)


def _expanding_fold(windows: np.ndarray, span: int, kfold: int, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold `fold` of scikit-learn's TimeSeriesSplit over the windows before the test span, with a
    gap of span - 1 windows between train and validation so that no training window reaches a
    step a validation window holds."""
    from sklearn.model_selection import TimeSeriesSplit  # noqa: PLC0415  (dl cache list runs without sklearn)

    check("split.fold", fold, Interval(1, kfold, integer=True))
    try:
        folds = list(TimeSeriesSplit(n_splits=kfold, gap=span - 1).split(windows))
    except ValueError as exc:
        raise UserError(f"split.kfold={kfold} cannot cut the {len(windows)} windows before the test span into expanding folds "
                        f"({first_line(exc)}): choose fewer folds, or shorter windows") from None
    train, val = folds[fold - 1]
    return windows[train], windows[val]
