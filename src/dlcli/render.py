"""Rich tables for what the commands return. Pure presentation: no computation happens here."""

from __future__ import annotations

import numbers
from pathlib import Path

from rich.table import Table


def kfold_table(parent: Path) -> Table:
    from dlcli.runs import read_json

    report = read_json(parent / "kfold.json")
    monitor = report["monitor"]
    table = Table(title=f"{report['folds']}-fold cross-validation: {parent}")
    for column in ("fold", "status", "best epoch", monitor):
        table.add_column(column, justify="right")
    for row in report["per_fold"]:
        table.add_row(str(row["fold"]), row["status"], str(row["best_epoch"]), fmt(row[monitor]))
    if report["mean"] is not None:
        table.add_row("mean ± std", "", "", f"{report['mean']:.4f} ± {report['std']:.4f}")
    return table


def summary_table(run_dir: Path, summary: dict) -> Table:
    table = Table(title=f"{summary.get('status', '?')}: {run_dir}", show_header=True)
    table.add_column("")
    table.add_column("value", justify="right")
    monitor = summary.get("monitor", "")
    rows = [
        ("device", summary.get("device")),
        ("epochs completed", summary.get("epochs_completed")),
        ("best epoch", summary.get("best_epoch")),
        (f"best {monitor}", fmt(summary.get(f"best_{monitor}"))),
    ]
    for key, value in (summary.get("test") or {}).items():
        if key not in ("epoch", "samples"):
            rows.append((f"test {key}", fmt(value)))
    rows.append(("wall time", f"{summary.get('wall_seconds', 0):.1f}s"))
    for label, value in rows:
        table.add_row(label, str(value))
    return table


def metrics_table(report: dict) -> Table:
    table = Table(title=f"{report['split']} split, {report['checkpoint']} checkpoint (epoch {report['epoch']}, {report['samples']} samples)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("loss", "accuracy", "macro_f1", "rmse", "mae", "r2"):
        if key in report:
            table.add_row(key, fmt(report[key]))
    return table


def per_class_table(report: dict) -> Table:
    table = Table(title="per class")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in report["per_class"]:
        table.add_row(row["class"], fmt(row["precision"]), fmt(row["recall"]), fmt(row["f1"]), str(row["support"]))
    return table


def fmt(value) -> str:
    if isinstance(value, numbers.Integral):
        return str(value)
    return f"{value:.4f}" if isinstance(value, numbers.Real) else str(value)


def sweep_table(result) -> Table:
    import pandas as pd

    summary, frame = result.summary, result.table
    metric = summary["metric"]
    table = Table(title=f"{summary['status']}: {result.sweep_dir} (sorted by {metric}, {summary['mode']})")
    for column in frame.columns:
        if column != "message":
            table.add_column(column, justify="left" if column == "status" else "right")
    for _, row in frame.iterrows():
        table.add_row(*("-" if row[c] is None or row[c] is pd.NA or row[c] != row[c] else fmt(row[c]) for c in frame.columns if c != "message"))
    return table


def shape_text(values) -> str:
    return "x".join(map(str, values)) if values else "-"


def shape_table(result: dict) -> Table:
    table = Table(title=f"input {shape_text(result['input'])} -> output {shape_text(result['output'])}, {result['total_params']:,} parameters")
    warned = any(layer["warnings"] for layer in result["layers"])
    table.add_column("layer")
    table.add_column("output", justify="right")
    table.add_column("params", justify="right")
    if warned:
        table.add_column("note", style="yellow")
    for layer in result["layers"]:
        note = ["warning (below)" if layer["warnings"] else ""] if warned else []
        table.add_row(layer["layer"], shape_text(layer["output"]), f"{layer['params']:,}", *note)
    return table


def param_table(summary: dict) -> Table:
    table = Table(title=f"input {shape_text(summary['input'])} -> output {shape_text(summary['output'])}")
    for column in ("layer", "type", "output", "params", "trainable", "share", "mult-adds"):
        table.add_column(column, justify="left" if column in ("layer", "type") else "right")
    for row in summary["layers"]:
        table.add_row(row["name"], row["type"], shape_text(row["output"]), f"{row['params']:,}", f"{row['trainable']:,}",
                      f"{row['share']:.1%}", f"{row['macs']:,}")
    return table
