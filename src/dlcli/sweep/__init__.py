"""`dl sweep grid|random|tpe`: hyper-parameter search that is parallel, resumable and never peeks
at the test split. Every kind runs through one Optuna study (dlcli.sweep.study) kept in the sweep
directory: the sweep asks it for each trial when a slot is free, trials report their epochs to it
(pruning), and each outcome is told to it. Trials are ordinary run directories under
<sweep>/trials/<NNN>/; results are saved after every trial, so killing the sweep loses no finished
trial and --resume runs only the rest, in the same study."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import OmegaConf

from dlcli.errors import UserError, first_line
from dlcli.numbers import setting, short
from dlcli.plots import draw_in_background
from dlcli.files import check_no_links_out, remove_tree
from dlcli.runs import RunLock, create_run_dir, load_saved_config, read_summary, update_summary, write_text
from dlcli.sweep.backends import default_threads, plan_slots, run_in_pool, run_in_process, run_on_ray
from dlcli.sweep.results import plot_sweep, results_frame, sorted_by_metric, write_results
from dlcli.sweep.space import SearchSpace, parse_space
from dlcli.interrupts import ctrl_c_deferred
from dlcli.sweep.study import KINDS, PRUNERS, STUDY_FILE, check_budget, grid_combinations
from dlcli.sweep.trial import TrialSpec, best_value

BACKENDS = ("local", "ray")
# sweep.yaml's settings, checked on --resume: (key, test, what it must be)
SAVED_SETTINGS = (
    ("kind", lambda v: v in KINDS, f"one of {', '.join(KINDS)}"),
    ("overrides", lambda v: isinstance(v, list) and all(isinstance(o, str) for o in v), "a list of overrides"),
    ("trials", lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0), "a positive whole number or null"),
    ("seed", lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    ("metric", lambda v: v is None or isinstance(v, str), "a metric name or null"),
    ("mode", lambda v: v in (None, "min", "max"), "min, max or null"),
    ("prune", lambda v: v in PRUNERS, f"one of {', '.join(PRUNERS)}"),
)
FINISHED = ("completed", "pruned")  # never re-run on resume


@dataclass
class SweepResult:
    sweep_dir: Path
    summary: dict
    table: object  # pandas DataFrame of trials, sorted by the metric


@dataclass
class SweepSettings:
    kind: str
    overrides: list[str]
    trials: int | None = None
    seed: int = 0
    metric: str | None = None
    mode: str | None = None
    prune: str = "none"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def plan(settings: SweepSettings, config_dirs) -> tuple[SearchSpace, int]:
    """The search space and the number of trials the sweep runs."""
    if settings.kind not in KINDS:
        raise UserError(f"sweep kind {settings.kind} is not known: choose one of {', '.join(KINDS)}")
    space = parse_space(settings.overrides, config_dirs)
    return space, check_budget(settings.kind, space, settings.trials)


def _metric_and_mode(settings: SweepSettings, space: SearchSpace, first: dict[str, str], config_dirs) -> tuple[str, str]:
    """Default metric: the task's validation metric. Validated on the first trial's config."""
    from dlcli.config import compose
    from dlcli.engine.metrics import TASK_METRICS, monitor_mode
    from dlcli.experiment import build_experiment

    cfg = compose([*space.fixed, *(f"{k}={v}" for k, v in first.items())], config_dirs)
    if cfg.split.get("kfold") is not None:
        raise UserError("split.kfold inside a sweep is not supported: sweep without k-fold, then cross-validate the best overrides")
    experiment = build_experiment(cfg)
    task = experiment.data.task
    metric = settings.metric or f"val_{experiment.session.metric}"
    allowed = ["val_loss", *(f"val_{m}" for m in TASK_METRICS[task])]
    if metric not in allowed:
        raise UserError(f"--metric {metric} is not a validation metric of this {task} task: choose one of {', '.join(allowed)}")
    if metric != "val_loss" and metric != f"val_{experiment.session.metric}":
        raise UserError(f"--metric {metric} needs trainer.metric={metric[4:]} so trials record it")
    mode = settings.mode or monitor_mode(metric)
    if mode not in ("min", "max"):
        raise UserError(f"--mode {mode} must be min or max")
    return metric, mode


def run_sweep(
    settings: SweepSettings,
    jobs: int | None = None,
    threads: int | None = None,
    fail_fast: bool = False,
    backend: str = "local",
    address: str | None = None,
    gpus_per_trial: float = 0.0,
    trials_per_gpu: int | None = None,
    resume: str | Path | None = None,
    name: str = "sweep",
    runs_dir: str = "runs",
    config_dirs: Sequence[str] = (),
    log: Callable[[str], None] = print,
    trust: Sequence[str] = (),
) -> SweepResult:
    """Run (or with `resume`, finish) a sweep. `jobs` and `threads` default to what the resumed
    sweep used, else 1 and each job's share of the cores. Every trial's values are checked before
    the first trial starts; a resumed sweep's saved overrides may only build trusted classes."""
    for option, value in (("--jobs", jobs), ("--threads", threads)):
        if value is not None and value < 1:
            raise UserError(f"{option} {value} must be at least 1")
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend} is not known: choose one of {', '.join(BACKENDS)}")
    if settings.prune not in PRUNERS:
        raise UserError(f"--prune {settings.prune} is not a pruning rule: choose one of {', '.join(PRUNERS)}")
    config_dirs = [str(Path(d).resolve()) for d in config_dirs]
    sweep_dir, lock = None, None
    if resume is not None:
        sweep_dir, settings, saved = _resume_settings(Path(resume).expanduser(), settings, trust)
        config_dirs = config_dirs or [str(d) for d in saved.get("config_dirs") or []]
        trials_per_gpu = trials_per_gpu or saved.get("trials_per_gpu")
        # jobs derived from --trials-per-gpu are derived again here (this machine may have other GPUs)
        jobs = jobs or (saved.get("jobs") if not trials_per_gpu else None)
        threads = threads or saved.get("threads")
        lock = RunLock(sweep_dir).acquire()  # one process finishes a sweep at a time
    if trials_per_gpu is not None and gpus_per_trial:
        raise UserError("--trials-per-gpu K and --gpus-per-trial both say how trials share GPUs: give one")
    try:
        import torch

        jobs, ray_gpus, note = plan_slots(jobs, trials_per_gpu, torch.cuda.device_count(), backend)
        gpus_per_trial = gpus_per_trial or ray_gpus
        if note:
            log(note)
        space, planned = plan(settings, config_dirs)
        max_epochs = check_trial_values(space, config_dirs, trusted=trust if resume is not None else None)
        metric, mode = _metric_and_mode(settings, space, first_trial(space), config_dirs)
        settings.metric, settings.mode = metric, mode
        threads = threads or default_threads(jobs)
        if sweep_dir is None:
            def populate(directory: Path) -> None:
                nonlocal lock
                lock = RunLock(directory).acquire()
                (directory / "trials").mkdir()
                write_text(directory / "sweep.yaml", OmegaConf.to_yaml(OmegaConf.create({
                    **settings.as_dict(),
                    "space": {"fixed": space.fixed, "params": [p.__dict__ for p in space.params]},
                    "trials_planned": planned,
                    "study": STUDY_FILE,  # Optuna's journal: optuna-dashboard <sweep>/study.journal
                    "config_dirs": list(config_dirs),
                    "jobs": jobs,
                    "threads": threads,
                    "trials_per_gpu": trials_per_gpu,
                    "command": " ".join(shlex.quote(a) for a in ["dl", *sys.argv[1:]]) if sys.argv else "",
                })))
                update_summary(directory, kind="sweep", status="running", metric=metric, mode=mode, trials=planned)

            sweep_dir = create_run_dir(Path(runs_dir) / "sweeps", name, checkpoints=False, populate=populate)
        sweep_dir = sweep_dir.resolve()  # trials (and Ray workers on other nodes) find the study by this path
        update_summary(sweep_dir, kind="sweep", status="running", metric=metric, mode=mode, trials=planned)
        parents = _parent_runs(sweep_dir, settings, space, first_trial(space), config_dirs, log)
        try:
            return _run_trials(sweep_dir, settings, space, planned, max_epochs, metric, mode, jobs, threads, fail_fast, backend,
                               address, gpus_per_trial, config_dirs, log, trust, parents)
        except BaseException:  # the sweep broke off: its parent run must not say running forever
            from dlcli.tracking import close_parent_runs

            close_parent_runs(parents, "failed", {}, log)
            raise
    finally:
        if lock is not None:
            lock.release()


