"""`dl runs`: many runs as one table, the columns that tell them apart first.

Rows are collected from run directories (sweep trials and k-fold folds included) with every value
in its own type, so `--json` is exact; the terminal table then keeps what matters and fits.
"""

from __future__ import annotations

import glob
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dlcli.config.compose import COMPONENT_GROUPS, option_name, override_key
from dlcli.config.metric_names import monitor_mode
from dlcli.errors import UserError
from dlcli.rundir.directory import ARTIFACTS_DIR, effective_status, read_json, read_metrics, read_summary
from dlcli.system.numbers import setting
from dlcli.trust.moved_targets import modernize
from dlcli.trust.received import read_yaml

NOT_COMPARED = ("name", "resume", "runs_dir")  # where a run lives, not what it computed


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
    # a k-fold run is one row (its folds' mean ± std), unless it is what the user gave: then its folds
    shown_parents = {d for d in run_dirs if d not in given and _is_kfold(d)}
    run_dirs = [d for d in run_dirs if d.parent not in shown_parents]
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
        if summary.get("kind") == "sweep" or (summary.get("kind") == "kfold" and run_dir not in shown_parents):
            continue  # parents: their runs are listed one by one
        rows.append(_kfold_row(run_dir, name, summary) if summary.get("kind") == "kfold" else _run_row(run_dir, name, summary))
        configs.append(flat_config(run_dir))
        typed.append(_typed_keys(run_dir))
    _add_settings(rows, configs)
    return RunRows(rows, typed)


def _is_kfold(run_dir: Path) -> bool:
    try:
        return read_summary(run_dir).get("kind") == "kfold"
    except UserError:
        return False


def _kfold_row(run_dir: Path, name: str, summary: dict) -> dict:
    """A k-fold run as one row: the folds' mean best validation value, their spread, the mean test."""
    monitor = summary.get("monitor")
    row = {"run": name, "status": effective_status(run_dir, summary), "folds": summary.get("folds"),
           "seconds": _number(summary.get("wall_seconds"))}
    if monitor:
        row[monitor] = _number(summary.get("mean"))
        row[f"{monitor}_std"] = _number(summary.get("std"))
    for key, value in (summary.get("test_mean") or {}).items():
        row[f"test_{key}"] = _number(value)
    return row


def _not_a_run(path: Path) -> bool:
    """A run being created (a hidden .partial directory) or MLflow's copies of a run's files."""
    return any(part.startswith(".") or part == ARTIFACTS_DIR for part in path.parts[:-1])


def _run_row(run_dir: Path, name: str, summary: dict) -> dict:
    status = effective_status(run_dir, summary)
    epochs = summary.get("epochs_completed")
    try:
        finished = read_metrics(run_dir / "metrics.csv")
    except UserError:
        finished = None
    if status == "killed":  # its summary stopped at the start: the epochs it finished are in metrics.csv
        epochs = (finished[-1]["epoch"] if finished else 0) if finished is not None else None
    row = {"run": name, "status": status, "epochs": epochs, "best_epoch": summary.get("best_epoch"),
           "seconds": _number(summary.get("wall_seconds")), "samples_per_second": _throughput(finished or [])}
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


def _throughput(epochs: list[dict]):
    """The run's training speed: the median of its epochs' samples per second (the first epoch's
    compilation or a pause does not move it), None before an epoch was written."""
    speeds = [row["samples_per_second"] for row in epochs if isinstance(row.get("samples_per_second"), float)
              and math.isfinite(row["samples_per_second"])]
    return statistics.median(speeds) if speeds else None


def _number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def flat_config(run_dir: Path) -> dict:
    """A run's config as dotted keys -> typed values (lists stay lists); {} when unreadable."""
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
            flat[group] = _logger_names(config.get(group))
        elif group in config:
            flat[group] = option_name(group, config[group])
    return flat


def _logger_names(loggers) -> str:
    """logger=a,b as the run chose them (a mapping of name to settings); "none" for none, and for
    anything else a received config.yaml may hold there."""
    if not isinstance(loggers, dict):
        return "none"
    return ",".join(str(name) for name in loggers) or "none"


