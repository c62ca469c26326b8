"""Float sequences in time order (data=sine, data=timeseries): the sources, each returning a
SeriesRaw (every value of the chosen columns, oldest first, before any fitting).

A series is read whole and checked whole here: a column that is not numeric, a missing value (by
its line in the file), a column that is not there, a series too short for its windows are each one
line naming the value. How it is cut into windows, split by time and scaled on the training span
is the series modality's (dlcli.data.modalities.series, with dlcli.data.time_split).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlcli.config.constraints import (
    NON_NEGATIVE,
    SEED,
    Interval,
    ListOf,
    Text,
    constrained,
    nullable,
    one_of,
    show,
)
from dlcli.data.split import listed
from dlcli.data.tables import check_numbers, read_csv_file
from dlcli.errors import UserError

WINDOW = Interval(1, 100_000, integer=True)  # past steps a forecast reads
HORIZON = Interval(1, 10_000, integer=True)  # steps it predicts
COLUMNS = nullable(ListOf(Text(non_empty=True), 1, 10_000))


@dataclass
class SeriesRaw:
    """A series as read: `inputs` (T, C) are the columns the model reads, `outputs` (T, K) the ones
    it forecasts (often the same), one row per time step, oldest first."""

    inputs: np.ndarray  # float64 (T, C)
    outputs: np.ndarray  # float64 (T, K)
    columns: list[str]  # the C input columns
    target_columns: list[str]  # the K forecast columns
    window: int
    horizon: int
    name: str
    time: str | None = None  # the column that orders the rows (null: the file's order)
    task: str = "regression"  # a forecast is a regression of horizon x K values
    notes: list[str] = field(default_factory=list)

    @property
    def target_name(self) -> str:
        return ",".join(self.target_columns)


@constrained(num_points=Interval(10, 10_000_000, integer=True), noise=NON_NEGATIVE, frequency=Interval(0, None, closed="neither"),
             window=WINDOW, horizon=HORIZON, seed=SEED)
def make_sine(num_points: int = 1000, noise: float = 0.2, frequency: float = 0.01, window: int = 4, horizon: int = 1,
              seed: int = 0) -> SeriesRaw:
    """x_t = sin(frequency * t) + N(0, noise^2) for t = 1..num_points: the noisy sine the course
    starts its sequence chapter with (1000 points, predict the next value from the previous 4)."""
    rng = np.random.default_rng(seed)
    time = np.arange(1, num_points + 1, dtype=np.float64)
    values = (np.sin(frequency * time) + rng.normal(0.0, noise, size=num_points))[:, None]
    return SeriesRaw(inputs=values, outputs=values, columns=["x"], target_columns=["x"], window=window, horizon=horizon,
                     name="sine")


@constrained(path=Text(non_empty=True), columns=COLUMNS, time=nullable(Text(non_empty=True)),
             target=nullable(one_of(Text(non_empty=True), ListOf(Text(non_empty=True), 1, 10_000))), window=WINDOW, horizon=HORIZON)
def load_timeseries(path: str, columns: list[str] | None = None, time: str | None = None, target: str | list[str] | None = None,
                    window: int = 24, horizon: int = 1) -> SeriesRaw:
    """A user's series: one row per time step (in file order, or ordered by the `time` column);
    the model reads `columns` (null: every column but `time`) and forecasts `target` (null: the
    same columns)."""
    file, table = read_csv_file(path, "series.csv")
    if len(table) == 0:
        raise UserError(f"data.path={show(path)} has a header but no rows: a series needs its values")
    lines = np.arange(len(table)) + 2  # each row's line in the file (1-based, after the header)
    if time is not None:
        table, lines = in_time_order(table, lines, time, file.name)
    inputs = list(columns) if columns is not None else [c for c in table.columns if c != time]
    targets = [target] if isinstance(target, str) else list(target) if target is not None else list(inputs)
    for key, names in (("data.columns", inputs), ("data.target", targets)):
        missing = [c for c in names if c not in table.columns]
        if missing:
            raise UserError(f"{key} names {listed(missing)}, not a column of {file.name}: columns are {listed(table.columns, 12)}")
        if time is not None and time in names:
            raise UserError(f"{key} lists the time column {time}: it orders the rows, and is never a value to read or forecast")
        repeated = next((c for i, c in enumerate(names) if c in names[:i]), None)
        if repeated is not None:  # read twice, it would be forecast twice, two forecasts of one column
            raise UserError(f"{key} lists {repeated} twice: name each column once")
    if not inputs:
        raise UserError(f"{file.name} has no column but data.time={time}: a series needs a column of values")
    values = {c: numeric_column(table[c], c, file.name, lines, columns is None) for c in dict.fromkeys(inputs + targets)}
    return SeriesRaw(inputs=np.stack([values[c] for c in inputs], axis=1), outputs=np.stack([values[c] for c in targets], axis=1),
                     columns=inputs, target_columns=targets, window=window, horizon=horizon, name=file.stem, time=time)


def in_time_order(table, lines: np.ndarray, time: str, name: str):
    """The rows ordered by the `time` column (numbers, or dates pandas can read), ties kept in file order."""
    import pandas as pd  # noqa: PLC0415  (dl cache list runs without pandas)

    if time not in table.columns:
        raise UserError(f"data.time={time} is not a column of {name}: columns are {listed(table.columns, 12)}")
    stamps = table[time]
    if not pd.api.types.is_numeric_dtype(stamps):
        stamps = pd.to_datetime(stamps, errors="coerce", format="mixed")
    missing = stamps.isna().to_numpy()
    if missing.any():
        line = int(lines[int(np.argmax(missing))])
        raise UserError(f"column '{time}' of {name} holds {table[time].iloc[int(np.argmax(missing))]!r} (line {line}), "
                        "which is not a time or a number: data.time orders the rows, so every row needs one")
    order = np.argsort(stamps.to_numpy(), kind="stable")
    return table.iloc[order].reset_index(drop=True), lines[order]


def numeric_column(column, name: str, file: str, lines: np.ndarray, chosen_by_default: bool) -> np.ndarray:
    """A column's values as float64, or one line naming the first value that is not a number."""
    import pandas as pd  # noqa: PLC0415  (dl cache list runs without pandas)

    numbers = pd.to_numeric(column, errors="coerce")
    empty = column.isna().to_numpy()
    if empty.any():
        raise UserError(f"column '{name}' of {file} has no value on line {int(lines[int(np.argmax(empty))])}: a series needs "
                        "a value at every step (fill the gap, e.g. with the previous value)")
    text = numbers.isna().to_numpy()
    if text.any():
        hint = "; choose the value columns with data.columns=[...]" if chosen_by_default else ""
        raise UserError(f"column '{name}' of {file} is not numeric: it holds {column.iloc[int(np.argmax(text))]!r} "
                        f"(line {int(lines[int(np.argmax(text))])}){hint}")
    values = numbers.to_numpy(dtype=np.float64)
    check_numbers(values, name, file, "a series needs finite numbers", lines)
    return values