def _parent_runs(sweep_dir: Path, settings: SweepSettings, space: SearchSpace, first: dict, config_dirs, log):
    """With a logger that nests runs (MLflow), the sweep is a run and its trials are runs under it."""
    from dlcli.config import compose
    from dlcli.tracking import open_parent_runs

    cfg = compose([*space.fixed, *(f"{k}={v}" for k, v in first.items())], config_dirs)
    return open_parent_runs(sweep_dir, cfg, "sweep", {"kind": settings.kind, "overrides": " ".join(settings.overrides),
                                                      "metric": settings.metric, "mode": settings.mode}, log)


def _run_trials(sweep_dir, settings, space, planned, max_epochs, metric, mode, jobs, threads, fail_fast, backend, address,
                gpus_per_trial, config_dirs, log, trust, parents=()) -> SweepResult:
    from dlcli.sweep.study import open_study

    study = open_study(sweep_dir, settings.kind, space, settings.seed, settings.trials, mode, settings.prune, max_epochs)
    records, again = _collect(sweep_dir, study, space, metric, mode)
    finished = {r["number"] for r in records}
    todo = [n for n in range(planned) if n not in finished]
    asker = TrialAsker(study, sweep_dir, settings, space, metric, mode, threads, config_dirs,
                       [p.override for p in parents], again, max_epochs)
    asker.check_space_of_study()
    if records:
        log(f"resuming {sweep_dir}: {len(records)} of {planned} trials already finished")
    log(f"sweep {sweep_dir}: {len(todo)} trials to run, {jobs} at a time ({backend}), {threads} thread(s) each")
    failures, stopped = [], []

    def on_result(record: dict) -> bool:
        """Record a finished trial (saved at once, told to the study); False stops the sweep."""
        if any(r["number"] == record["number"] for r in records):  # reported again by a stop mid-report
            return True
        asker.tell(record)
        records.append(record)
        write_results(sweep_dir / "results.csv", results_frame(records, space, metric))  # saved trial by trial
        shown = ", ".join(f"{k}={setting(v)}" for k, v in record["params"].items())
        if record["status"] == "interrupted":  # Ctrl-C reached the trial: the sweep stops too
            stopped.append(record)
            log(f"trial {record['number']:03d} interrupted ({shown}): it will run again on --resume")
            return False
        if record["status"] == "failed":
            failures.append(record)
            log(f"trial {record['number']:03d} failed ({shown}): {record['message']}")
            return not fail_fast
        value = "-" if record.get("value") is None else short(record["value"])
        log(f"trial {record['number']:03d} {record['status']} ({shown}): {metric} {value}  {record['seconds']:.1f}s")
        return True

    specs = asker.specs(todo)
    status = "completed"
    try:
        if backend == "ray":
            run_on_ray(specs, jobs, address, gpus_per_trial, on_result)
        elif jobs == 1:
            run_in_process(specs, on_result)
        else:
            import torch

            run_in_pool(specs, jobs, torch.cuda.device_count(), threads, on_result)
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        asker.close()  # a trial asked but never started must not stay "running" in the study
    if status == "completed" and fail_fast and failures:
        status = "failed"  # trials the fail-fast stop interrupted are part of that failure
    elif status == "completed" and stopped:
        status = "interrupted"
    if status != "completed":
        log(f"sweep {status}: finished trials are saved; continue with: dl sweep {settings.kind} --resume {sweep_dir}")
    result = _finish(sweep_dir, records, space, metric, mode, status, config_dirs, log, trust)
    if asker.asked:
        result.summary = update_summary(sweep_dir, study_ms_per_trial=round(1000 * asker.seconds / asker.asked, 2))
    if parents:
        from dlcli.tracking import close_parent_runs

        summary = result.summary
        numbers = {f"best_{metric}": summary.get(f"best_{metric}"),
                   **{f"test_{k}": v for k, v in (summary.get("test") or {}).items() if k not in ("epoch", "samples")}}
        close_parent_runs(parents, summary["status"], numbers, log)
    return result


