"""`dl train` as a library function: build, create the run directory, fit, test once, summarize."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from dlcli.engine.checkpoint import copy_checkpoint, load_checkpoint, restore, save_checkpoint
from dlcli.engine.fit import FitState, NonFiniteLoss, fit
from dlcli.engine.progress import Reporter
from dlcli.errors import TrialPruned, UserError
from dlcli.evaluate import check_same_split, evaluate_checkpoint
from dlcli.experiment import Experiment, build_experiment
from dlcli.plots import plot_curves
from dlcli.runs import create_run_dir, find_run, read_json, update_summary, write_json, write_metrics, write_text

# Overrides that may accompany resume=RUN_DIR: where and how it runs, not what it computes.
RESUME_OVERRIDES = ("resume", "trainer.device", "trainer.progress")


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict

    @property
    def status(self) -> str:
        return self.summary["status"]


def train(
    cfg: DictConfig,
    overrides: Sequence[str] = (),
    reporter: Reporter | None = None,
    run_dir: Path | None = None,
    evaluate_test: bool = True,
    after_epoch: Callable[[FitState], None] | None = None,
) -> TrainResult:
    """Train the composed config in a new run directory (or continue one with resume=RUN_DIR).

    With split.kfold=K this trains K models, one per fold, under one parent run (dlcli.kfold).
    `run_dir` names an existing empty directory to use instead of a new timestamped one.
    Sweeps pass evaluate_test=False (trials never look at the test split) and an `after_epoch`
    hook that may raise TrialPruned.
    """
    reporter = reporter or Reporter(show_progress=bool(cfg.trainer.progress))
    if cfg.get("resume"):
        return resume(cfg, overrides, reporter)
    if cfg.split.get("kfold") is not None and cfg.split.get("fold") is None:
        from dlcli.kfold import train_kfold

        return train_kfold(cfg, overrides, reporter)
    experiment = build_experiment(cfg)  # every input error surfaces here, before runs/ is touched
    if run_dir is None:
        run_dir = create_run_dir(cfg.runs_dir, cfg.name)
    else:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    write_text(run_dir / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(overrides))))
    write_json(run_dir / "split.json", split_record(experiment, cfg))
    update_summary(run_dir, **run_facts(experiment), status="running", started_at=_now(), wall_seconds=0.0)
    state = FitState()
    save_checkpoint(run_dir / "checkpoints" / "last.pt", experiment.session, state)  # resumable from the start
    return _run(experiment, run_dir, state, reporter, evaluate_test, after_epoch)


def resume(cfg: DictConfig, overrides: Sequence[str], reporter: Reporter) -> TrainResult:
    """Continue an interrupted run from checkpoints/last.pt with its saved config."""
    from dlcli.kfold import is_kfold_parent, resume_kfold

    if is_kfold_parent(cfg.resume):
        return resume_kfold(cfg, overrides, reporter)
    run_dir = find_run(cfg.resume)
    check_resume_overrides(run_dir, overrides)
    summary = read_json(run_dir / "summary.json")
    if summary.get("status") == "completed":
        raise UserError(f"{run_dir} already completed; nothing to resume (evaluate it with `dl eval {run_dir}`)")
    saved = OmegaConf.load(run_dir / "config.yaml")
    saved.trainer.device = cfg.trainer.device
    saved.trainer.progress = cfg.trainer.progress
    experiment = build_experiment(saved)
    check_same_split(experiment, run_dir)
    state = restore(experiment.session, load_checkpoint(run_dir / "checkpoints" / "last.pt"))
    write_metrics(run_dir / "metrics.csv", state.history, experiment.session.metric)  # match the checkpoint
    update_summary(run_dir, status="running", device=str(experiment.session.device), message=None)
    reporter.log(f"resuming {run_dir} after epoch {state.epoch}")
    return _run(experiment, run_dir, state, reporter)


def check_resume_overrides(run_dir: Path, overrides: Sequence[str]) -> None:
    extra = [o for o in overrides if o.lstrip("+~").split("=")[0] not in RESUME_OVERRIDES]
    if extra:
        raise UserError(
            f"resume continues {run_dir} with its saved config, so '{extra[0]}' cannot apply: drop it, or start a new run"
        )


def _run(experiment: Experiment, run_dir: Path, state: FitState, reporter: Reporter, evaluate_test: bool = True,
         after_epoch: Callable[[FitState], None] | None = None) -> TrainResult:
    session = experiment.session
    checkpoints = run_dir / "checkpoints"
    started = time.perf_counter()
    previous_seconds = read_json(run_dir / "summary.json").get("wall_seconds") or 0.0

    def on_epoch_end(state: FitState, improved: bool) -> None:
        if improved:  # best.pt first: last.pt must never name a best epoch that best.pt lacks
            save_checkpoint(checkpoints / "best.pt", session, state)
            copy_checkpoint(checkpoints / "best.pt", checkpoints / "last.pt")
        else:
            save_checkpoint(checkpoints / "last.pt", session, state)
        write_metrics(run_dir / "metrics.csv", state.history, session.metric)
        reporter.on_epoch_end(state.history[-1], session.epochs, session.metric, improved)
        if after_epoch is not None:
            after_epoch(state)

    reporter.attach_log(run_dir / "train.log")
    for note in experiment.notes:
        reporter.log(f"note: {note}")
    reporter.log(describe(experiment, run_dir))
    fields: dict = {}
    try:
        reporter.start_progress(session.epochs, state.epoch + 1, len(session.train_data))
        fit(session, state, on_epoch_end, on_batch=reporter.on_batch, on_epoch_start=reporter.on_epoch_start)
        reporter.stop_progress()
        if state.stopped_early:
            reporter.log(f"early stopping: {session.monitor} did not improve for {session.patience} epochs")
        fields = {"status": "completed", "test": _test_once(experiment, run_dir, state) if evaluate_test else None}
    except KeyboardInterrupt:
        # Ctrl-C may land between an epoch's bookkeeping and its checkpoint: report (and keep in
        # metrics.csv) exactly what last.pt holds, which is what a resume continues from.
        state = FitState(**load_checkpoint(checkpoints / "last.pt")["state"])
        write_metrics(run_dir / "metrics.csv", state.history, session.metric)
        fields = {"status": "interrupted", "message": f"interrupted after epoch {state.epoch}; continue with: dl train resume={run_dir}"}
    except NonFiniteLoss as exc:
        fields = {"status": "failed", "message": str(exc)}
    except TrialPruned as exc:
        fields = {"status": "pruned", "message": str(exc)}
    except BaseException as exc:
        update_summary(run_dir, status="failed", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        reporter.stop_progress()
        fields.update(progress_fields(state, session.monitor), wall_seconds=previous_seconds + time.perf_counter() - started, finished_at=_now())
        summary = update_summary(run_dir, **fields)
        plot_curves(state.history, session.metric, run_dir / "curves.png")
        if summary["status"] != "completed" and summary.get("message"):
            reporter.log(f"{summary['status']}: {summary['message']}")
        reporter.close()
    return TrainResult(run_dir, summary)


def _test_once(experiment: Experiment, run_dir: Path, state: FitState) -> dict | None:
    """The single look at the test split: the best-by-validation checkpoint, after training."""
    if len(experiment.data.split.test) == 0 or state.best_epoch == 0:
        return None
    report = evaluate_checkpoint(experiment, run_dir, "test", "best")
    keep = ("epoch", "samples", "loss", "accuracy", "macro_f1", "rmse", "mae", "r2", "log_rmse")
    return {k: report[k] for k in keep if k in report}


def describe(experiment: Experiment, run_dir: Path) -> str:
    data, session = experiment.data, experiment.session
    sizes = data.split.record()["sizes"]
    params = sum(p.numel() for p in session.model.parameters())
    shape = "x".join(map(str, data.input_shape))
    return (
        f"run {run_dir}\n"
        f"device {session.device}  data {data.name} ({data.task}, input {shape}, {data.num_outputs} outputs; "
        f"train {sizes['train']} / val {sizes['val']} / test {sizes['test']})  "
        f"model {type(session.model).__name__} ({params:,} parameters)"
    )


def split_record(experiment: Experiment, cfg: DictConfig) -> dict:
    return {
        "val_fraction": float(cfg.split.val),
        "test_fraction": float(cfg.split.test),
        "stratified": bool(cfg.split.stratify) and experiment.data.task == "classification",
        "seed": int(cfg.split.seed),
        **experiment.data.split.record(),
    }


def progress_fields(state: FitState, monitor: str) -> dict:
    return {
        "epochs_completed": state.epoch,
        "best_epoch": state.best_epoch or None,
        f"best_{monitor}": state.best_value,
        "stopped_early": state.stopped_early,
    }


def run_facts(experiment: Experiment) -> dict:
    import numpy
    import sklearn
    import torch

    import dlcli

    data = experiment.data
    return {
        "name": experiment.cfg.name,
        "task": data.task,
        "data": data.name,
        "model": experiment.cfg.model._target_,
        "metric": experiment.session.metric,
        "monitor": experiment.session.monitor,
        "device": str(experiment.session.device),
        "seed": int(experiment.cfg.seed),
        "versions": {
            "dlcli": dlcli.__version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    """The commit of the working directory's repository (the user's project), if there is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")
