"""`dl runs diff`: why two (or more) runs ended differently.

Each run's facts are read from its files (config.yaml, summary.json, split.json, metrics.csv: data,
never code, for a run may come from anyone) and grouped as a reader asks about them: the settings,
the data, the code, the machine, the seed. Only the facts that differ are kept; the sections with
nothing differing are named, so that "the same data and code" is said too. Then the headline
numbers side by side, and the first epoch where a run's losses part from the first run's by more
than a relative tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from dlcli.errors import UserError
from dlcli.rundir.collect import NOT_COMPARED, comparable, flat_config
from dlcli.rundir.directory import find_run, read_json, read_metrics, read_summary

RELATIVE_TOLERANCE = 1e-3  # losses within 0.1% of each other agree (float sums in another order differ by ~1e-7)
NOT_RECORDED = "not recorded"  # a fact a run written by an earlier dl does not hold
ABSENT = "absent"  # a setting one run's config has and another's has not (a setting added since, a model's own)
SEED_KEYS = ("seed", "split.seed")
DATA_KEYS = ("data._target_", "data.path", "data.root")  # shown in the data section, not again among the settings
CURVE_COLUMNS = ("train_loss", "val_loss")
SECTIONS = ("config", "data", "code", "environment", "seed")


@dataclass
class Parting:
    """Where one run's losses first leave the first run's (epoch None: they never do)."""

    run: str
    epochs_compared: int
    epoch: int | None = None
    column: str | None = None
    values: tuple[float, float] | None = None  # the first run's, this run's

    def to_json(self) -> dict:
        return {"run": self.run, "epochs_compared": self.epochs_compared, "epoch": self.epoch, "column": self.column,
                "values": list(self.values) if self.values else None}


@dataclass
class RunsDiff:
    runs: list[str]
    differ: dict[str, dict[str, list]]  # section -> fact -> one value per run: only the facts that differ
    same: list[str]  # the sections in which nothing differs
    metrics: dict[str, list]  # the headline numbers, one per run, whether or not they differ
    partings: list[Parting] = field(default_factory=list)  # each run after the first against the first
    tolerance: float = RELATIVE_TOLERANCE

    def to_json(self) -> dict:
        return {"runs": self.runs, "differ": self.differ, "same": self.same, "metrics": self.metrics,
                "curves": {"relative_tolerance": self.tolerance, "compared_to": self.runs[0],
                           "columns": list(CURVE_COLUMNS), "runs": [p.to_json() for p in self.partings]}}


def diff_runs(paths: Sequence[str]) -> RunsDiff:
    """What differs between the runs at `paths` (two or more run directories, each once)."""
    run_dirs = _checked_runs(paths)
    facts = [run_facts(run_dir) for run_dir in run_dirs]
    differ = {}
    for section in SECTIONS:
        keys = list(dict.fromkeys(k for fact in facts for k in fact[section]))
        missing = ABSENT if section == "config" else NOT_RECORDED
        varying = {k: [fact[section].get(k, missing) for fact in facts] for k in keys}
        varying = {k: values for k, values in varying.items() if len({comparable(v) for v in values}) > 1}
        if varying:
            differ[section] = varying
    metric_keys = list(dict.fromkeys(k for fact in facts for k in fact["metrics"]))
    metrics = {k: [fact["metrics"].get(k) for fact in facts] for k in metric_keys}
    curves = [read_metrics(run_dir / "metrics.csv") for run_dir in run_dirs]
    partings = [first_parting(str(path), curves[0], rows) for path, rows in zip(paths[1:], curves[1:])]
    return RunsDiff([str(p) for p in paths], differ, [s for s in SECTIONS if s not in differ], metrics, partings)


def _checked_runs(paths: Sequence[str]) -> list[Path]:
    if len(paths) < 2:
        given = f" ({paths[0]})" if paths else ""
        raise UserError(f"dl runs diff needs two runs or more, got {len(paths)}{given}: e.g. dl runs diff runs/train/A runs/train/B")
    run_dirs = [find_run(path) for path in paths]
    seen: dict[Path, str] = {}
    for path, run_dir in zip(paths, run_dirs):
        where = run_dir.resolve()
        if where in seen:
            raise UserError(f"{seen[where]} and {path} are the same run: give two different runs")
        seen[where] = path
    return run_dirs


def run_facts(run_dir: Path) -> dict[str, dict]:
    """One run's facts, section by section, as its files record them (a fact its files do not
    hold is NOT_RECORDED)."""
    summary = read_summary(run_dir)
    config = flat_config(run_dir)
    split = _json_or_empty(run_dir / "split.json")
    return {
        "config": {k: v for k, v in config.items() if k not in (*NOT_COMPARED, *SEED_KEYS, *DATA_KEYS)},
        "data": _data_facts(summary, config, split),
        "code": _code_facts(summary),
        "environment": _environment_facts(summary, config),
        "seed": {k: config.get(k, summary.get(k, NOT_RECORDED)) for k in SEED_KEYS},
        "metrics": _headline(summary),
    }


def _json_or_empty(path: Path) -> dict:
    try:
        return read_json(path)
    except UserError:
        return {}


def _recorded(record, key: str):
    """record[key] from a dict a run holds, or NOT_RECORDED (record absent, or not an object)."""
    return record.get(key, NOT_RECORDED) if isinstance(record, dict) else NOT_RECORDED


def _data_facts(summary: dict, config: dict, split: dict) -> dict:
    sizes = split.get("sizes") if isinstance(split.get("sizes"), dict) else {}
    facts = {
        "data set": summary.get("data", NOT_RECORDED),
        "source": config.get("data._target_", NOT_RECORDED),
        "path": config.get("data.path", config.get("data.root")),
        "content fingerprint": summary.get("data_fingerprint") or NOT_RECORDED,
    }
    facts.update({f"{part} rows": sizes.get(part, NOT_RECORDED) for part in ("train", "val", "test")})
    hashes = split.get("hashes")
    facts["rows in each split"] = " ".join(f"{p}:{hashes[p]}" for p in sorted(hashes)) if isinstance(hashes, dict) else NOT_RECORDED
    return facts


def _code_facts(summary: dict) -> dict:
    code = summary.get("code")
    return {
        "dl version": _recorded(summary.get("versions"), "dlcli"),
        "dl commit": _recorded(code, "commit"),
        "dl uncommitted changes": _recorded(code, "dirty"),
        "project commit": summary.get("git_commit", NOT_RECORDED),  # the working directory's repository
    }


def _environment_facts(summary: dict, config: dict) -> dict:
    environment, versions = summary.get("environment"), summary.get("versions")
    # a multi-process run's launcher records world_size and per_rank_batch; trainer.devices says it for any run
    world = summary.get("world_size") or config.get("trainer.devices") or 1
    batch = config.get("trainer.batch_size")
    return {
        "host": _recorded(environment, "host"),
        "platform": _recorded(environment, "platform"),
        "device": summary.get("device", _recorded(environment, "device")),
        "gpu": _recorded(environment, "gpu"),
        "torch": _recorded(versions, "torch"),
        "CUDA (torch's build)": _recorded(environment, "cuda"),
        "cuDNN": _recorded(environment, "cudnn"),
        "python": _recorded(versions, "python"),
        "numpy": _recorded(versions, "numpy"),
        "scikit-learn": _recorded(versions, "scikit-learn"),
        "processes (world size)": world,
        "batch per process": summary.get("per_rank_batch", batch // world if isinstance(batch, int) and isinstance(world, int) else NOT_RECORDED),
        "CPU threads per process": _recorded(environment, "threads"),
        "CPU cores": _recorded(environment, "cores"),
    }


def _headline(summary: dict) -> dict:
    """The numbers a run ended with: its best validation value and epoch, its test numbers, its time."""
    monitor = summary.get("monitor")
    numbers = {"status": summary.get("status"), "epochs": summary.get("epochs_completed"), "best epoch": summary.get("best_epoch")}
    if monitor:
        numbers[f"best {monitor}"] = summary.get(f"best_{monitor}")
    numbers.update({f"test {k}": v for k, v in (summary.get("test") or {}).items() if k not in ("epoch", "samples")})
    numbers["wall seconds"] = summary.get("wall_seconds")
    return numbers


def first_parting(run: str, first: list[dict], other: list[dict], tolerance: float = RELATIVE_TOLERANCE) -> Parting:
    """The first epoch at which `other`'s losses differ from `first`'s by more than `tolerance` of
    the larger (a value on one side only, or NaN on one side, parts too)."""
    by_epoch = {row.get("epoch"): row for row in first}
    compared = 0
    for row in other:
        mine = by_epoch.get(row.get("epoch"))
        if mine is None:
            continue
        compared += 1
        for column in CURVE_COLUMNS:
            a, b = mine.get(column), row.get(column)
            if a is None and b is None:
                continue
            if not _agree(a, b, tolerance):
                return Parting(run, compared, row["epoch"], column, (a, b))
    return Parting(run, compared)


def _agree(a, b, tolerance: float) -> bool:
    if a is None or b is None:
        return False
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tolerance * max(abs(a), abs(b)) or a == b
