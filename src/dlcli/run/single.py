"""One run: build it, create its directory, fit, look at the test split once, close it.

Resuming (dlcli.run.resume), k-fold (dlcli.run.kfold), refits (dlcli.run.refit) and sweep trials all end here,
in `new_run` or `run_in`, with what the caller asked in a RunRequest (dlcli.run.request); `dlcli.run.dispatch`
only chooses which. `fit_and_test` is the run itself: begin, fit, test, close.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlcli.config.build import settings_checked
from dlcli.data import PREPROCESSING_FILE
from dlcli.diagnostics import Diagnostics, analyze, diagnosis_lines, write_findings
from dlcli.diagnostics.checks import said_before_training
from dlcli.engine.callbacks import CallbackFailed, build_callbacks
from dlcli.engine.checkpoint import Checkpointer, save_checkpoint
from dlcli.engine.compiled import compile_session
from dlcli.engine.fit import FitState, NonFiniteLoss, fit
from dlcli.engine.language import LANGUAGE_MODEL
from dlcli.engine.metrics_csv import MetricsCsv
from dlcli.engine.progress import Reporter
from dlcli.errors import TrialPruned, UserError
from dlcli.trained.evaluate import evaluate_checkpoint
from dlcli.experiment import Experiment, build_experiment
from dlcli.system.files import DiskFull
from dlcli.system.interrupts import ctrl_c_deferred, reached
from dlcli.tracking.plots import draw_in_background
from dlcli.run.provenance import provenance
from dlcli.run.request import RunRequest
from dlcli.rundir.directory import (
    RunLock,
    RunStart,
    config_text,
    overrides_text,
    read_metrics,
    read_summary,
    start_run_dir,
    update_summary,
)
from dlcli.tracking import LoggedRun, RunLogger, build_loggers
from dlcli.trust.received import read_yaml


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict

    @property
    def status(self) -> str:
        return self.summary["status"]


def new_run(request: RunRequest) -> TrainResult:
    """Train the request's config in a new run directory: build everything (every input error
    surfaces here, before runs/ is touched), write the run's first files, fit, look at the test
    split once, summarize."""
    experiment = checked_experiment(request)  # every setting checked, once
    request = with_config_callbacks(request)  # built from those settings, before runs/ is touched
    run_dir, lock = open_new_run(request, experiment)
    return run_in(experiment, FitState(), replace(request, run_dir=run_dir), lock)


def with_config_callbacks(request: RunRequest) -> RunRequest:
    """The request with the callbacks and loggers its config names (`callbacks:`, `logger:`)
    before its own: what one process training the run calls, once build_experiment has checked
    their settings (they are not checked again)."""
    cfg = request.config
    with settings_checked():
        configured = [*build_callbacks(cfg.get("callbacks")), *build_loggers(cfg.get("logger"))]
    return replace(request, callbacks=[*configured, *request.callbacks])


def start_new_run(request: RunRequest) -> tuple[Experiment, Path, RunLock]:
    """The built experiment and its new run directory (request.run_dir when one was made for it),
    with its first files (resumable from birth: an untrained last.pt) and its lock held."""
    experiment = checked_experiment(request)
    return (experiment, *open_new_run(request, experiment))


def checked_experiment(request: RunRequest) -> Experiment:
    """The request's experiment, built: every setting checked (build_experiment), then what the
    caller asks of it (request.check_experiment)."""
    experiment = build_experiment(request.config)
    if request.check_experiment is not None:
        request.check_experiment(experiment)
    return experiment


def open_new_run(request: RunRequest, experiment: Experiment) -> tuple[Path, RunLock]:
    """The experiment's new run directory (request.run_dir when one was made for it), with its first
    files (resumable from birth: an untrained last.pt) and its lock held."""
    cfg = request.config
    start = RunStart(
        texts={"config.yaml": config_text(cfg), "overrides.yaml": overrides_text(request.overrides)},
        jsons={"split.json": split_record(experiment, cfg), PREPROCESSING_FILE: experiment.data.preprocessing()},
        summary={**run_facts(experiment), **request.summary_facts, "status": "running", "started_at": now(),
                 "wall_seconds": 0.0},
        folders=("checkpoints",),
        then=lambda directory: save_checkpoint(directory / "checkpoints" / "last.pt", experiment.session, FitState()),
    )
    return start_run_dir(cfg.runs_dir, cfg.name, start, into=request.run_dir)


def run_in(experiment: Experiment, state: FitState, request: RunRequest, lock: RunLock | None = None,
           resumed: bool = False) -> TrainResult:
    """Train in request.run_dir, which exists (a new run, or a resumed one from `state` on); the
    run's lock (held since the run was created or resumed) is let go however this ends."""
    try:
        return fit_and_test(experiment, state, request, resumed)
    finally:
        if lock is not None:
            lock.release()


