"""`dl train` as a library function: build, create the run directory, fit, test once, summarize."""

from __future__ import annotations

import datetime as dt
import platform
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from dlcli.config import override_key, read_overrides_file
from dlcli.data import PREPROCESSING_FILE

from dlcli.engine.callbacks import Callback, CallbackFailed, build_callbacks
from dlcli.diagnostics import Diagnostics, analyze, diagnosis_lines, write_findings
from dlcli.engine.checkpoint import Checkpointer, load_checkpoint, restore, save_checkpoint
from dlcli.engine.fit import FitState, NonFiniteLoss, fit
from dlcli.engine.metrics_csv import MetricsCsv
from dlcli.engine.progress import Reporter
from dlcli.errors import TrialPruned, UserError
from dlcli.evaluate import check_same_split, evaluate_checkpoint
from dlcli.experiment import Experiment, build_experiment
from dlcli.plots import draw_in_background
from dlcli.files import DiskFull, check_no_links_out, copy_file
from dlcli.interrupts import ctrl_c_deferred, reached
from dlcli.tracking import LoggedRun, RunLogger, as_new_run, build_loggers
from dlcli.runs import (
    git_commit,
    RunLock,
    create_run_dir,
    find_run,
    load_saved_config,
    metric_columns,
    read_metrics,
    read_summary,
    update_summary,
    write_json,
    write_metrics,
    write_text,
)

# Overrides that may accompany resume=RUN_DIR: where and how it runs, not what it computes.
RESUME_OVERRIDES = ("resume", "trainer.device", "trainer.progress", "trainer.checkpoint_every", "trainer.plots")


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
    callbacks: Sequence[Callback] = (),
    trust: Sequence[str] = (),
) -> TrainResult:
    """Train the composed config in a new run directory (or continue one with resume=RUN_DIR).

    With split.kfold=K this trains K models, one per fold, under one parent run (dlcli.kfold).
    `run_dir` names an existing empty directory to use instead of a new timestamped one.
    `callbacks` join the config's own (`callbacks:`) after the built-in ones; sweeps pass
    evaluate_test=False (trials never look at the test split) and a pruner. `trust` names modules
    (or dotted targets) that a saved config read back (resume=, refit=) may build besides what
    dlcli.trust accepts by name.
    """
    reporter = reporter or Reporter(show_progress=bool(cfg.trainer.progress))
    if cfg.get("resume"):
        if cfg.get("refit"):
            raise UserError("resume= and refit= do not go together: resume continues a run, refit starts a new one")
        return resume(cfg, overrides, reporter, callbacks, trust)
    facts = {}
    if cfg.get("refit"):
        from dlcli.refit import refit_config

        cfg, facts = refit_config(cfg, overrides, trust)
    if cfg.split.get("kfold") is not None and cfg.split.get("fold") is None:
        from dlcli.kfold import train_kfold

        return train_kfold(cfg, overrides, reporter, callbacks)
    experiment = build_experiment(cfg)  # every input error surfaces here, before runs/ is touched
    if facts:
        from dlcli.refit import check_same_test_split

        check_same_test_split(experiment.data.split.record(), Path(facts["refit_of"]))
    configured = [*build_callbacks(cfg.get("callbacks")), *build_loggers(cfg.get("logger"))]
    lock = None

    def populate(directory: Path) -> None:
        """The run's first files, written before it appears: config, split, summary, last.pt."""
        nonlocal lock
        (directory / "checkpoints").mkdir(exist_ok=True)
        lock = RunLock(directory).acquire()  # held across the rename: the lock is on the file, not its path
        write_text(directory / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        write_text(directory / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(overrides))))
        write_json(directory / "split.json", split_record(experiment, cfg))
        write_json(directory / PREPROCESSING_FILE, experiment.data.preprocessing())  # what dl predict applies
        update_summary(directory, **run_facts(experiment), **facts, status="running", started_at=_now(), wall_seconds=0.0)
        save_checkpoint(directory / "checkpoints" / "last.pt", experiment.session, FitState())  # resumable from birth

    if run_dir is None:
        run_dir = create_run_dir(cfg.runs_dir, cfg.name, populate=populate)
    else:  # a sweep trial's or a fold's directory: its sweep or k-fold parent owns it
        populate(run_dir)
    return _run(experiment, run_dir, FitState(), reporter, evaluate_test, [*configured, *callbacks], lock)