def _flatten(node, prefix: str, out: dict) -> None:
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            _flatten(value, path + ".", out)
        else:
            out[path] = value


def _typed_keys(run_dir: Path) -> list[str]:
    """The settings its user typed: `model=softmax` -> model, `+optim.l1=0.1` -> optim.l1."""
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
    differing = [k for k in keys if k not in NOT_COMPARED and len({comparable(c.get(k)) for c in present}) > 1]
    components = [g for g in COMPONENT_GROUPS if any(g in c for c in present)]
    for row, config in zip(rows, configs):
        if config:
            row.update({k: config.get(k) for k in dict.fromkeys([*components, *differing])})


def comparable(value) -> str:
    return repr(value)


def is_monitor(column: str) -> bool:
    return column.startswith("val_") and not column.endswith("_std")


def filter_runs(runs: RunRows, conditions: Sequence[str]) -> RunRows:
    """The runs whose columns meet every `KEY=VALUE` (or `KEY!=VALUE`) condition: --where."""
    every = list(dict.fromkeys(k for row in runs.rows for k in row))
    kept = list(zip(runs.rows, runs.typed))
    for condition in conditions:
        negate = "!=" in condition
        key, _, value = condition.partition("!=" if negate else "=")
        key, value = key.strip(), value.strip()
        if not key or ("=" not in condition):
            raise UserError(f"--where {condition} is not KEY=VALUE (or KEY!=VALUE), e.g. --where data=digits")
        if key not in every:
            raise UserError(f"--where {condition}: {key} is not a column: columns are {', '.join(every)}")
        kept = [(row, typed) for row, typed in kept if _matches(row.get(key), value) != negate]
    return RunRows([row for row, _ in kept], [typed for _, typed in kept])


def _matches(value, wanted: str) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(wanted) == float(value)
        except ValueError:
            return False
    text = "null" if value is None else setting(value) if not isinstance(value, str) else value
    return text.replace(" ", "") == wanted.replace(" ", "")


@dataclass
class RunGroup:
    label: str  # data=digits · val_accuracy
    metric: str | None
    runs: RunRows


def group_runs(runs: RunRows) -> list[RunGroup]:
    """Runs on different data sets, or judged by different metrics, are not comparable: one group
    per (data, validation metric), in the order first met. A run with no metric (failed early)
    joins its data set's group."""
    keys = []
    for row in runs.rows:
        metric = next((k for k in row if is_monitor(k) and row[k] is not None), None)
        source = row.get("data.path") or row.get("data.root")  # data=csv on two files: two data sets
        keys.append((row.get("data"), str(source) if source else None, metric))
    for i, (data, source, metric) in enumerate(keys):
        if metric is None:
            keys[i] = next((k for k in keys if k[:2] == (data, source) and k[2] is not None), (data, source, None))
    groups: dict = {}
    for key, row, typed in zip(keys, runs.rows, runs.typed):
        groups.setdefault(key, ([], []))
        groups[key][0].append(row)
        groups[key][1].append(typed)
    return [RunGroup(" · ".join(p for p in (_data_label(data, source), metric) if p), metric, RunRows(rows, typed))
            for (data, source, metric), (rows, typed) in groups.items()]


def _data_label(data, source) -> str | None:
    if data is None:
        return None
    return f"data={data} ({_shown_path(source)})" if source else f"data={data}"


def _shown_path(source: str) -> str:
    """A data path as short as it is unambiguous here: relative to this directory when inside it (a
    run records its data.path absolute)."""
    try:
        return str(Path(source).relative_to(Path.cwd()))
    except ValueError:
        return source


def best_first(group: RunGroup) -> None:
    """Sort a group's runs by its validation metric, best first (runs without one last)."""
    if group.metric is None:
        return
    sign = -1 if monitor_mode(group.metric) == "max" else 1
    order = sorted(range(len(group.runs.rows)), key=lambda i: _sort_key(group.runs.rows[i].get(group.metric), sign))
    group.runs = RunRows([group.runs.rows[i] for i in order], [group.runs.typed[i] for i in order])


def _sort_key(value, sign: int):
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return (0, sign * value)
    return (1, 0)