def first_trial(space: SearchSpace) -> dict[str, str]:
    """Each parameter's first listed value or lower bound: the trial that settles the metric."""
    return {p.key: p.values[0] if p.discrete else _bound(p, p.low) for p in space.params}


def _bound(param, value) -> str:
    return str(int(value)) if param.integer else repr(float(value))


def check_trial_values(space: SearchSpace, config_dirs, trusted: Sequence[str] | None = None) -> int:
    """Every value a swept parameter can take, checked before the first trial starts: composed with
    the first trial's other values and checked as `dl train` would (types, ranges, choices, each
    component's settings); an interval at both its ends. With `trusted`, the composed configs may
    only build trusted classes (a resumed sweep's saved overrides). Returns the most epochs a
    trial trains (Hyperband's budget)."""
    from dlcli.config import compose
    from dlcli.experiment import check_config
    from dlcli.trust import check_trusted_targets

    first = first_trial(space)
    variants = [dict(first)]
    for param in space.params:
        values = param.values if param.discrete else [_bound(param, param.low), _bound(param, param.high)]
        variants += [{**first, param.key: value} for value in values if value != first[param.key]]
    epochs = 1
    for params in variants:
        cfg = compose([*space.fixed, *(f"{k}={v}" for k, v in params.items())], config_dirs)
        if trusted is not None:
            check_trusted_targets(cfg, trusted, source="the sweep's overrides")
        check_config(cfg)
        if cfg.split.get("kfold") is None and float(cfg.split.val) == 0:
            raise UserError("a sweep compares trials on the validation split, and split.val=0 leaves none: keep a split.val "
                            "(then train the chosen settings on train+val with dl train refit=BEST_TRIAL)")
        if cfg.get("refit"):
            raise UserError("refit= trains one finished run again: it has no place in a sweep")
        epochs = max(epochs, int(cfg.trainer.epochs))
    return epochs