def resume(cfg: DictConfig, overrides: Sequence[str], reporter: Reporter, callbacks: Sequence[Callback] = (),
           trust: Sequence[str] = ()) -> TrainResult:
    """Continue an interrupted (or killed) run from checkpoints/last.pt with its saved config."""
    from dlcli.kfold import is_kfold_parent, resume_kfold

    if is_kfold_parent(cfg.resume):
        return resume_kfold(cfg, overrides, reporter, callbacks, trust)
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
        return continue_longer(cfg, run_dir, overrides, reporter, callbacks, trust)
    if summary.get("status") == "completed":
        raise UserError(f"{run_dir} already completed; nothing to resume (evaluate it with `dl eval {run_dir}`, "
                        f"or train it longer in a new run with `dl train resume={run_dir} trainer.epochs=N`)")
    lock = RunLock(run_dir).acquire()  # refuses a run that another process is still training
    try:
        saved = load_saved_config(run_dir, trust)
        for key in RESUME_OVERRIDES[1:]:  # how it runs may change; what it computes may not
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
        experiment = build_experiment(saved, restoring=True)
        configured = [*build_callbacks(saved.get("callbacks")), *build_loggers(saved.get("logger"))]
        check_same_split(experiment, run_dir)
        state = restore(experiment.session, load_checkpoint(run_dir / "checkpoints" / "last.pt"), run_dir / "config.yaml")
    except BaseException:
        lock.release()
        raise
    update_summary(run_dir, status="running", device=str(experiment.session.device), message=None)
    reporter.log(f"resuming {run_dir} after epoch {state.epoch}")
    return _run(experiment, run_dir, state, reporter, True, [*configured, *callbacks], lock, resumed=True)


def continue_longer(cfg: DictConfig, source: Path, overrides: Sequence[str], reporter: Reporter,
                    callbacks: Sequence[Callback] = (), trust: Sequence[str] = ()) -> TrainResult:
    """`dl train resume=RUN trainer.epochs=N` on a completed run: a new run directory that starts
    from the finished run's last.pt (weights, optimizer, RNGs, metrics.csv, best so far) and trains
    on to epoch N. The finished run stays as it is; the new one records where it started from."""
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
                        "such as none, step, exponential and plateau, can be continued)")
    # where the new run goes is this command's to say (its runs_dir), never the saved file's
    for key in ("trainer.epochs", "runs_dir", *RESUME_OVERRIDES[1:]):
        OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
    saved.resume = None
    as_new_run(saved)  # a run of its own: no late child of a finished sweep, no store the saved file names
    experiment = build_experiment(saved, restoring=True)
    check_same_split(experiment, source)
    configured = [*build_callbacks(saved.get("callbacks")), *build_loggers(saved.get("logger"))]
    # copied into the new run, so checked as any overrides file (a hostile one must not travel on)
    typed = read_overrides_file(source / "overrides.yaml", trust, what=str(source / "overrides.yaml")) \
        if (source / "overrides.yaml").is_file() else []
    new_overrides = [*(o for o in typed if not str(o).startswith(("trainer.epochs=", "logger.mlflow.parent_run_id="))),
                     *(o for o in overrides if not o.startswith("resume="))]
    lock = None

    def populate(directory: Path) -> None:
        nonlocal lock
        (directory / "checkpoints").mkdir(exist_ok=True)
        lock = RunLock(directory).acquire()
        write_text(directory / "config.yaml", OmegaConf.to_yaml(saved, resolve=True))
        write_text(directory / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(new_overrides)))
        copy_file(source / "split.json", directory / "split.json")
        write_json(directory / PREPROCESSING_FILE, experiment.data.preprocessing())
        for name in ("last.pt", "best.pt"):
            if (source / "checkpoints" / name).is_file():
                copy_file(source / "checkpoints" / name, directory / "checkpoints" / name)
        rows = read_metrics(source / "metrics.csv", up_to=state.epoch)
        write_metrics(directory / "metrics.csv", rows, metric_columns(experiment.session.metric))
        update_summary(directory, **run_facts(experiment), status="running", started_at=_now(), wall_seconds=0.0,
                       continued_from=str(source), continued_after_epoch=state.epoch,
                       initial_loss=read_summary(source).get("initial_loss"))

    run_dir = create_run_dir(saved.runs_dir, saved.name, populate=populate)
    try:
        state = restore(experiment.session, load_checkpoint(run_dir / "checkpoints" / "last.pt"), run_dir / "config.yaml")
    except BaseException:
        lock.release()
        raise
    reporter.log(f"continuing {source} after epoch {state.epoch} in a new run, up to epoch {epochs}")
    return _run(experiment, run_dir, state, reporter, True, [*configured, *callbacks], lock)


