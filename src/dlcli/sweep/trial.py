"""One trial of a sweep: compose its overrides, train in trials/<NNN>/ (never touching the test
split), and return a record of how it went. Runs the same in this process, in a process pool, or
as a Ray task: everything it needs travels in a TrialSpec."""

from __future__ import annotations

import csv
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from dlcli.errors import first_line


@dataclass
class TrialSpec:
    number: int
    params: dict[str, str]  # the swept values of this trial
    fixed: list[str]  # overrides shared by every trial
    trial_dir: str
    metric: str  # e.g. val_accuracy
    mode: str  # max | min
    prune: str = "none"
    threads: int = 1
    config_dirs: list[str] = field(default_factory=list)
    device: str | None = None  # e.g. cuda:1 when each trial gets its own GPU
    extra: list[str] = field(default_factory=list)  # set by the sweep, e.g. the parent MLflow run
    sweep_dir: str | None = None  # where the sweep's Optuna study is (study.journal)
    trial_id: int | None = None  # this trial in that study: it reports its epochs there for pruning
    max_epochs: int = 1  # the most epochs any trial trains: Hyperband's budget, the same in every worker

    @property
    def overrides(self) -> list[str]:
        extra = [f"trainer.device={self.device}"] if self.device else []
        # the sweep's metric also picks each trial's best checkpoint, the one the test split sees
        # trials draw no pictures of their own: the sweep draws sweep.png and the best trial's curves
        return [*self.fixed, *(f"{k}={v}" for k, v in self.params.items()), "trainer.progress=false", "trainer.plots=false",
                f"trainer.monitor={self.metric}", *extra, *self.extra]


def run_trial(spec: TrialSpec) -> dict:
    """Train one trial; failures (bad config, crash, out of memory, divergence) become records."""
    import io

    import torch
    from rich.console import Console

    from dlcli.config import compose
    from dlcli.engine.progress import Reporter
    from dlcli.errors import RunFailed, UserError
    from dlcli.runs import update_summary
    from dlcli.sweep.prune import StudyReporting
    from dlcli.training import new_run

    torch.set_num_threads(spec.threads)
    trial_dir = Path(spec.trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)  # made when the trial starts: an unstarted trial has none
    started = time.perf_counter()
    record = {"number": spec.number, "status": "failed", "params": spec.params, "run_dir": str(trial_dir), "message": None}
    try:
        cfg = compose(spec.overrides, spec.config_dirs)
        study = None  # its epochs go to the sweep's study: for the pruner and for optuna-dashboard's curves
        if spec.trial_id is not None:
            study = StudyReporting(Path(spec.sweep_dir), spec.trial_id, spec.prune, spec.metric, spec.max_epochs)
        reporter = Reporter(Console(file=io.StringIO()), show_progress=False)
        reporter.warnings_silenced = True  # a trial's warnings stay in its train.log (and summary.json)
        result = new_run(cfg, spec.overrides, reporter, run_dir=trial_dir, evaluate_test=False,
                         callbacks=[study] if study else [])
        record.update(status=result.status, message=result.summary.get("message"))
    except KeyboardInterrupt:
        record.update(status="interrupted", message="interrupted before training began")
    except (UserError, RunFailed) as exc:
        record["message"] = str(exc)
    except Exception as exc:  # a crash in one trial must not end the sweep; its traceback goes to its train.log
        if not (trial_dir / "summary.json").exists():  # it crashed before its run began (a run logs its own)
            from dlcli.files import open_append

            with open_append(trial_dir / "train.log") as log:
                log.write(traceback.format_exc())
        first = first_line(exc, default="")
        record["message"] = f"{type(exc).__name__}: {first} (traceback in {trial_dir / 'train.log'})"
    if record["status"] in ("failed", "interrupted") and not (trial_dir / "summary.json").exists():
        update_summary(trial_dir, status=record["status"], message=record["message"])  # ended before training began
    record["seconds"] = time.perf_counter() - started
    record.update(best_value(trial_dir / "metrics.csv", spec.metric, spec.mode))
    record["pid"] = os.getpid()
    return record


def best_value(metrics_csv: Path, metric: str, mode: str) -> dict:
    """The trial's best value of the sweep metric over its epochs, and the epoch it came at."""
    try:
        with metrics_csv.open() as f:
            rows = [r for r in csv.DictReader(f) if r.get(metric) not in (None, "")]
    except FileNotFoundError:
        rows = []
    if not rows:
        return {"value": None, "best_epoch": None}
    pick = max if mode == "max" else min
    best = pick(rows, key=lambda r: float(r[metric]))
    return {"value": float(best[metric]), "best_epoch": int(best["epoch"])}