def _resume_settings(sweep_dir: Path, given: SweepSettings, trust: Sequence[str] = ()) -> tuple[Path, SweepSettings, dict]:
    if not (sweep_dir / "sweep.yaml").is_file():
        raise UserError(f"--resume {sweep_dir} is not a sweep directory (no sweep.yaml)")
    check_no_links_out(sweep_dir, "the sweep directory")  # its study, trials and results are written and deleted in it
    from dlcli.received import read_yaml

    path = sweep_dir / "sweep.yaml"
    saved = read_yaml(path)  # bounded plain YAML, no interpolation: a sweep may come from someone else
    if not isinstance(saved, dict):
        raise UserError(f"{path} is not a sweep's settings (a mapping with kind, overrides, ...): restore it from a copy")
    if "study" not in saved:
        raise UserError(f"--resume {sweep_dir} was made by an older dl, before sweeps kept an Optuna study: start a new sweep")
    for key, valid, kinds in SAVED_SETTINGS:
        if key not in saved or not valid(saved[key]):
            raise UserError(f"{path}: {key} is {'missing' if key not in saved else repr(saved[key])[:60]}; it must be {kinds} "
                            "(restore the file from a copy of the sweep)")
    for key in ("jobs", "threads", "trials_per_gpu"):  # how it ran: optional, and only a positive count
        value = saved.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UserError(f"{path}: {key} is {repr(value)[:60]}; it must be a positive whole number or null")
    config_dirs = saved.get("config_dirs") or []
    if not isinstance(config_dirs, list) or not all(isinstance(d, str) for d in config_dirs):
        raise UserError(f"{path}: config_dirs must be a list of directories")
    from dlcli.trust import check_trusted_overrides

    check_trusted_overrides(saved["overrides"], trust, source=str(path))  # before any of them is composed
    settings = SweepSettings(**{k: saved[k] for k in SweepSettings.__dataclass_fields__})
    if given.overrides and list(given.overrides) != settings.overrides:
        raise UserError(f"--resume {sweep_dir} sweeps {' '.join(settings.overrides)}; drop the overrides or start a new sweep")
    if given.kind != settings.kind:
        raise UserError(f"--resume {sweep_dir} is a {settings.kind} sweep: use dl sweep {settings.kind} --resume {sweep_dir}")
    return sweep_dir, settings, saved