def saved_state_of(run_dir: Path) -> FitState:
    from dlcli.engine.checkpoint import saved_state

    return saved_state(load_checkpoint(run_dir / "checkpoints" / "last.pt"))


def _schedule_planned_over_epochs(cfg: DictConfig) -> str | None:
    """The name of the run's schedule when its option is defined over trainer.epochs (cosine,
    linear, onecycle, ...): its state cannot be stretched to a longer run."""
    from dlcli.config import config_options, option_name

    node = OmegaConf.to_container(cfg.get("sched")) if cfg.get("sched") is not None else None
    name = option_name("sched", node)
    settings = dict(config_options("sched")).get(name, {})
    return name if any("trainer.epochs" in str(v) for v in settings.values()) else None


def check_resume_overrides(run_dir: Path, overrides: Sequence[str]) -> None:
    extra = [o for o in overrides if override_key(o) not in RESUME_OVERRIDES]
    if extra:
        raise UserError(
            f"resume continues {run_dir} with its saved config, so '{extra[0]}' cannot apply: drop it, or start a new run"
        )


def _run(experiment: Experiment, run_dir: Path, state: FitState, reporter: Reporter, evaluate_test: bool,
         callbacks: Sequence[Callback], lock: RunLock | None = None, resumed: bool = False) -> TrainResult:
    """Fit with the run directory's callbacks, look at the test split once, write the summary;
    the run's lock (held since the run was created or resumed) is let go however this ends."""
    try:
        return _fit_and_summarize(experiment, run_dir, state, reporter, evaluate_test, callbacks, resumed)
    finally:
        if lock is not None:
            lock.release()


