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
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import OmegaConf

from dlcli.config.constraints import check
from dlcli.config.schema import CONSTRAINTS, SWEEP_KINDS
from dlcli.errors import UserError, first_line
from dlcli.system.files import as_mkdir_would, write_atomically, write_text as write_fresh
from dlcli.rundir.lock import RunLock, can_tell_liveness, is_training
from dlcli.trust.moved_targets import modernize
from dlcli.trust.received import never_write_where_it_names, read_json as read_received, read_yaml
from dlcli.trust.workdir import opening

CHECKPOINTS = ("best", "last")  # checkpoints/<name>.pt of every run
ARTIFACTS_DIR = "mlartifacts"  # MLflow's artifact store beside <runs_dir>/mlflow.db: not a run
METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_{m}", "val_loss", "val_{m}", "seconds", "samples_per_second")


def create_run_dir(runs_dir: str | Path, name: str, now: dt.datetime | None = None, checkpoints: bool = True,
                   populate: Callable[[Path], None] | None = None) -> Path:
    """A new run directory that appears complete: `populate` writes its first files into a hidden
    temporary directory beside it, which is then renamed into place. An error or Ctrl-C before
    that leaves nothing behind. A second run in the same second gets -1, -2, ..."""
    check("name", name, CONSTRAINTS["name"])  # one folder under runs_dir, whatever command names it
    check("runs_dir", str(runs_dir), CONSTRAINTS["runs_dir"])
    parent = Path(str(runs_dir)) / str(name)
    stamp = (now or dt.datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    created = _make_parents(parent, runs_dir)
    temporary = reserved = None
    try:
        temporary = as_mkdir_would(Path(tempfile.mkdtemp(prefix=f".{stamp}.", suffix=".partial", dir=parent)))
        if checkpoints:
            (temporary / "checkpoints").mkdir()
        if populate is not None:
            populate(temporary)
        for suffix in range(10_000):
            path = parent / (stamp if suffix == 0 else f"{stamp}-{suffix}")
            try:
                path.mkdir()  # reserves the name: two processes never get the same directory
            except FileExistsError:
                continue
            reserved = path
            try:
                os.rename(temporary, path)  # replaces the empty reservation (POSIX)
            except OSError:
                path.rmdir()  # where a rename cannot replace a directory
                os.rename(temporary, path)
            return path
        raise RuntimeError(f"could not create a run directory under {parent}")
    except BaseException:
        if reserved is not None and reserved.is_dir() and not any(reserved.iterdir()):
            reserved.rmdir()
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
        _remove_empty(created)  # the runs/ and runs/<name>/ this call made
        raise


@dataclass
class RunStart:
    """The first files of a new run (or k-fold, or sweep) directory, written before it appears."""

    texts: dict[str, str] = field(default_factory=dict)  # config.yaml, overrides.yaml, sweep.yaml, ...
    jsons: dict[str, dict] = field(default_factory=dict)  # split.json, preprocessing.json, ...
    summary: dict = field(default_factory=dict)  # summary.json's first fields
    folders: tuple[str, ...] = ()  # checkpoints, trials, ...
    then: Callable[[Path], None] | None = None  # anything else (a first last.pt, copied checkpoints)


def start_run_dir(runs_dir: str | Path, name: str, start: RunStart, into: Path | None = None) -> tuple[Path, RunLock]:
    """A new directory under <runs_dir>/<name>/ (or `into`, an empty one a sweep or k-fold parent made)
    holding `start`'s files, and the lock of whoever trains in it (taken before it appears, so it
    is held across the rename: the lock is on the file, not its path)."""
    lock = None

    def populate(directory: Path) -> None:
        nonlocal lock
        for folder in start.folders:
            (directory / folder).mkdir(exist_ok=True)
        lock = RunLock(directory).acquire()
        for file, text in start.texts.items():
            write_text(directory / file, text)
        for file, content in start.jsons.items():
            write_json(directory / file, content)
        update_summary(directory, **start.summary)
        if start.then is not None:
            start.then(directory)

    if into is None:
        return create_run_dir(runs_dir, name, checkpoints=False, populate=populate), lock
    populate(into)
    return into, lock


def config_text(cfg) -> str:
    """A config as config.yaml holds it: resolved, so that reading it back resolves nothing."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def overrides_text(overrides: Sequence[str]) -> str:
    return OmegaConf.to_yaml(OmegaConf.create([str(o) for o in overrides]))


def _make_parents(parent: Path, runs_dir) -> list[Path]:
    """Create runs/<name>/ as needed; the directories made, outermost first. A runs_dir that
    cannot hold runs is the user's to fix: one line saying why, and nothing left behind."""
    missing = [p for p in (*reversed(parent.parents), parent) if not p.exists()]
    try:
        parent.mkdir(parents=True, exist_ok=True)
        Path(tempfile.mkdtemp(dir=parent, prefix=".probe-")).rmdir()
    except OSError as exc:
        _remove_empty(missing)
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            raise UserError(f"runs_dir={runs_dir} cannot hold runs: {_first_file(parent)} is a file, not a directory: "
                            "choose another runs_dir=PATH") from None
        raise UserError(f"runs_dir={runs_dir} cannot hold runs: {exc.strerror or exc}: choose a writable runs_dir=PATH") from None
    return missing


def _remove_empty(directories: list[Path]) -> None:
    for directory in reversed(directories):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def _first_file(path: Path) -> Path:
    for candidate in (*reversed(path.parents), path):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return path


def write_text(path: Path, text: str) -> None:
    """Whole or not at all, into a fresh file that replaces `path` (dlcli.system.files: never through a link)."""
    write_fresh(path, text)


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(jsonable(data), indent=2) + "\n")


