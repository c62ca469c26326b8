"""A series in time order (data=sine, data=timeseries): windows of `window` past steps of its
columns (C x window, what the sequence models read) forecasting the next `horizon` steps of its
target columns; split by time (dlcli.data.time_split), every column standardized on the training
span only, scored beside persistence (dlcli.data.forecast).

`dl predict RUN series.csv [--horizon N]` forecasts the N steps after the end of the given series
from its last `window` steps: up to the trained horizon from one window; past it, one trained
horizon at a time, each forecast fed back as the newest steps (only when the model forecasts every
column it reads, else there is nothing to feed back).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcli.config.constraints import Interval, check
from dlcli.config.schema import CONSTRAINTS
from dlcli.data.forecast import PreparedSeries, SeriesEncoding, windows_of
from dlcli.data.modality import Modality, register
from dlcli.data.new_inputs import NewInputs, read_table
from dlcli.data.record import number, texts, whole
from dlcli.data.series import SeriesRaw, in_time_order, numeric_column
from dlcli.data.split import listed
from dlcli.data.time_split import time_split
from dlcli.errors import UserError

SERIES_KEYS = ("kind", "columns", "target_columns", "window", "horizon", "center", "scale", "target_center", "target_scale", "time")


@register
class SeriesModality(Modality):
    kind = "series"
    source_type = SeriesRaw
    applies_to = "series"
    is_a = "a series in time order"

    def split(self, raw: SeriesRaw, split_cfg):
        kfold, fold = split_cfg.get("kfold"), split_cfg.get("fold")
        if kfold is not None:  # (checked with the config already; here for the Python API, in the same words)
            check("split.kfold", kfold, CONSTRAINTS["split.kfold"])
            check("split.fold", 1 if fold is None else fold, Interval(1, kfold, integer=True))
        return time_split(len(raw.inputs), raw.window, raw.horizon, float(split_cfg.val), float(split_cfg.test), kfold, fold)

    def prepare(self, raw: SeriesRaw, split, options: dict, placement) -> PreparedSeries:
        span_end = int(split.train[-1]) + raw.window + raw.horizon  # one past the last step a training window holds
        encoding = SeriesEncoding.fit(raw, span_end)
        features, targets = windows_of(encoding.scale_inputs(raw.inputs), encoding.scale_outputs(raw.outputs), raw.window, raw.horizon)
        note = (f"split by time: {len(split.train)} training windows within steps 1-{span_end} (the columns' scaling is "
                f"fitted there), then {len(split.val)} validation and {len(split.test)} test windows after it; each window "
                f"reads {raw.window} steps and forecasts the next {raw.horizon}")
        return PreparedSeries(
            features=features, targets=targets, split=split, task="regression", name=raw.name,
            input_shape=(len(raw.columns), raw.window), num_outputs=raw.horizon * len(raw.target_columns),
            feature_names=list(raw.columns), target_scaler=encoding.target_scaler(), notes=[*raw.notes, note],
            encoding=encoding, target_name=raw.target_name, series=raw.outputs, window=raw.window, horizon=raw.horizon,
        )

    def record(self, data: PreparedSeries) -> dict:
        return {"series": data.encoding.to_json()}

    def check_record(self, record: dict, size: int, bad) -> None:
        series = record.get("series")
        if not isinstance(series, dict) or series.get("kind") != "series" or set(series) - set(SERIES_KEYS):
            raise bad(f"series must be a series encoding ({', '.join(SERIES_KEYS)})")
        columns, targets, window, horizon = (series.get(k) for k in ("columns", "target_columns", "window", "horizon"))
        if not (texts(columns) and columns and texts(targets) and targets):
            raise bad("series.columns and series.target_columns must list column names")
        if not (whole(window) and whole(horizon) and window >= 1 and horizon >= 1) or record["input_shape"] != [len(columns), window]:
            raise bad("series.window and series.horizon must be positive whole numbers, input_shape [columns, window]")
        for key, count in (("center", len(columns)), ("scale", len(columns)), ("target_center", len(targets)), ("target_scale", len(targets))):
            values = series.get(key)
            if not (isinstance(values, list) and len(values) == count and all(number(v) for v in values)):
                raise bad(f"series.{key} must list {count} numbers")
            if key.endswith("scale") and not all(v > 0 for v in values):
                raise bad(f"series.{key} must be positive")
        if series.get("time") is not None and not isinstance(series["time"], str):
            raise bad("series.time must name a column, or be null")

    def regression_outputs(self, record: dict) -> int:
        return record["series"]["horizon"] * len(record["series"]["target_columns"])

    def read_inputs(self, record: dict, source: Path, given: str, id_column: str | None) -> NewInputs:
        import torch  # noqa: PLC0415  (dl cache list runs without torch)

        if id_column is not None:
            raise UserError("--id names a column of ids, and a forecast's rows are the steps after the series: drop it")
        if source.is_dir():
            raise UserError(f"{given} is a folder, but the run forecasts a series: give its CSV file")
        encoding = SeriesEncoding.from_json(record["series"])
        inputs, outputs, notes = _history(encoding, source, given)
        last = torch.as_tensor(encoding.scale_inputs(inputs[-encoding.window:]).T[None], dtype=torch.float32)  # 1 x C x window

        def forecast(run_model, steps: int | None):
            return forecast_table(encoding, inputs, run_model, encoding.horizon if steps is None else steps)

        return NewInputs(rows=len(inputs), batches=lambda size: iter([last]), notes=notes, forecast=forecast)

    def verification_rows(self, data: PreparedSeries, rows, shape: tuple[int, ...]):
        import torch  # noqa: PLC0415  (dl cache list runs without torch)

        return torch.as_tensor(data.features[rows], dtype=torch.float32).reshape(-1, *shape)

    def stand_in_rows(self, count: int, shape: tuple[int, ...], generator):
        import torch  # noqa: PLC0415  (dl cache list runs without torch)

        return torch.randn(count, *shape, generator=generator)  # standardized steps live around this range

    def export_takes(self, record: dict, shape: list) -> str:
        series = record["series"]
        return (f"float32 windows (batch x {len(series['columns'])} columns x {series['window']} steps, oldest first) of the "
                f"columns {', '.join(series['columns'])}, each standardized with preprocessing.series center/scale (not "
                f"included); the output is {series['horizon']} steps x {len(series['target_columns'])} target columns "
                "(step-major) in the series' own units")


def _history(encoding: SeriesEncoding, source: Path, given: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The given series' input and target columns (T x C, T x K), oldest first, checked."""
    table = read_table(source)
    lines, notes = np.arange(len(table)) + 2, []
    if encoding.time is not None and encoding.time in table.columns:
        table, lines = in_time_order(table, lines, encoding.time, source.name)
    elif encoding.time is not None:
        notes.append(f"{source.name} has no column {encoding.time} (the run's data.time): its rows are taken in file order")
    needed = list(dict.fromkeys(encoding.columns + encoding.target_columns))
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise UserError(f"{given} lacks column(s) the run reads: {listed(missing, 8)} (it needs {listed(needed, 12)})")
    if len(table) < encoding.window:
        raise UserError(f"{given} has {len(table)} rows, and the run forecasts from the last {encoding.window} steps: "
                        f"give at least {encoding.window}")
    values = {c: numeric_column(table[c], c, source.name, lines, False) for c in needed}
    return (np.stack([values[c] for c in encoding.columns], axis=1), np.stack([values[c] for c in encoding.target_columns], axis=1),
            notes)