def _fit_and_summarize(experiment: Experiment, run_dir: Path, state: FitState, reporter: Reporter, evaluate_test: bool,
                       callbacks: Sequence[Callback], resumed: bool = False) -> TrainResult:
    session, trainer = experiment.session, experiment.cfg.trainer
    started = time.perf_counter()
    previous_seconds = read_summary(run_dir).get("wall_seconds") or 0.0
    metrics = MetricsCsv(run_dir / "metrics.csv", session.metric)
    checkpointer = Checkpointer(run_dir / "checkpoints", session, float(trainer.get("checkpoint_every") or 0.0))
    reporter.attach_log(run_dir / "train.log")
    loggers = [c for c in callbacks if isinstance(c, RunLogger)]
    typed = _typed_overrides(run_dir) if loggers else []
    for logger in loggers:
        logger.attach(LoggedRun(run_dir, experiment.cfg, [str(o) for o in typed], checkpointer, reporter.warn, resumed))
    for note in experiment.notes:
        reporter.log(f"note: {note}")
    reporter.log(describe(experiment, run_dir))
    watch = Diagnostics(int(trainer.get("diagnostics_every") or 10), reporter.warn) if trainer.get("diagnostics", True) else None
    if watch is not None and state.epoch > 0:  # resumed: the untrained loss was measured when the run began
        watch.evidence.initial_loss = read_summary(run_dir).get("initial_loss")
    fields: dict = {"status": "failed"}
    error: BaseException | None = None  # a bug's exception, re-raised once the run is closed
    to_checkpoint = False  # metrics.csv is cut back to what last.pt holds: a resume continues from there
    try:
        fit(session, state, [metrics, checkpointer, reporter, *reporter.progress_bars(), *callbacks, *([watch] if watch else [])])
        if state.stopped_early:
            reporter.log(f"early stopping: {session.monitor} did not improve for {session.patience} epochs")
        reached("test_look")
        fields = {"status": "completed", "test": _test_once(experiment, run_dir, state) if evaluate_test else None}
    except KeyboardInterrupt:
        fields, to_checkpoint = {"status": "interrupted"}, True
    except (NonFiniteLoss, TrialPruned) as exc:
        fields = {"status": "pruned" if isinstance(exc, TrialPruned) else "failed", "message": str(exc)}
    except DiskFull as exc:  # resumable once there is space: the last checkpoint is whole
        fields, to_checkpoint = {"status": "failed", "message": f"{exc}; then continue with: dl train resume={run_dir}"}, True
    except CallbackFailed as exc:
        reporter.log_only(exc.traceback)
        fields = {"status": "failed", "message": f"{exc} (traceback in {run_dir / 'train.log'})"}
    except BaseException as exc:
        if _caused_by_ctrl_c(exc):  # e.g. Ctrl-C inside an import during the test look: an ImportError
            fields, to_checkpoint = {"status": "interrupted"}, True
        else:
            reporter.log_only(traceback.format_exc())
            fields = {"status": "failed", "message": f"{type(exc).__name__}: {exc} (traceback in {run_dir / 'train.log'})"}
            error = exc
    closing = RunClosing(experiment, run_dir, reporter, metrics, checkpointer, watch, loggers, started, previous_seconds)
    try:
        summary = closing.close(state, fields, to_checkpoint)
    except BaseException:
        if error is None:
            raise
        # the run's own exception is what the user must see; this one goes to train.log
        reporter.log_only("closing the run failed too:\n" + traceback.format_exc())
        summary = {}
    if error is not None:
        raise error
    return TrainResult(run_dir, summary)


@dataclass
class RunClosing:
    """The end of a run, however it ended: metrics.csv cut back to the checkpoint when a resume
    will continue from it, the summary, the diagnosis, the loggers' last word, the pictures.
    What must stay consistent (metrics.csv, summary.json) is written while Ctrl-C is held;
    the rest may be interrupted without losing anything the run did."""

    experiment: Experiment
    run_dir: Path
    reporter: Reporter
    metrics: MetricsCsv
    checkpointer: Checkpointer
    watch: Diagnostics | None
    loggers: list
    started: float
    previous_seconds: float

    def close(self, state: FitState, fields: dict, to_checkpoint: bool) -> dict:
        session, trainer, reporter, run_dir = self.experiment.session, self.experiment.cfg.trainer, self.reporter, self.run_dir
        with ctrl_c_deferred():
            if to_checkpoint:
                # Report (and keep in metrics.csv) exactly what last.pt holds: what a resume continues
                # from. (A failed or pruned run keeps every row: they explain how it ended.)
                state = self.checkpointer.saved_state or state
                self.metrics.truncate(state.epoch)
                if fields["status"] == "interrupted":
                    fields["message"] = f"interrupted after epoch {state.epoch}; continue with: dl train resume={run_dir}"
            fields.update(progress_fields(state, session.monitor), wall_seconds=self.previous_seconds + time.perf_counter() - self.started,
                          finished_at=_now())
            summary = update_summary(run_dir, **fields)
        reached("summary_written")
        if self.watch is not None:
            with ctrl_c_deferred():
                summary = _diagnose(run_dir, summary, self.watch, reporter)
        reached("diagnosed")
        try:
            for logger in self.loggers:
                logger.finish(summary)
            failures = {logger.option: logger.failure for logger in self.loggers if logger.failure}
            if failures:
                summary = update_summary(run_dir, logger_failures=failures)
            reached("loggers_finished")
            if trainer.get("plots", True):
                tested = fields.get("test") and self.experiment.data.task == "classification"
                # the drawing process also hands the pictures to the loggers that are still working
                draw_in_background(run_dir, ["curves", *(["confusion-test"] if tested else [])],
                                   log_to=[logger.option for logger in self.loggers if not logger.failure])
            if summary["status"] != "completed" and summary.get("message"):
                reporter.log_only(f"{summary['status']}: {summary['message']}")  # the caller shows it (dl train: stderr)
        finally:
            reporter.close()
        return summary