class TrialAsker:
    """Asks the study for trials as slots free up, and tells it how each ended.

    Trial N of the sweep (trials/<NNN>/) is the Optuna trial enqueued for it with N as a user
    attribute, in one step, so no trial ever exists without its number. A grid's trial N is its
    N-th combination; a trial that failed or was interrupted runs again with the same values;
    any other trial takes what the sampler suggests, seeded by (seed, N). Journal calls hold
    Ctrl-C until they are done (Optuna breaks its file lock when interrupted waiting for it)."""

    def __init__(self, study, sweep_dir: Path, settings: SweepSettings, space: SearchSpace, metric: str, mode: str,
                 threads: int, config_dirs, extra: list[str], again: dict[int, dict[str, str]], max_epochs: int):
        from dlcli.sweep.study import distributions

        self.study, self.sweep_dir, self.settings, self.space = study, sweep_dir, settings, space
        self.metric, self.mode, self.threads, self.config_dirs, self.extra = metric, mode, threads, list(config_dirs), extra
        self.max_epochs = max_epochs
        self.known = dict(again)
        if settings.kind == "grid":
            self.known.update({n: params for n, params in enumerate(grid_combinations(space)) if n not in again})
        self.distributions = distributions(space, settings.kind)
        self.running: dict[int, int] = {}  # sweep trial number -> Optuna trial number
        self.asked, self.seconds = 0, 0.0  # for the study's cost per trial (ask + tell)

    def check_space_of_study(self) -> None:
        """A resumed sweep's space must be the one its study was made with (sweep.yaml edited since?)."""
        for trial in self.study.get_trials(deepcopy=False):
            for key, distribution in trial.distributions.items():
                if key in self.distributions and self.distributions[key] != distribution:
                    raise UserError(f"the search space in {self.sweep_dir / 'sweep.yaml'} gives {key} other values than its "
                                    f"study ({STUDY_FILE}) was made with: restore sweep.yaml, or start a new sweep")

    def specs(self, numbers: list[int]):
        import time

        from dlcli.sweep.study import NUMBER_ATTR, optuna_values, sampler_for, trial_id_of, trial_params

        for number in numbers:
            started = time.perf_counter()
            with ctrl_c_deferred():
                fixed = optuna_values(self.space, self.settings.kind, self.known[number]) if number in self.known else {}
                self.study.sampler = sampler_for(self.settings.kind, self.space, self.settings.seed, self.settings.trials, number)
                self.study.enqueue_trial(fixed, user_attrs={NUMBER_ATTR: number})
                try:
                    trial = self.study.ask(self.distributions)
                except ValueError as exc:  # Optuna refuses a space other than the one its study was made with
                    raise UserError(f"the search space in {self.sweep_dir / 'sweep.yaml'} is not the one its study "
                                    f"({STUDY_FILE}) was made with ({first_line(exc)}): restore sweep.yaml, or start a new sweep") from None
                self.running[number] = trial.number
            self.seconds += time.perf_counter() - started
            self.asked += 1
            yield TrialSpec(number, trial_params(self.space, trial), self.space.fixed,
                            str(self.sweep_dir / "trials" / f"{number:03d}"), self.metric, self.mode, self.settings.prune,
                            self.threads, self.config_dirs, extra=list(self.extra), sweep_dir=str(self.sweep_dir),
                            trial_id=trial_id_of(trial), max_epochs=self.max_epochs)

    def tell(self, record: dict) -> None:
        import time

        from dlcli.sweep.study import outcome

        optuna_number = self.running.get(record["number"])
        if optuna_number is None:
            return
        started = time.perf_counter()
        state, value = outcome(record)  # failed or interrupted: FAIL, so TPE learns nothing from it and --resume reruns it
        with ctrl_c_deferred():
            self.study.tell(optuna_number, value, state=state)
            del self.running[record["number"]]
        self.seconds += time.perf_counter() - started

    def close(self) -> None:
        from optuna.trial import TrialState


        with ctrl_c_deferred():
            for optuna_number in self.running.values():
                self.study.tell(optuna_number, state=TrialState.FAIL)
            self.running.clear()