def forecast_table(encoding: SeriesEncoding, inputs: np.ndarray, run_model, steps: int):
    """The `steps` steps after `inputs` (T x C, the series' units) as a table: `step` (1 is the step
    after the last given) and one column per target column. `run_model` maps a batch (1 x C x
    window, standardized) to the model's outputs (1 x horizon*K, standardized)."""
    import pandas as pd  # noqa: PLC0415  (dl cache list runs without pandas)
    import torch  # noqa: PLC0415  (dl cache list runs without torch)

    horizon, targets = encoding.horizon, encoding.target_columns
    fed_back = [targets.index(c) if c in targets else None for c in encoding.columns]
    if steps > horizon and None in fed_back:
        raise UserError(f"--horizon {steps} is past the {horizon} step(s) the run forecasts, and its forecasts cannot be fed back "
                        f"(it reads {listed(encoding.columns)} and forecasts {listed(targets)}): choose --horizon {horizon} or "
                        f"less, or train with data.horizon={steps}")
    history, forecast = encoding.scale_inputs(inputs[-encoding.window:]), []
    while len(forecast) < steps:
        x = torch.as_tensor(history[-encoding.window:].T[None].copy(), dtype=torch.float32)
        scaled = np.asarray(run_model(x), dtype=np.float64).reshape(horizon, len(targets))
        values = scaled * np.asarray(encoding.target_scale) + np.asarray(encoding.target_center)  # the series' units
        forecast.extend(values)
        if None not in fed_back:  # the forecast becomes the newest steps the next window reads
            history = np.vstack([history, encoding.scale_inputs(values[:, fed_back])])
    table = pd.DataFrame(np.asarray(forecast[:steps]), columns=targets)
    table.insert(0, "step", np.arange(1, steps + 1))
    return table