def _diagnose(run_dir: Path, summary: dict, watch: Diagnostics, reporter: Reporter) -> dict:
    """The run's diagnosis: diagnostics.json, its codes in summary.json, its lines in the log.
    A diagnosis that cannot be made costs the run nothing (the traceback goes to train.log)."""
    try:
        findings = analyze(read_metrics(run_dir / "metrics.csv"), summary, watch.evidence)
        write_findings(run_dir, findings)
    except Exception:
        reporter.log_only("could not diagnose the run:\n" + traceback.format_exc())
        return summary
    for line in diagnosis_lines(findings, watch.failed):
        reporter.log(line)
    extra = {"diagnostics_skipped": watch.failed} if watch.failed else {}
    if watch.evidence.initial_loss is not None:
        extra["initial_loss"] = watch.evidence.initial_loss  # for the diagnosis of a resumed run
    return update_summary(run_dir, diagnosis=[f.code for f in findings], **extra)


def _typed_overrides(run_dir: Path) -> list[str]:
    """overrides.yaml of a run (read as a received file: a resumed run may come from anyone)."""
    from dlcli.received import read_yaml

    typed = read_yaml(run_dir / "overrides.yaml") if (run_dir / "overrides.yaml").is_file() else []
    return [str(o) for o in typed] if isinstance(typed, list) else []


def _caused_by_ctrl_c(exc: BaseException) -> bool:
    """Did a KeyboardInterrupt start this chain of exceptions (one raised while handling it)?"""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _test_once(experiment: Experiment, run_dir: Path, state: FitState) -> dict | None:
    """The single look at the test split: the best-by-validation checkpoint, after training."""
    if len(experiment.data.split.test) == 0 or state.best_epoch == 0:
        return None
    report = evaluate_checkpoint(experiment, run_dir, "test", "best", draw=False)  # drawn with the curves
    keep = ("epoch", "samples", "loss", "accuracy", "macro_f1", "rmse", "mae", "r2", "log_rmse")
    return {k: report[k] for k in keep if k in report}


def describe(experiment: Experiment, run_dir: Path) -> str:
    data, session = experiment.data, experiment.session
    sizes = data.split.record()["sizes"]
    params = sum(p.numel() for p in session.model.parameters())
    shape = "x".join(map(str, data.input_shape))
    units = ""
    if session.loss_units:
        units = f"\nloss: on the {session.loss_units}; {session.metric}: in the target's own units"
    if session.val_data is None:
        units += "\nno validation split (split.val=0): every epoch trains on train+val; best.pt is the last epoch"
    return (
        f"run {run_dir}\n"
        f"device {session.device}  data {data.name} ({data.task}, input {shape}, {data.num_outputs} outputs; "
        f"train {sizes['train']} / val {sizes['val']} / test {sizes['test']})  "
        f"model {type(session.model).__name__} ({params:,} parameters)" + units
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
        "num_classes": len(data.class_names) if data.task == "classification" else None,
        # regression may learn on a standardized (or log) target: its loss is in those units, its metrics are not
        "loss_units": experiment.session.loss_units,
        "monitor": experiment.session.monitor,
        # without a validation split nothing is selected: best.pt is simply the last epoch
        **({"selection": "no validation split (split.val=0): best.pt is the last epoch"}
           if experiment.session.val_data is None else {}),
        "device": str(experiment.session.device),
        "seed": int(experiment.cfg.seed),
        "versions": {
            "dlcli": dlcli.__version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "git_commit": git_commit(),
    }


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")
