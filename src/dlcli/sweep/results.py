"""What a sweep writes: results.csv, best.yaml, summary.json, sweep.png."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dlcli.runs import write_text
from dlcli.sweep.space import SearchSpace


def results_frame(records: list[dict], space: SearchSpace, metric: str) -> pd.DataFrame:
    """One row per trial: number, status, each swept parameter, the metric, best epoch, seconds."""
    rows = []
    for record in sorted(records, key=lambda r: r["number"]):
        row = {"number": record["number"], "status": record["status"]}
        row.update({p.name: record["params"].get(p.key) for p in space.params})
        row.update({metric: record.get("value"), "best_epoch": record.get("best_epoch"),
                    "seconds": round(record.get("seconds") or 0.0, 3), "message": record.get("message") or ""})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["number", "status", *space.names, metric, "best_epoch", "seconds", "message"])
    return frame.astype({"number": "int64", "best_epoch": "Int64", metric: "float64"})


def write_results(path: Path, frame: pd.DataFrame) -> None:
    write_text(path, frame.to_csv(index=False))


def sorted_by_metric(frame: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    return frame.sort_values(metric, ascending=mode == "min", na_position="last", kind="stable")


def plot_sweep(frame: pd.DataFrame, space: SearchSpace, metric: str, path: Path) -> None:
    """The metric against each swept parameter; log axes where the parameter is log-scaled."""
    from dlcli.plots import _figure, _save

    done = frame[frame[metric].notna()]
    if done.empty or not space.names:
        return
    columns = len(space.names)
    figure = _figure(figsize=(4.5 * columns, 4), layout="tight")
    axes = figure.subplots(1, columns, squeeze=False)
    for axis, key in zip(axes[0], space.names):
        values = pd.to_numeric(done[key], errors="coerce")
        statuses = done["status"].tolist()
        colors = ["tab:blue" if s == "completed" else "tab:orange" for s in statuses]
        if values.notna().all():
            axis.scatter(values, done[metric], c=colors)
            if space.log_scaled(key) and (values > 0).all():
                axis.set_xscale("log")
        else:  # categorical values (model names, lists): one column each
            labels = sorted(set(done[key].astype(str)))
            axis.scatter([labels.index(v) for v in done[key].astype(str)], done[metric], c=colors)
            axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        axis.set_xlabel(key)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    axes[0][0].set_title("blue: completed, orange: pruned", fontsize=9)
    _save(figure, path)