def read_json(path: Path) -> dict:
    """A JSON file of a run (which may come from someone else): bounded, and a JSON object, as
    every file dl writes there is; a damaged one is a one-line error."""
    content = read_received(path)
    if not isinstance(content, dict):
        raise UserError(f"{path} is not a JSON object, as dl writes it: restore it from a copy of the run")
    return content


def jsonable(value):
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def metric_columns(metric: str) -> list[str]:
    return [c.format(m=metric) for c in METRIC_COLUMNS]


def write_metrics(path: Path, rows: list[dict], columns: list[str]) -> None:
    """metrics.csv with exactly these rows, written atomically (a run's start, resume or abnormal end)."""
    def write(file) -> None:
        writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    write_atomically(path, write)


def read_metrics(path: Path, up_to: int | None = None) -> list[dict]:
    """The rows of metrics.csv as numbers (epoch as int), optionally only epochs <= up_to.
    Floats are written with repr, so they read back bit-identical."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        while True:
            line = len(rows) + 2  # the header is line 1
            try:
                row = next(reader, None)
                if row is None:
                    break
                rows.append({k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v not in (None, "")})
            except (TypeError, ValueError, csv.Error):  # not numbers, not UTF-8 (a ValueError), a field past csv's limit
                raise UserError(f"{path} is damaged at line {line}: restore it from a copy of the run") from None
    return [row for row in rows if up_to is None or row.get("epoch", 0) <= up_to]


# summary.json's fields that dl reads back, with the types it writes: in a file from someone else a
# field of another type is read as absent (dl runs lists it, resume and refit say what is missing)
SUMMARY_TYPES = {
    "status": str, "kind": str, "name": str, "task": str, "data": str, "model": str, "metric": str, "monitor": str,
    "message": (str, type(None)), "epochs_completed": int, "best_epoch": (int, type(None)), "stopped_early": bool,
    "wall_seconds": (int, float), "initial_loss": (int, float, type(None)), "num_classes": (int, type(None)),
    "diagnosis": list, "test": (dict, type(None)), "logger_failures": dict, "trials": int, "best_trial": (int, type(None)),
}


def read_summary(run_dir: Path) -> dict:
    """A run's summary.json with every field dl reads back of the type dl writes (others dropped)."""
    summary = read_json(Path(run_dir) / "summary.json")
    clean = {}
    for key, value in summary.items():
        kind = SUMMARY_TYPES.get(key)
        if kind is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int, type(None))))):
            continue
        if key == "diagnosis" and not all(isinstance(code, str) for code in value):
            continue
        if key == "test" and value is not None:
            value = {k: v for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        clean[key] = value
    return clean


def update_summary(run_dir: Path, **fields) -> dict:
    path = run_dir / "summary.json"
    summary = read_summary(run_dir) if path.exists() else {}
    summary.update(fields)
    write_json(path, summary)
    return summary


def check_checkpoint_name(checkpoint: str) -> None:
    if checkpoint not in CHECKPOINTS:
        raise UserError(f"--checkpoint {checkpoint} is not valid: choose one of {', '.join(CHECKPOINTS)}")


def checkpoint_path(run: Path, checkpoint: str) -> Path:
    """checkpoints/<checkpoint>.pt of a run, or a one-line reason it has none (and which it has)."""
    check_checkpoint_name(checkpoint)
    path = Path(run) / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        others = [c for c in CHECKPOINTS if c != checkpoint and (Path(run) / "checkpoints" / f"{c}.pt").is_file()]
        fix = f"choose --checkpoint {others[0]}" if others else "train (or resume) the run until it saves one"
        raise UserError(f"--checkpoint {checkpoint}: {run} has no checkpoints/{checkpoint}.pt: {fix}")
    return path


def is_kfold_parent(path) -> bool:
    """A k-fold run: one model per fold in fold-N/, and kfold.json over them."""
    summary = Path(str(path)).expanduser() / "summary.json"
    return summary.is_file() and read_json(summary).get("kind") == "kfold"


def is_sweep_dir(path) -> bool:
    """A sweep: sweep.yaml and trials/<NNN>/, each trial a run (or a k-fold parent)."""
    path = Path(str(path)).expanduser()
    return (path / "sweep.yaml").is_file() and (path / "trials").is_dir()


STAMP = re.compile(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(-\d+)?")  # create_run_dir's names: 2026-11-24_10-31-07[-N]


def runs_dir_holding(directory: str | Path) -> Path | None:
    """The runs directory that holds a run, sweep or k-fold directory, by where dl puts each one:
    <runs_dir>/<name>/<timestamp>/ (a sweep: <runs_dir>/sweeps/<name>/<timestamp>/), a fold at
    <k-fold parent>/fold-N/, a trial at <sweep>/trials/NNN/. None for a directory that is not laid
    out so (a run copied to a folder of another name): it has no runs directory."""
    path = Path(directory).expanduser().resolve()
    if re.fullmatch(r"fold-\d+", path.name):
        path = path.parent  # a fold: its k-fold parent (itself perhaps a sweep's trial)
    if path.parent.name == "trials" and re.fullmatch(r"\d{3,}", path.name):
        path = path.parent.parent  # a trial: its sweep
    if not STAMP.fullmatch(path.name) or len(path.parents) < 2:
        return None
    if path.parent.parent.name == "sweeps" and len(path.parents) > 2 and is_sweep_dir(path):
        return path.parents[2]
    return path.parents[1]


def best_trial(sweep_dir: Path) -> Path:
    """The directory of a sweep's best trial, by the number its summary records (never a path it
    holds: a received sweep's summary must not lead out of it)."""
    summary = read_summary(sweep_dir) if (sweep_dir / "summary.json").is_file() else {}
    number = summary.get("best_trial")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 1_000_000:
        saved = read_yaml(sweep_dir / "sweep.yaml")
        kind = saved.get("kind") if isinstance(saved, dict) else None
        if kind not in SWEEP_KINDS:  # no kind to finish it with: a resume would refuse this sweep.yaml too
            raise UserError(f"{sweep_dir} has no best trial (none completed), and its sweep.yaml names no kind of sweep "
                            f"({', '.join(SWEEP_KINDS)}): restore sweep.yaml from a copy, or start a new sweep")
        raise UserError(f"{sweep_dir} has no best trial (none completed): finish the sweep with dl sweep {kind} --resume {sweep_dir}")
    trial = sweep_dir / "trials" / f"{number:03d}"
    if not trial.is_dir():
        raise UserError(f"{sweep_dir}'s best trial {trial} is missing: restore the sweep from a copy")
    return trial


def find_run(path: str | Path) -> Path:
    """A run directory given by the user, checked to be one (and, from now on, received: dlcli.trust.workdir)."""
    run_dir = Path(path).expanduser()
    opening(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{path} is not a directory: give a run directory such as runs/train/<timestamp>")
    if is_sweep_dir(run_dir):
        raise UserError(f"{path} is a sweep, with one run per trial: give one trial (e.g. {run_dir / 'trials' / '000'}; "
                        f"the best is in {run_dir / 'best.yaml'}), or refit its best with dl train refit={run_dir}")
    if is_kfold_parent(run_dir):
        raise UserError(f"{path} is a k-fold run, with one model per fold: give one fold (e.g. {run_dir / 'fold-1'}); "
                        f"the folds' numbers are in {run_dir / 'kfold.json'}")
    missing = [f for f in ("config.yaml", "split.json", "summary.json") if not (run_dir / f).is_file()]
    if missing:
        raise UserError(f"{path} is not a dl run directory (no {missing[0]}): give one such as runs/train/<timestamp>")
    return run_dir


def effective_status(run_dir: Path, summary: dict) -> str:
    """The summary's status, except that a `running` run nobody is training was killed."""
    status = summary.get("status")
    if status == "running" and can_tell_liveness() and not is_training(run_dir):
        return "killed"
    return status


def load_saved_config(run_dir: Path, trust: Sequence[str] = ()):
    """A run's config.yaml, read back safely (dlcli.trust.received: bounded plain YAML, no
    interpolation), with every `_target_` trusted (dlcli.trust.targets), so that opening a run someone
    sent never runs their code."""
    from dlcli.trust.targets import check_trusted_targets  # noqa: PLC0415  (dl --help runs without hydra: dlcli.trust.targets imports it)

    opening(run_dir)  # before trust.yaml is looked for: inside it, ./conf vouches for nothing
    path = Path(run_dir) / "config.yaml"
    content = read_yaml(path)
    if not isinstance(content, dict) or "trainer" not in content or "data" not in content:
        raise UserError(f"{path} is not a dl run config (no data or trainer section): restore it from a copy of the run")
    modernize(content)  # a run written by an earlier dl names classes where they were then
    check_trusted_targets(content, trust, source=str(path))
    never_write_where_it_names(content)  # no download, no cache where a saved file says (a dl train of your own may)
    try:
        return OmegaConf.create(content)
    except Exception as exc:  # keys OmegaConf cannot hold (not strings): not a config dl wrote
        raise UserError(f"{path} is not a dl run config ({first_line(exc)}): restore it from a copy of the run") from None


def git_commit() -> str | None:
    """The commit of the working directory's repository (the user's project), if there is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
