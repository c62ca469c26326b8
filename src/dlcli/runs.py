"""The run directory: create it, write its files atomically, read a run back.

runs/<name>/<YYYY-MM-DD_HH-MM-SS>[-N]/ holds config.yaml, overrides.yaml, metrics.csv,
summary.json, split.json, checkpoints/{best,last}.pt, curves.png and train.log.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
from pathlib import Path

from dlcli.errors import UserError

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_{m}", "val_loss", "val_{m}", "seconds", "samples_per_second")


def create_run_dir(runs_dir: str | Path, name: str, now: dt.datetime | None = None, checkpoints: bool = True) -> Path:
    """A new, empty directory; a second run in the same second gets -1, -2, ..."""
    parent = Path(str(runs_dir)) / str(name)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = (now or dt.datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    for suffix in range(10_000):
        path = parent / (stamp if suffix == 0 else f"{stamp}-{suffix}")
        try:
            path.mkdir()  # atomic: two processes never get the same directory
        except FileExistsError:
            continue
        if checkpoints:
            (path / "checkpoints").mkdir()
        return path
    raise RuntimeError(f"could not create a run directory under {parent}")


def write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(_jsonable(data), indent=2) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _jsonable(value):
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def metric_columns(metric: str) -> list[str]:
    return [c.format(m=metric) for c in METRIC_COLUMNS]


def write_metrics(path: Path, rows: list[dict], columns: list[str]) -> None:
    """metrics.csv with exactly these rows, written atomically (a run's start, resume or abnormal end)."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def read_metrics(path: Path, up_to: int | None = None) -> list[dict]:
    """The rows of metrics.csv as numbers (epoch as int), optionally only epochs <= up_to.
    Floats are written with repr, so they read back bit-identical."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        rows = [{k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v not in (None, "")}
                for row in csv.DictReader(f)]
    return [row for row in rows if up_to is None or row["epoch"] <= up_to]


def update_summary(run_dir: Path, **fields) -> dict:
    path = run_dir / "summary.json"
    summary = read_json(path) if path.exists() else {}
    summary.update(fields)
    write_json(path, summary)
    return summary


def find_run(path: str | Path) -> Path:
    """A run directory given by the user, checked to be one."""
    run_dir = Path(path).expanduser()
    if not run_dir.is_dir():
        raise UserError(f"{path} is not a directory: give a run directory such as runs/train/<timestamp>")
    missing = [f for f in ("config.yaml", "split.json", "summary.json") if not (run_dir / f).is_file()]
    if missing:
        raise UserError(f"{path} is not a dl run directory (no {missing[0]}): give one such as runs/train/<timestamp>")
    return run_dir


def list_runs(directory: str | Path) -> list[dict]:
    """Every run under `directory` (trials of sweeps and k-fold folds included), as flat rows:
    path, status, metrics, and each config value that is not the same in all of them."""
    import pandas as pd
    from omegaconf import OmegaConf

    root = Path(directory).expanduser()
    if not root.is_dir():
        raise UserError(f"{directory} is not a directory: give one that holds runs, such as runs/ or a sweep")
    rows, configs = [], []
    for summary_path in sorted(root.rglob("summary.json")):
        run_dir = summary_path.parent
        summary = read_json(summary_path)
        if summary.get("kind") in ("sweep", "kfold"):
            continue  # parents: their runs are listed one by one
        monitor = summary.get("monitor")
        name = str(run_dir.relative_to(root)) if run_dir != root else run_dir.name
        row = {"run": name, "status": summary.get("status"), "epochs": summary.get("epochs_completed"),
               "best_epoch": summary.get("best_epoch")}
        if monitor:
            row[monitor] = summary.get(f"best_{monitor}")
        for key, value in (summary.get("test") or {}).items():
            if key not in ("epoch", "samples"):
                row[f"test_{key}"] = value
        rows.append(row)
        if (run_dir / "config.yaml").is_file():  # absent when a trial failed before training began
            flat = pd.json_normalize(OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml")), sep=".")
            configs.append({k: str(v) for k, v in flat.iloc[0].to_dict().items()})
        else:
            configs.append({})
    keys = sorted({k for c in configs for k in c})
    present = [c for c in configs if c]
    differing = [k for k in keys if len({c.get(k) for c in present}) > 1 and k not in ("name", "resume")]
    for row, config in zip(rows, configs):
        row.update({k: config.get(k) for k in differing})
    return rows
