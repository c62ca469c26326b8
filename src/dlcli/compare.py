"""`dl runs`: many runs as one table, the columns that tell them apart first.

Rows are collected from run directories (sweep trials and k-fold folds included) with every value
in its own type, so `--json` is exact; the terminal table then keeps what matters and fits.
"""

from __future__ import annotations

import glob
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dlcli.config import COMPONENT_GROUPS, option_name
from dlcli.errors import UserError
from dlcli.runs import ARTIFACTS_DIR, effective_status, read_json, read_metrics, read_summary

NOT_COMPARED = ("name", "resume", "runs_dir")  # where a run lives, not what it computed
MAX_VALUE_WIDTH = 24
MAX_RUN_WIDTH = 40
MIN_RUN_WIDTH = 16


@dataclass
class RunRows:
    rows: list[dict]  # one per run: run, status, metrics, components and differing settings, typed
    typed: list[list[str]]  # per row: the setting keys its user typed (overrides.yaml)


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Directories given on the command line; a pattern (runs/mlp*) is expanded here too, so it
    works when the shell leaves it alone (quoted, or no match in zsh)."""
    roots: list[Path] = []
    for text in paths:
        path = Path(text).expanduser()
        if not path.exists() and glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text)))
            if not matches:
                raise UserError(f"{text} matches no directory: give directories that hold runs, such as runs/")
            roots += [Path(m) for m in matches if Path(m).is_dir()]
            continue
        if not path.is_dir():
            raise UserError(f"{text} is not a directory: give one that holds runs, such as runs/ or a sweep")
        roots.append(path)
    return roots


def collect_runs(paths: Sequence[str]) -> RunRows:
    """Every run under these directories (each once), with its config values that differ."""
    roots = expand_paths(paths)
    run_dirs = list(dict.fromkeys(summary.parent.resolve() for root in roots for summary in sorted(root.rglob("summary.json"))
                                  if not _not_a_run(summary.relative_to(root))))
    given = [root.resolve() for root in roots]
    base = Path(os.path.commonpath([r.parent if (r / "summary.json").is_file() else r for r in given])) if given else Path.cwd()
    rows, configs, typed = [], [], []
    for run_dir in run_dirs:
        name = os.path.relpath(run_dir, base)
        try:
            summary = read_summary(run_dir)
            if not isinstance(summary, dict):
                raise UserError("not an object")
        except UserError:  # torn or edited by hand: list it as such, list the others
            rows.append({"run": name, "status": "unreadable summary.json"})
            configs.append({})
            typed.append([])
            continue
        if summary.get("kind") in ("sweep", "kfold"):
            continue  # parents: their runs are listed one by one
        rows.append(_run_row(run_dir, name, summary))
        configs.append(_flat_config(run_dir))
        typed.append(_typed_keys(run_dir))
    _add_settings(rows, configs)
    return RunRows(rows, typed)


def _not_a_run(path: Path) -> bool:
    """A run being created (a hidden .partial directory) or MLflow's copies of a run's files."""
    return any(part.startswith(".") or part == ARTIFACTS_DIR for part in path.parts[:-1])


def _run_row(run_dir: Path, name: str, summary: dict) -> dict:
    status = effective_status(run_dir, summary)
    epochs = summary.get("epochs_completed")
    if status == "killed":  # its summary stopped at the start: the epochs it finished are in metrics.csv
        try:
            finished = read_metrics(run_dir / "metrics.csv")
            epochs = finished[-1]["epoch"] if finished else 0
        except UserError:
            epochs = None
    row = {"run": name, "status": status, "epochs": epochs, "best_epoch": summary.get("best_epoch")}
    if "diagnosis" in summary:  # the codes of dl diagnose's findings ("" for a healthy run)
        row["diagnosis"] = ",".join(summary["diagnosis"]) or "ok"
    monitor = summary.get("monitor")
    if monitor:
        row[monitor] = _number(summary.get(f"best_{monitor}"))
    for key, value in (summary.get("test") or {}).items():
        if key not in ("epoch", "samples"):
            row[f"test_{key}"] = _number(value)
    if (run_dir / "mlflow.json").is_file():  # where to find it in the MLflow UI
        try:
            row["mlflow_run_id"] = read_json(run_dir / "mlflow.json").get("run_id")
        except (ValueError, OSError):
            pass
    return row


def _number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _flat_config(run_dir: Path) -> dict:
    """A run's config as dotted keys -> typed values (lists stay lists); {} when unreadable."""
    from dlcli.moved_targets import modernize
    from dlcli.received import read_yaml

    try:
        config = read_yaml(run_dir / "config.yaml")  # bounded, no interpolation: a run may come from anyone
    except UserError:  # absent (a trial that failed before training) or damaged: no columns from it
        return {}
    if not isinstance(config, dict):
        return {}
    modernize(config)  # option names of runs written by an earlier dl
    flat: dict = {}
    _flatten(config, "", flat)
    for group in COMPONENT_GROUPS:
        if group == "logger":  # several at once: logger=[tensorboard,mlflow]; runs from before loggers had none
            flat[group] = ",".join(config.get(group) or {}) or "none"
        elif group in config:
            flat[group] = option_name(group, config[group])
    return flat


def _flatten(node, prefix: str, out: dict) -> None:
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _flatten(value, path + ".", out)
        else:
            out[path] = value


def _typed_keys(run_dir: Path) -> list[str]:
    """The settings its user typed: `model=softmax` -> model, `+optim.l1=0.1` -> optim.l1."""
    from dlcli.config import override_key
    from dlcli.received import read_yaml

    try:
        overrides = read_yaml(run_dir / "overrides.yaml")
    except UserError:
        return []
    if not isinstance(overrides, list):
        return []
    keys = [override_key(o) for o in overrides if "=" in str(o)]
    return [k for k in keys if k not in NOT_COMPARED]