def _collect(sweep_dir: Path, study, space: SearchSpace, metric: str, mode: str) -> tuple[list[dict], dict[int, dict[str, str]]]:
    """Finished trials become records, and the study is brought in line with them (a trial that
    finished while the sweep was being killed is told now); trials that failed, were interrupted
    or were left running by a killed sweep are failed in the study and cleaned away, to run again
    with the same values. Waiting trials a killed sweep enqueued but never asked are dropped."""
    from optuna.trial import TrialState, create_trial

    from dlcli.runs import is_training
    from dlcli.sweep.study import NUMBER_ATTR, outcome, trial_params

    with ctrl_c_deferred():
        while any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False)):
            study.tell(study.ask(), state=TrialState.FAIL)
        latest = {}
        for trial in study.get_trials(deepcopy=False):
            number = trial.user_attrs.get(NUMBER_ATTR)
            if number is None:  # asked without a number (an older interruption): nothing to keep
                if trial.state == TrialState.RUNNING:
                    study.tell(trial.number, state=TrialState.FAIL)
                continue
            if number not in latest or trial.number > latest[number].number:
                latest[number] = trial
        records, again = [], {}
        for number, trial in sorted(latest.items()):
            trial_dir = sweep_dir / "trials" / f"{number:03d}"
            if is_training(trial_dir):
                raise UserError(f"{trial_dir} is still being trained by another process (a worker of the killed sweep): "
                                "wait for it to end, or stop it, then resume")
            summary = read_summary(trial_dir) if (trial_dir / "summary.json").is_file() else {}
            params = trial_params(space, trial)
            if summary.get("status") in FINISHED:
                record = {"number": number, "status": summary["status"], "params": params, "run_dir": str(trial_dir),
                          "message": summary.get("message"), "seconds": summary.get("wall_seconds") or 0.0,
                          **best_value(trial_dir / "metrics.csv", metric, mode)}
                records.append(record)
                state, value = outcome(record)
                if trial.state == TrialState.RUNNING:  # it finished, but the sweep was killed before telling the study
                    study.tell(trial.number, value, state=state)
                elif trial.state != state:  # the study failed it (its result never came back): record what it did
                    study.add_trial(create_trial(state=state, value=value, params=trial.params, distributions=trial.distributions,
                                                 user_attrs={NUMBER_ATTR: number}, intermediate_values=trial.intermediate_values))
                continue
            if trial.state == TrialState.RUNNING:  # killed with the sweep
                study.tell(trial.number, state=TrialState.FAIL)
            if trial_dir.exists() or trial_dir.is_symlink():  # interrupted or failed: it runs again from scratch
                remove_tree(trial_dir, sweep_dir)  # (run_trial makes the directory); never across a link
            again[number] = params
    return records, again


def _finish(sweep_dir, records, space, metric, mode, status, config_dirs, log, trust=()) -> SweepResult:
    frame = results_frame(records, space, metric)
    write_results(sweep_dir / "results.csv", frame)
    plot_sweep(frame, space, metric, sweep_dir / "sweep.png")
    counts = frame["status"].value_counts().to_dict()
    completed = frame[(frame["status"] == "completed") & frame[metric].notna()]
    fields = {"status": status, "counts": {k: int(v) for k, v in counts.items()}, "best_trial": None}
    if not completed.empty:
        best = sorted_by_metric(completed, metric, mode).iloc[0]
        number = int(best["number"])
        record = next(r for r in records if r["number"] == number)
        overrides = [*space.fixed, *(f"{k}={v}" for k, v in record["params"].items())]
        write_text(sweep_dir / "best.yaml", OmegaConf.to_yaml(OmegaConf.create({"overrides": overrides})))
        draw_in_background(Path(record["run_dir"]), ["curves"])
        fields.update(best_trial=number, best_overrides=overrides, best_run_dir=record["run_dir"],
                      **{f"best_{metric}": float(best[metric])})
        if status == "completed":
            fields["test"] = _test_best(Path(record["run_dir"]), trust)
            log(f"best trial {number:03d}: {metric} {short(float(best[metric]))}; on the held-out test split: "
                + ", ".join(f"{k} {short(v)}" for k, v in fields["test"].items() if isinstance(v, float)))
    summary = update_summary(sweep_dir, **fields)
    return SweepResult(sweep_dir, summary, sorted_by_metric(frame, metric, mode))


def _test_best(trial_dir: Path, trust: Sequence[str] = ()) -> dict:
    """The one look at the test split: the best trial's best checkpoint, after every trial is done."""
    from dlcli.evaluate import evaluate_checkpoint
    from dlcli.experiment import build_experiment

    cfg = load_saved_config(trial_dir, trust)
    report = evaluate_checkpoint(build_experiment(cfg, restoring=True), trial_dir, "test", "best")
    keep = ("samples", "loss", "accuracy", "macro_f1", "rmse", "mae", "r2", "log_rmse")
    return {k: report[k] for k in keep if k in report}
