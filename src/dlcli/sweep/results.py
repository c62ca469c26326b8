"""What a sweep writes: results.csv, best.yaml, summary.json, sweep.png."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dlcli.system.numbers import short
from dlcli.rundir.directory import write_text
from dlcli.sweep.space import SearchSpace
from dlcli.tracking import plots
from dlcli.tracking.plots import new_figure, save_figure


def results_frame(records: list[dict], space: SearchSpace, metric: str) -> pd.DataFrame:
    """One row per trial: number, status, each swept parameter (full key), the metric (a
    cross-validated trial's mean, with its fold spread in <metric>_std), val_loss at the best
    epoch (the first tie-break), best epoch, seconds."""
    folds = any(record.get("folds") is not None for record in records)
    tie = metric != "val_loss"
    rows = []
    for record in sorted(records, key=lambda r: r["number"]):
        row = {"number": record["number"], "status": record["status"]}
        row.update({p.name: record["params"].get(p.key) for p in space.params})
        row[metric] = record.get("value")
        if folds:
            row[f"{metric}_std"] = record.get("std")
        if tie:
            row["val_loss"] = record.get("val_loss")
        row.update({"best_epoch": record.get("best_epoch"), "seconds": round(record.get("seconds") or 0.0, 3),
                    "message": record.get("message") or ""})
        rows.append(row)
    measured = [metric, *([f"{metric}_std"] if folds else []), *(["val_loss"] if tie else [])]
    frame = pd.DataFrame(rows, columns=["number", "status", *space.names, *measured, "best_epoch", "seconds", "message"])
    return frame.astype({"number": "int64", "best_epoch": "Int64", **{c: "float64" for c in measured}})


def write_results(path: Path, frame: pd.DataFrame) -> None:
    write_text(path, frame.to_csv(index=False))


def sorted_by_metric(frame: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """Best first, ties broken as `chosen_by` says: the lower val_loss at the best epoch, then the
    earlier best epoch (the same score, reached with less training), then the earlier trial."""
    keys = [metric, *(["val_loss"] if "val_loss" in frame.columns and metric != "val_loss" else []), "best_epoch", "number"]
    return frame.sort_values(keys, ascending=[mode == "min", *([True] * (len(keys) - 1))], na_position="last", kind="stable")


def chosen_by(metric: str, mode: str, folds: int | None) -> str:
    """How the best trial is chosen, in words (best.yaml and summary.json)."""
    measure = f"the mean {metric} over {folds} folds" if folds else metric
    loss = "" if metric == "val_loss" else "the lower val_loss at the best epoch" + (" (mean over folds)" if folds else "") + ", then "
    return (f"the {'highest' if mode == 'max' else 'lowest'} {measure}; ties broken by {loss}the earlier best epoch, "
            "then the earlier trial")


def close_call(best: pd.DataFrame, metric: str, resolution: float | None, spread: float | None) -> str | None:
    """A warning when the top trials are closer than the metric can tell apart: within one
    validation sample (the resolution of an accuracy) or within the best trial's fold spread.
    `best` is the completed trials, best first."""
    if len(best) < 2:
        return None
    top = float(best.iloc[0][metric])
    if spread:
        near = best[(best[metric] - top).abs() < spread]
        why = f"within the best trial's fold spread (std {short(spread)})"
        advice = "more folds, or more data per fold, would separate them"
    elif resolution:
        near = best[(best[metric] - top).abs() <= resolution * (1 + 1e-9)]
        why = f"within one validation sample of each other (resolution 1/{round(1 / resolution)} = {short(resolution)})"
        advice = "a cross-validated sweep (split.kfold=5) judges them on every labelled row"
    else:
        return None
    if len(near) < 2:
        return None
    numbers = [f"{int(n):03d}" for n in near["number"]]
    listed = ", ".join(numbers[:5]) + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")
    values = ", ".join(short(float(v)) for v in near[metric][:5])
    return (f"warning: trials {listed} are {why} on {metric} ({values}): trial {numbers[0]} was chosen by the tie-break; "
            f"{advice}")


def plot_sweep(frame: pd.DataFrame, space: SearchSpace, metric: str, path: Path) -> None:
    """The metric against each swept parameter; log axes where the parameter is log-scaled."""
    done = frame[frame[metric].notna()]
    if done.empty or not space.names or not plots.drawing_enabled:  # (off: the test suite, except where it looks)
        return
    columns = len(space.names)
    figure = new_figure(figsize=(4.5 * columns, 4), layout="tight")
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
    save_figure(figure, path)