def fit_and_test(experiment: Experiment, state: FitState, request: RunRequest, resumed: bool = False) -> TrainResult:
    """Fit, look at the test split once, close the run. However training ends, the run is closed
    and its summary says how; a bug's exception is raised again once it is."""
    run = OpenRun.begin(experiment, request, state, resumed)
    session, reporter = experiment.session, request.reporter
    try:
        compile_if_asked(experiment, reporter)
        fit(session, state, run.callbacks)
        if state.stopped_early:
            reporter.log(f"early stopping: {session.monitor} did not improve for {session.patience} epochs")
        reached("test_look")
        test = _test_once(experiment, run.run_dir, state) if request.evaluate_test else None
        ending = Ending({"status": "completed", "test": test})
    except BaseException as exc:
        ending = ending_of(exc, run.run_dir, reporter)
    return run.close(state, ending)


def compile_if_asked(experiment: Experiment, reporter: Reporter) -> None:
    """trainer.compile: compile the model. Called inside the run's try: a Ctrl-C leaves an
    interrupted, resumable run. Held until compiling ends: the compiler runs code in weak-reference
    callbacks, where Python drops a KeyboardInterrupt."""
    if experiment.cfg.trainer.get("compile"):
        with ctrl_c_deferred():
            line = compile_session(experiment.session)
        reporter.log(f"note: {line}")


@dataclass
class Ending:
    """How training ended: the summary's fields, whether metrics.csv is cut back to what last.pt
    holds (a resume continues from there), and a bug's exception, raised again once the run is closed."""

    fields: dict
    to_checkpoint: bool = False
    error: BaseException | None = None


def ending_of(exc: BaseException, run_dir: Path, reporter: Reporter) -> Ending:
    """What an exception that ended training means for the run."""
    if isinstance(exc, KeyboardInterrupt):
        return Ending({"status": "interrupted"}, to_checkpoint=True)
    if isinstance(exc, (NonFiniteLoss, TrialPruned)):
        return Ending({"status": "pruned" if isinstance(exc, TrialPruned) else "failed", "message": str(exc)})
    if isinstance(exc, UserError):  # found only once training reads it (an image that cannot be decoded): the run failed
        return Ending({"status": "failed", "message": str(exc)})
    if isinstance(exc, DiskFull):  # resumable once there is space: the last checkpoint is whole
        return Ending({"status": "failed", "message": f"{exc}; then continue with: dl train resume={run_dir}"}, to_checkpoint=True)
    if isinstance(exc, CallbackFailed):
        reporter.log_only(exc.traceback)
        return Ending({"status": "failed", "message": f"{exc} (traceback in {run_dir / 'train.log'})"})
    if _caused_by_ctrl_c(exc):  # e.g. Ctrl-C inside an import during the test look: an ImportError
        return Ending({"status": "interrupted"}, to_checkpoint=True)
    reporter.log_only("".join(traceback.format_exception(exc)))
    return Ending({"status": "failed", "message": f"{type(exc).__name__}: {exc} (traceback in {run_dir / 'train.log'})"}, error=exc)