def _add_settings(rows: list[dict], configs: list[dict]) -> None:
    """Each row gets the component options and every setting whose value is not the same in all
    runs (a setting a run does not have counts as null)."""
    present = [c for c in configs if c]
    keys = list(dict.fromkeys(k for c in present for k in c))
    differing = [k for k in keys if k not in NOT_COMPARED and len({_key(c.get(k)) for c in present}) > 1]
    components = [g for g in COMPONENT_GROUPS if any(g in c for c in present)]
    for row, config in zip(rows, configs):
        if config:
            row.update({k: config.get(k) for k in dict.fromkeys([*components, *differing])})


def _key(value) -> str:
    return repr(value)


# -- the terminal table ------------------------------------------------------------------------

@dataclass
class TableView:
    columns: list[str]
    rows: list[dict]
    facts: list[str]  # what all runs share, said once in the title (all completed, one date)


def display_rows(runs: RunRows) -> TableView:
    """The terminal's view: columns in the order they matter, without those that are empty or the
    same everywhere. Run and status; epochs; the validation and test metric (one `metric` column
    naming it when the runs measure different things); the components; the settings the user
    typed; then best epoch and the other test numbers."""
    rows = runs.rows
    present = list(dict.fromkeys(k for row in rows for k in row))
    monitors = [k for k in present if k.startswith("val_")]
    metrics = [m[len("val_"):] for m in monitors]
    headline = [*monitors, *(f"test_{m}" for m in metrics)]
    if len(monitors) > 1:  # mixed tasks: one column per role, not one per metric
        shown = []
        for row in rows:
            metric = next((m for m in metrics if row.get(f"val_{m}") is not None or row.get(f"test_{m}") is not None), None)
            view = {k: v for k, v in row.items() if k not in headline}
            view.update(metric=metric, val=row.get(f"val_{metric}"), test=row.get(f"test_{metric}"))
            shown.append(view)
        rows, leading = shown, ["metric", "val", "test"]
    else:
        leading = [*monitors, *(f"test_{m}" for m in metrics if f"test_{m}" in present)]
    components = [g for g in COMPONENT_GROUPS if g in present]
    typed = [k for keys in runs.typed for k in keys if k in present and k not in components]
    rest = [k for k in present if k.startswith("test_") and k not in headline]
    order = list(dict.fromkeys(["run", "status", *leading, "diagnosis", *components, *typed, "epochs", "best_epoch", *rest]))
    facts = []
    statuses = {row.get("status") for row in rows}
    if len(rows) > 1 and len(statuses) == 1:
        facts.append(f"all {statuses.pop()}")
    rows, day = _without_shared_date(rows)
    if day:
        facts.append(f"all on {day}")
    return TableView([c for c in order if c == "run" or _varies(rows, c)], rows, facts)


_STAMP = re.compile(r"(\d{4}-\d{2}-\d{2})_(\d{2}-\d{2}-\d{2})")


def _without_shared_date(rows: list[dict]) -> tuple[list[dict], str | None]:
    """Runs started on one day are told apart by their time: runs/mlp/2026-11-24_10-31-07 shows
    as mlp/10-31-07, and the day is said once."""
    days = {m.group(1) for row in rows for m in [_STAMP.search(str(row.get("run", "")))] if m}
    if len(days) != 1 or not all(_STAMP.search(str(row.get("run", ""))) for row in rows):
        return rows, None
    return [{**row, "run": _STAMP.sub(r"\2", row["run"], count=1)} for row in rows], days.pop()


def _varies(rows: list[dict], column: str) -> bool:
    values = [_key(row.get(column)) for row in rows]
    if all(row.get(column) is None for row in rows):
        return False
    return len(rows) == 1 or len(set(values)) > 1


def cell_text(column: str, value) -> str:
    from dlcli.numbers import setting, short

    if value is None:
        return "-"
    if column in ("run", "status"):
        return str(value)
    text = short(value) if _is_measurement(column) else setting(value)
    return elide(text, MAX_VALUE_WIDTH)


def _is_measurement(column: str) -> bool:
    return column.startswith(("val_", "test_", "train_")) or column in ("val", "test", "epochs", "best_epoch")


def is_number_column(column: str) -> bool:
    return _is_measurement(column)


def elide(text: str, width: int) -> str:
    """Long text keeps its start and its end (where paths and lists differ)."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep - keep // 2] + "…" + text[len(text) - keep // 2:]


def fit_columns(columns: list[str], cells: dict[str, list[str]], width: int, essential: int) -> tuple[list[str], list[str], int]:
    """The columns that fit in `width` terminal cells, in order, those left out, and the width the
    run column gets: the run names are shortened (middle elided) before any of the first
    `essential` columns is left out."""
    def need(column: str, limit: int | None = None) -> int:
        widest = max([len(header_text(column)), *(len(c) for c in cells[column])])
        return (min(widest, limit) if limit else widest) + 3  # padding and border

    run_width = need("run", MAX_RUN_WIDTH) - 3
    essential_need = 1 + sum(need(c) for c in columns[1:essential])
    if essential_need + run_width + 3 > width:
        run_width = max(MIN_RUN_WIDTH, width - essential_need - 3)
    kept, left_out, used = ["run"], [], 1 + run_width + 3
    for column in columns[1:]:
        if used + need(column) <= width:
            kept.append(column)
            used += need(column)
        else:
            left_out.append(column)
    return kept, left_out, run_width


def header_text(column: str) -> str:
    return elide(column, MAX_VALUE_WIDTH)
