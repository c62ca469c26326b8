"""One trial of a sweep: compose its overrides, train in trials/<NNN>/ (never touching the test
split), and return a record of how it went. Runs the same in this process, in a process pool, or
as a Ray task: everything it needs travels in a TrialSpec."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import statistics
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from rich.console import Console

from dlcli.config.compose import compose
from dlcli.engine.progress import Reporter
from dlcli.errors import RunFailed, UserError, first_line
from dlcli.run.kfold import train_kfold
from dlcli.run.launch import train_distributed
from dlcli.run.request import RunRequest
from dlcli.run.single import new_run
from dlcli.rundir.directory import read_summary, update_summary
from dlcli.sweep.prune import StudyReporting
from dlcli.sweep.study import STUDY_NAME, Pruning
from dlcli.system.files import open_append
from dlcli.trust.received import never_write_where_it_names


@dataclass
class TrialSpec:
    number: int
    params: dict[str, str]  # the swept values of this trial
    fixed: list[str]  # overrides shared by every trial
    trial_dir: str
    metric: str  # e.g. val_accuracy
    mode: str  # max | min
    pruning: Pruning = field(default_factory=Pruning)
    threads: int = 1
    config_dirs: list[str] = field(default_factory=list)
    device: str | None = None  # e.g. cuda:1 when each trial gets its own GPU
    extra: list[str] = field(default_factory=list)  # set by the sweep, e.g. the parent MLflow run
    sweep_dir: str | None = None  # where the sweep's Optuna study is (study.journal)
    trial_id: int | None = None  # this trial in that study: it reports its epochs (or folds) there for pruning
    study_name: str = STUDY_NAME
    received: bool = False  # the overrides come from a sweep.yaml read back (--resume): no download, no cache where it says
    storage: str | None = None  # the study's database URL (its password in the environment), instead of the journal

    @property
    def overrides(self) -> list[str]:
        extra = [f"trainer.device={self.device}"] if self.device else []
        # the sweep's metric also picks each trial's best checkpoint, the one the test split sees
        # trials draw no pictures of their own: the sweep draws sweep.png and the best trial's curves
        return [*self.fixed, *(f"{k}={v}" for k, v in self.params.items()), "trainer.progress=false", "trainer.plots=false",
                f"trainer.monitor={self.metric}", *extra, *self.extra]


def run_trial(spec: TrialSpec) -> dict:
    """Train one trial; failures (bad config, crash, out of memory, divergence) become records."""
    torch.set_num_threads(spec.threads)
    trial_dir = Path(spec.trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)  # made when the trial starts: an unstarted trial has none
    started = time.perf_counter()
    record = {"number": spec.number, "status": "failed", "params": spec.params, "run_dir": str(trial_dir), "message": None}
    try:
        cfg = compose(spec.overrides, spec.config_dirs)
        if spec.received:
            never_write_where_it_names(cfg)  # no download into data.root, no cache in data.cache_dir: the file may name them
        reporter = Reporter(Console(file=io.StringIO()), show_progress=False)
        reporter.warnings_silenced = True  # a trial's warnings stay in its train.log (and summary.json)
        # its epochs (or folds) go to the sweep's study: for the pruner and for optuna-dashboard's curves
        study = StudyReporting(Path(spec.sweep_dir), spec.study_name, spec.trial_id, spec.pruning, spec.metric, spec.storage) \
            if spec.trial_id is not None else None
        # trials never look at the test split
        request = RunRequest(cfg, spec.overrides, reporter, evaluate_test=False, run_dir=trial_dir)
        if int(cfg.trainer.get("devices", 1)) > 1:  # several processes: the pruner goes along as a config callback
            result = train_distributed(request, quiet=True, rank_zero_callbacks=[_study_callback(spec)] if study is not None else [],
                                       threads=spec.threads)
        elif cfg.split.get("kfold") is not None and cfg.split.get("fold") is None:  # a cross-validated trial
            result = train_kfold(request, after_fold=study.after_fold if study else None)
        else:
            result = new_run(replace(request, callbacks=[study] if study else []))
        record.update(status=result.status, message=result.summary.get("message"))
    except KeyboardInterrupt:
        record.update(status="interrupted", message="interrupted before training began")
    except (UserError, RunFailed) as exc:
        record["message"] = str(exc)
    except Exception as exc:  # a crash in one trial must not end the sweep; its traceback goes to its train.log
        if not (trial_dir / "summary.json").exists():  # it crashed before its run began (a run logs its own)
            with open_append(trial_dir / "train.log") as log:
                log.write(traceback.format_exc())
        first = first_line(exc, default="")
        record["message"] = f"{type(exc).__name__}: {first} (traceback in {trial_dir / 'train.log'})"
    if record["status"] in ("failed", "interrupted") and not (trial_dir / "summary.json").exists():
        update_summary(trial_dir, status=record["status"], message=record["message"])  # ended before training began
    record["seconds"] = time.perf_counter() - started
    record.update(trial_outcome(trial_dir, spec.metric, spec.mode))
    record["pid"] = os.getpid()
    return record


def _study_callback(spec: TrialSpec) -> dict:
    """The trial's study reporting as rank 0 of a multi-process trial builds it (a class and its
    arguments: the object itself cannot travel to a spawned process)."""
    return {"_target_": "dlcli.sweep.prune.StudyReporting", "sweep_dir": str(spec.sweep_dir), "study_name": spec.study_name,
            "trial_id": spec.trial_id, "pruning": dataclasses.asdict(spec.pruning), "metric": spec.metric, "storage": spec.storage}


def trial_outcome(trial_dir: Path, metric: str, mode: str) -> dict:
    """What a finished trial scored on the sweep's metric: its best epoch's value (and val_loss
    there, the first tie-break), or for a cross-validated trial the mean over its completed folds,
    their standard deviation, and their mean best epoch (rounded half up, as a refit trains)."""
    if not (trial_dir / "kfold.json").is_file() and not (trial_dir / "fold-1").is_dir():
        return best_value(trial_dir / "metrics.csv", metric, mode)
    folds = []
    for number in range(1, 10_000):
        fold_dir = trial_dir / f"fold-{number}"
        if not fold_dir.is_dir():
            break
        outcome = best_value(fold_dir / "metrics.csv", metric, mode)
        if outcome["value"] is not None and _fold_status(fold_dir) == "completed":
            folds.append(outcome)
    if not folds:
        return {"value": None, "best_epoch": None, "val_loss": None, "std": None, "folds": 0}  # folds: a k-fold trial
    losses = [f["val_loss"] for f in folds if f["val_loss"] is not None]
    mean_epoch = statistics.fmean(f["best_epoch"] for f in folds)
    return {"value": statistics.fmean(f["value"] for f in folds),
            "std": statistics.stdev(f["value"] for f in folds) if len(folds) > 1 else None,
            "best_epoch": max(1, int(mean_epoch + 0.5)),
            "val_loss": statistics.fmean(losses) if len(losses) == len(folds) else None, "folds": len(folds)}


def _fold_status(fold_dir: Path) -> str | None:
    return read_summary(fold_dir).get("status") if (fold_dir / "summary.json").is_file() else None


def best_value(metrics_csv: Path, metric: str, mode: str) -> dict:
    """The run's best value of the sweep metric over its epochs, the epoch it came at (the earliest
    of equal ones), and the validation loss at that epoch."""
    try:
        with metrics_csv.open() as f:
            rows = [r for r in csv.DictReader(f) if r.get(metric) not in (None, "")]
    except FileNotFoundError:
        rows = []
    if not rows:
        return {"value": None, "best_epoch": None, "val_loss": None}
    pick = max if mode == "max" else min
    best = pick(rows, key=lambda r: float(r[metric]))  # max/min keep the first of equal values
    loss = best.get("val_loss")
    return {"value": float(best[metric]), "best_epoch": int(best["epoch"]), "val_loss": float(loss) if loss not in (None, "") else None}