@dataclass
class OpenRun:
    """A run being trained: what writes it as it goes (metrics.csv, checkpoints, the diagnostics'
    watch, the loggers), and its end however it ended: metrics.csv cut back to the checkpoint when
    a resume will continue from it, the summary, the diagnosis, the loggers' last word, the
    pictures. What must stay consistent (metrics.csv, summary.json) is written while Ctrl-C is held;
    the rest may be interrupted without losing anything the run did."""

    experiment: Experiment
    run_dir: Path
    reporter: Reporter
    metrics: MetricsCsv
    checkpointer: Checkpointer
    watch: Diagnostics | None
    loggers: list
    callbacks: list  # what fit calls, in order
    started: float
    previous_seconds: float

    @classmethod
    def begin(cls, experiment: Experiment, request: RunRequest, state: FitState, resumed: bool) -> OpenRun:
        """The run's instruments in request.run_dir, and its first lines in train.log."""
        session, trainer, reporter, run_dir = experiment.session, experiment.cfg.trainer, request.reporter, request.run_dir
        started = time.perf_counter()
        previous_seconds = read_summary(run_dir).get("wall_seconds") or 0.0
        metrics = MetricsCsv(run_dir / "metrics.csv", session.metric)
        checkpointer = Checkpointer(run_dir / "checkpoints", session, float(trainer.get("checkpoint_every") or 0.0))
        reporter.attach_log(run_dir / "train.log")
        loggers = [c for c in request.callbacks if isinstance(c, RunLogger)]
        typed = typed_overrides(run_dir) if loggers else []
        for logger in loggers:
            logger.attach(LoggedRun(run_dir, experiment.cfg, [str(o) for o in typed], checkpointer, reporter.warn, resumed))
        for note in experiment.notes:
            reporter.log(f"note: {note}")
        reporter.log(describe(experiment, run_dir))
        watch = _watch(experiment, run_dir, reporter, state)
        callbacks = [metrics, checkpointer, reporter, *reporter.progress_bars(), *request.callbacks, *([watch] if watch else [])]
        return cls(experiment, run_dir, reporter, metrics, checkpointer, watch, loggers, callbacks, started, previous_seconds)

    def close(self, state: FitState, ending: Ending) -> TrainResult:
        """Close the run; a bug that ended training is raised again after (and is what the user
        sees, even when closing fails too: that one goes to train.log)."""
        try:
            summary = self._close(state, ending.fields, ending.to_checkpoint)
        except BaseException:
            if ending.error is None:
                raise
            self.reporter.log_only("closing the run failed too:\n" + traceback.format_exc())
            summary = {}
        if ending.error is not None:
            raise ending.error
        return TrainResult(self.run_dir, summary)

    def _close(self, state: FitState, fields: dict, to_checkpoint: bool) -> dict:
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
                          finished_at=now())
            summary = update_summary(run_dir, **fields)
        reached("summary_written")
        if self.watch is not None:
            with ctrl_c_deferred():
                summary = _diagnose(run_dir, summary, self.watch, reporter, OmegaConf.to_container(self.experiment.cfg, resolve=True))
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


def _watch(experiment: Experiment, run_dir: Path, reporter: Reporter, state: FitState) -> Diagnostics | None:
    """The diagnostics that watch training as it goes (unless trainer.diagnostics=false)."""
    trainer = experiment.cfg.trainer
    if not trainer.get("diagnostics", True):
        return None
    plain_config = OmegaConf.to_container(experiment.cfg, resolve=True)  # what the suggestions must fit
    watch = Diagnostics(int(trainer.get("diagnostics_every") or 10), reporter.warn,
                        early=lambda evidence: said_before_training(evidence, plain_config))
    if state.epoch > 0:  # resumed: the untrained loss was measured when the run began
        watch.evidence.initial_loss = read_summary(run_dir).get("initial_loss")
    return watch


def _diagnose(run_dir: Path, summary: dict, watch: Diagnostics, reporter: Reporter, config: dict) -> dict:
    """The run's diagnosis: diagnostics.json, its codes in summary.json, its lines in the log.
    A diagnosis that cannot be made costs the run nothing (the traceback goes to train.log)."""
    try:
        rows = read_metrics(run_dir / "metrics.csv")
        findings = analyze(rows, summary, watch.evidence, config)
        write_findings(run_dir, findings)
    except Exception:
        reporter.log_only("could not diagnose the run:\n" + traceback.format_exc())
        return summary
    for line in diagnosis_lines(findings, watch.failed, epochs=len(rows)):
        reporter.log(line)
    extra = {"diagnostics_skipped": watch.failed} if watch.failed else {}
    if watch.evidence.initial_loss is not None:
        extra["initial_loss"] = watch.evidence.initial_loss  # for the diagnosis of a resumed run
    return update_summary(run_dir, diagnosis=[f.code for f in findings], **extra)


def typed_overrides(run_dir: Path) -> list[str]:
    """overrides.yaml of a run (read as a received file: a resumed run may come from anyone)."""
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
    keep = ("epoch", "samples", "loss", "accuracy", "macro_f1", "rmse", "mae", "r2", "log_rmse", "persistence_rmse", "persistence_mae",
            "perplexity", "bits_per_token")
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
        f"train {sizes['train']} / val {sizes['val']} / test {sizes['test']}{counted_in(data)})  "
        f"model {type(session.model).__name__} ({params:,} parameters)" + units
    )


def counted_in(data) -> str:
    """What the split's counts are, where they are not samples of one row each: a language model's
    are windows of seq_len tokens cut from one text."""
    return f" windows of {data.seq_len} tokens" if data.task == LANGUAGE_MODEL else ""


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
        # a simple model's scores beside the network's, where the data offers one (a text column's bag of words)
        **({"baseline": data.baseline()} if hasattr(data, "baseline") else {}),
        **(data.summary_facts() if hasattr(data, "summary_facts") else {}),  # a series: persistence's errors (next = last)
        "device": str(experiment.session.device),
        "seed": int(experiment.cfg.seed),
        **provenance(experiment),  # versions, commits, machine, data fingerprint: what `dl runs diff` compares
    }


def now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")
