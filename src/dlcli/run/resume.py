"""`dl train resume=RUN`: continue an interrupted (or killed) run exactly, from its last.pt and
its saved config; with trainer.epochs=N, train a completed run longer, as a new run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from dlcli.config.compose import config_options, option_name, override_key, read_overrides_file
from dlcli.data import PREPROCESSING_FILE
from dlcli.engine.checkpoint import load_checkpoint, restore, saved_state
from dlcli.engine.fit import FitState
from dlcli.engine.schedulers import has_run_shares
from dlcli.errors import UserError
from dlcli.trained.evaluate import check_same_split
from dlcli.experiment import build_experiment
from dlcli.system.files import check_no_links_out, copy_file
from dlcli.rundir.directory import (
    RunLock,
    RunStart,
    config_text,
    find_run,
    load_saved_config,
    metric_columns,
    overrides_text,
    read_metrics,
    read_summary,
    start_run_dir,
    update_summary,
    write_metrics,
)
from dlcli.tracking import as_new_run
from dlcli.run.launch import devices_of, release_device_memory, resume_distributed
from dlcli.run.request import RunRequest
from dlcli.run.single import TrainResult, now, run_facts, run_in, with_config_callbacks

# Overrides that may accompany resume=RUN_DIR: where and how it runs, not what it computes.
RESUME_OVERRIDES = ("resume", "trainer.device", "trainer.progress", "trainer.checkpoint_every", "trainer.plots",
                    "trainer.max_restarts")


def resume(request: RunRequest) -> TrainResult:
    """Continue an interrupted (or killed) run (request.config's resume=) from checkpoints/last.pt
    with its saved config."""
    cfg, overrides, trust = request.config, request.overrides, request.trust
    run_dir = find_run(cfg.resume)
    longer = [o for o in overrides if override_key(o) == "trainer.epochs"]
    if not longer:
        check_no_links_out(run_dir)  # resume writes into it (trained longer, it is only read)
    check_resume_overrides(run_dir, [o for o in overrides if o not in longer])
    summary = read_summary(run_dir)
    if longer:
        if summary.get("status") != "completed":
            raise UserError(f"{run_dir} is {summary.get('status')}: resume it as it was first (dl train resume={run_dir}), "
                            "then train it longer with trainer.epochs")
        return continue_longer(request, run_dir)
    if summary.get("status") == "completed":
        raise UserError(f"{run_dir} already completed; nothing to resume (evaluate it with `dl eval {run_dir}`, "
                        f"or train it longer in a new run with `dl train resume={run_dir} trainer.epochs=N`)")
    lock = RunLock(run_dir).acquire()  # refuses a run that another process is still training
    try:
        saved = load_saved_config(run_dir, trust)
        for key in RESUME_OVERRIDES[1:]:  # how it runs may change; what it computes may not
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
        request = replace(request, config=saved, run_dir=run_dir)
        experiment = build_experiment(saved, restoring=True)
        in_process = with_config_callbacks(request)  # (on several processes, the workers build their own)
        check_same_split(experiment, run_dir)
        last = run_dir / "checkpoints" / "last.pt"
        state = restore(experiment.session, load_checkpoint(last), run_dir / "config.yaml", last)
    except BaseException:
        lock.release()
        raise
    update_summary(run_dir, status="running", device=str(experiment.session.device), message=None)
    if devices_of(saved) > 1:  # trained by several processes: so is the rest of it
        del experiment, state  # the workers build their own (rank 0 shares this GPU)
        return _on_workers(request, lock)
    request.reporter.log(f"resuming {run_dir} after epoch {state.epoch}")
    return run_in(experiment, state, in_process, lock, resumed=True)


def continue_longer(request: RunRequest, source: Path) -> TrainResult:
    """`dl train resume=RUN trainer.epochs=N` on a completed run: a new run directory that starts
    from the finished run's last.pt (weights, optimizer, RNGs, metrics.csv, best so far) and trains
    on to epoch N. The finished run stays as it is; the new one records where it started from."""
    cfg, overrides, trust = request.config, request.overrides, request.trust
    saved = load_saved_config(source, trust)
    state = saved_state_of(source)
    epochs, before = int(cfg.trainer.epochs), int(saved.trainer.epochs)
    if epochs <= state.epoch:
        raise UserError(f"trainer.epochs={epochs}: {source} already trained {state.epoch} epochs; "
                        f"to train it longer give more, e.g. trainer.epochs={state.epoch * 2}")
    if state.stopped_early:
        raise UserError(f"{source} stopped early at epoch {state.epoch} ({saved.trainer.monitor} no longer improved): "
                        "training it longer would stop again at once; start a new run instead")
    planned = _schedule_planned_over_epochs(saved)
    if planned:
        raise UserError(f"sched={planned} is planned over the run's {before} epochs, so it cannot simply go on to {epochs}: "
                        f"start a new run with trainer.epochs={epochs} (schedules that do not depend on the total, "
                        "such as none, exponential, plateau, and step or multistep given in epochs, can be continued)")
    # where the new run goes is this command's to say (its runs_dir), never the saved file's
    for key in ("trainer.epochs", "runs_dir", *RESUME_OVERRIDES[1:]):
        OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
    saved.resume = None
    as_new_run(saved)  # a run of its own: no late child of a finished sweep, no store the saved file names
    experiment = build_experiment(saved, restoring=True)
    check_same_split(experiment, source)
    request = replace(request, config=saved)
    in_process = with_config_callbacks(request)  # (on several processes, the workers build their own)
    # copied into the new run, so checked as any overrides file (a hostile one must not travel on)
    typed = read_overrides_file(source / "overrides.yaml", trust, what=str(source / "overrides.yaml")) \
        if (source / "overrides.yaml").is_file() else []
    new_overrides = [*(o for o in typed if not str(o).startswith(("trainer.epochs=", "logger.mlflow.parent_run_id="))),
                     *(o for o in overrides if not o.startswith("resume="))]

    def carry_over(directory: Path) -> None:
        """What the finished run leaves the new one: its split, checkpoints and epochs."""
        copy_file(source / "split.json", directory / "split.json")
        for name in ("last.pt", "best.pt"):
            if (source / "checkpoints" / name).is_file():
                copy_file(source / "checkpoints" / name, directory / "checkpoints" / name)
        rows = read_metrics(source / "metrics.csv", up_to=state.epoch)
        write_metrics(directory / "metrics.csv", rows, metric_columns(experiment.session.metric))

    last = source / "checkpoints" / "last.pt"  # restored before the new run exists: one that does not fit leaves none
    state = restore(experiment.session, load_checkpoint(last), source / "config.yaml", last)
    start = RunStart(
        texts={"config.yaml": config_text(saved), "overrides.yaml": overrides_text(new_overrides)},
        jsons={PREPROCESSING_FILE: experiment.data.preprocessing()},
        summary={**run_facts(experiment), "status": "running", "started_at": now(), "wall_seconds": 0.0,
                 "continued_from": str(source), "continued_after_epoch": state.epoch,
                 "initial_loss": read_summary(source).get("initial_loss")},
        folders=("checkpoints",), then=carry_over)
    run_dir, lock = start_run_dir(saved.runs_dir, saved.name, start)
    request.reporter.log(f"continuing {source} after epoch {state.epoch} in a new run, up to epoch {epochs}")
    if devices_of(saved) > 1:
        del experiment, state  # the workers build their own (rank 0 shares this GPU)
        return _on_workers(replace(request, run_dir=run_dir), lock)
    return run_in(experiment, state, replace(in_process, run_dir=run_dir), lock)


def _on_workers(request: RunRequest, lock: RunLock) -> TrainResult:
    """The rest of a run whose config (request.config, the saved one) trains on several processes,
    in request.run_dir; the run's lock is let go after."""
    release_device_memory()
    try:
        return resume_distributed(request)
    finally:
        lock.release()


def saved_state_of(run_dir: Path) -> FitState:
    return saved_state(load_checkpoint(run_dir / "checkpoints" / "last.pt"))


def _schedule_planned_over_epochs(cfg: DictConfig) -> str | None:
    """The name of the run's schedule when it is laid over trainer.epochs (cosine, linear,
    onecycle, ...): its state cannot be stretched to a longer run. The sched option declares it
    (`planned_over_epochs: true`), or takes a count from the run's length (milestones as shares of
    it); a run saved before the key existed is matched to its option."""
    node = OmegaConf.to_container(cfg.get("sched")) if cfg.get("sched") is not None else None
    name = option_name("sched", node)
    declared = (node or {}).get("planned_over_epochs")
    if declared is None:
        declared = dict(config_options("sched")).get(name, {}).get("planned_over_epochs", False)
    return name if declared or has_run_shares(node or {}) else None


def check_resume_overrides(run_dir: Path, overrides: Sequence[str]) -> None:
    extra = [o for o in overrides if override_key(o) not in RESUME_OVERRIDES]
    if extra:
        raise UserError(
            f"resume continues {run_dir} with its saved config, so '{extra[0]}' cannot apply: drop it, or start a new run"
        )
