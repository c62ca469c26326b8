"""A series prepared for a run (data=sine, data=timeseries): its windows, the scaling fitted on the
training span, and how a forecast is scored in the series' own units beside persistence (the
naive forecast: every future step equals the last observed value), so a run says at once whether
its model beats naive.

A model's output for one window is horizon x K values, step-major: step s of target column k at
s * K + k (what `dl predict` writes back as one row per step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dlcli.data.prepared import PreparedData
from dlcli.data.preprocess import TargetScaler
from dlcli.data.time_split import window_count


@dataclass
class SeriesEncoding:
    """What a series run learned from its training span, in preprocessing.json's `series` field:
    the columns, the windows' sizes, and each column's mean and standard deviation there."""

    kind: ClassVar[str] = "series"
    columns: list[str]  # the input columns, in the channel order the model reads
    target_columns: list[str]
    window: int
    horizon: int
    center: list[float]  # per input column
    scale: list[float]
    target_center: list[float]  # per target column
    target_scale: list[float]
    time: str | None = None  # the column that orders a series' rows (null: the file's order)

    @classmethod
    def fit(cls, raw, span_end: int) -> SeriesEncoding:
        """What `raw` (dlcli.data.series.SeriesRaw) holds, with the means and deviations of its steps
        before `span_end` (the training span) only."""
        return cls(list(raw.columns), list(raw.target_columns), raw.window, raw.horizon, *_moments(raw.inputs[:span_end]),
                   *_moments(raw.outputs[:span_end]), raw.time)

    def scale_inputs(self, values: np.ndarray) -> np.ndarray:
        return (values - np.asarray(self.center)) / np.asarray(self.scale)

    def scale_outputs(self, values: np.ndarray) -> np.ndarray:
        return (values - np.asarray(self.target_center)) / np.asarray(self.target_scale)

    def target_scaler(self) -> TargetScaler:
        """The model's outputs (horizon steps of each target column) back in the series' units."""
        return TargetScaler(tuple(self.target_center * self.horizon), tuple(self.target_scale * self.horizon))

    def feature_names(self) -> list[str]:
        return list(self.columns)

    def to_json(self) -> dict:
        return {"kind": self.kind, "columns": self.columns, "target_columns": self.target_columns, "window": self.window,
                "horizon": self.horizon, "center": self.center, "scale": self.scale, "target_center": self.target_center,
                "target_scale": self.target_scale, "time": self.time}

    @classmethod
    def from_json(cls, record: dict) -> SeriesEncoding:
        """(checked by the series modality's check_record first)"""
        return cls(*(record[key] for key in ("columns", "target_columns", "window", "horizon", "center", "scale",
                                             "target_center", "target_scale", "time")))


def _moments(values: np.ndarray) -> tuple[list[float], list[float]]:
    """Each column's mean and standard deviation (a constant column keeps 1: it is only centred)."""
    std = values.std(axis=0)
    return values.mean(axis=0).tolist(), np.where(std > 0, std, 1.0).tolist()


def windows_of(inputs: np.ndarray, outputs: np.ndarray, window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window's inputs (N, C * window: channel-major, read as C x window) and targets
    (N, horizon * K, step-major) as float32, from the scaled series (T, C) and (T, K)."""
    count = window_count(len(inputs), window, horizon)
    x = sliding_window_view(inputs, window, axis=0)[:count]  # (N, C, window): step j of channel c at [c, j]
    y = sliding_window_view(outputs[window:], horizon, axis=0)[:count]  # (N, K, horizon): the steps after each window
    return (np.ascontiguousarray(x, dtype=np.float32).reshape(count, -1),
            np.ascontiguousarray(y.transpose(0, 2, 1), dtype=np.float32).reshape(count, -1))


@dataclass
class PreparedSeries(PreparedData):
    """PreparedData of a series, with the series itself in its own units for the scores."""

    series: np.ndarray | None = None  # float64 (T, K): the target columns, unscaled
    window: int = 1
    horizon: int = 1

    def persistence(self, part: str) -> np.ndarray:
        """The naive forecast of every window of `part` (N, horizon * K): the last value it reads, every step."""
        last = self.series[self.split.part(part) + self.window - 1]  # (N, K)
        return np.tile(last, (1, self.horizon))

    def actual(self, part: str) -> np.ndarray:
        """What every window of `part` should forecast (N, horizon * K), in the series' units."""
        rows = self.split.part(part)[:, None] + self.window + np.arange(self.horizon)[None, :]  # (N, horizon) steps
        return self.series[rows].reshape(len(rows), -1)

    def forecast_report(self, part: str, outputs: np.ndarray) -> dict:
        """The model's errors per horizon step and the persistence forecast's, in the series' units."""
        actual = self.actual(part)
        predicted = self.target_scaler.inverse(np.asarray(outputs, dtype=np.float64).reshape(actual.shape))
        naive = errors(self.persistence(part), actual, self.horizon)
        model = errors(predicted, actual, self.horizon)
        return {"rmse_per_step": model["rmse_per_step"], "mae_per_step": model["mae_per_step"],
                "persistence_rmse": naive["rmse"], "persistence_mae": naive["mae"],
                "persistence_rmse_per_step": naive["rmse_per_step"]}

    def summary_facts(self) -> dict:
        """summary.json's `persistence`: the naive forecast's errors on the validation and test windows."""
        scores = {}
        for part in ("val", "test"):
            if len(self.split.part(part)):
                naive = errors(self.persistence(part), self.actual(part), self.horizon)
                scores[part] = {"rmse": naive["rmse"], "mae": naive["mae"]}
        return {"persistence": scores}


def errors(predicted: np.ndarray, actual: np.ndarray, horizon: int) -> dict:
    """RMSE and MAE over every value, and per horizon step (over the windows and target columns)."""
    difference = (predicted - actual).reshape(len(actual), horizon, -1)
    per_step_squared = (difference**2).mean(axis=(0, 2))
    return {"rmse": math.sqrt(float((difference**2).mean())), "mae": float(np.abs(difference).mean()),
            "rmse_per_step": [math.sqrt(float(v)) for v in per_step_squared],
            "mae_per_step": [float(v) for v in np.abs(difference).mean(axis=(0, 2))]}
