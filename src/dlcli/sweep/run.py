"""Running a sweep (`dl sweep grid|random|tpe`): hyper-parameter search that is parallel, resumable and never peeks
at the test split. Every kind runs through one Optuna study (dlcli.sweep.study) kept in the sweep
directory: the sweep asks it for each trial when a slot is free, trials report their epochs to it
(pruning), and each outcome is told to it. Trials are ordinary run directories under
<sweep>/trials/<NNN>/; results are saved after every trial, so killing the sweep loses no finished
trial and --resume runs only the rest, in the same study."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import torch
from omegaconf import OmegaConf

from dlcli.config.compose import compose, override_key
from dlcli.config.constraints import show
from dlcli.config.metric_names import TASK_METRICS, monitor_mode
from dlcli.errors import UserError, first_line
from dlcli.experiment import build_experiment, check_config
from dlcli.system.numbers import as_number, setting
from dlcli.rundir.lock import RunLock
from dlcli.rundir.directory import RunStart, read_summary, start_run_dir, update_summary
from dlcli.sweep.asker import TrialAsker, collect
from dlcli.sweep.best import finish, value_text
from dlcli.sweep.backends import default_threads, plan_slots, run_in_pool, run_in_process, run_on_ray
from dlcli.sweep.kinds import check_budget, kind_of
from dlcli.sweep.plan import OpenSweep, declared, saved_config_dirs, SweepPlan, SweepResult, SweepSettings
from dlcli.sweep.results import results_frame, write_results
from dlcli.sweep.saved import read_saved_sweep
from dlcli.sweep.space import SearchSpace, parse_space
from dlcli.sweep.shared import SharedTaker, prepare_shared, read_study, start_study, study_records
from dlcli.sweep.storage import is_database_url, masked, without_password
from dlcli.sweep.study import STUDY_FILE, STUDY_NAME, Pruning, open_study, repair_journal
from dlcli.tracking import close_parent_runs, open_parent_runs
from dlcli.trust.received import never_write_where_it_names
from dlcli.trust.targets import check_trusted_targets, needing_trust, targets_typed


def run_sweep(settings: SweepSettings, jobs: int | None = None, threads: int | None = None, fail_fast: bool = False,
              backend: str = "local", address: str | None = None, gpus_per_trial: float = 0.0,
              trials_per_gpu: int | None = None, resume: str | Path | None = None, name: str = "sweep",
              runs_dir: str = "runs", config_dirs: Sequence[str] = (), log: Callable[[str], None] = print,
              trust: Sequence[str] = ()) -> SweepResult:
    """Run (or with `resume`, finish) a sweep: `dlcli.sweep.run_sweep`, the library entry point
    (its keywords are SweepPlan's fields)."""
    return sweep(settings, SweepPlan(jobs, threads, fail_fast, backend, address, gpus_per_trial, trials_per_gpu, resume,
                                     name, runs_dir, list(config_dirs), list(trust)), log)


def _check_same_storage(given: str | None, saved: str | None, sweep_dir: Path) -> None:
    """A resumed sweep keeps the storage it started with: --storage may only name it again. (A
    journal sweep resumed with --storage was copied into the database and its finished trials run
    again; a database sweep's own URL silently won over another.)"""
    if given is None:
        return
    if saved is None:
        raise UserError(f"--storage {masked(given)} with --resume: this sweep keeps its study in {sweep_dir / STUDY_FILE} "
                        "and resumes from it; resume without --storage, or start a new sweep with --storage")
    if without_password(given) != saved:
        raise UserError(f"--storage {masked(given)} with --resume: this sweep's study is in {masked(saved)}: "
                        "resume without --storage")


def sweep(settings: SweepSettings, plan: SweepPlan, log: Callable[[str], None] = print) -> SweepResult:
    """Every trial's values are checked before the first trial starts; a resumed sweep's saved
    overrides may only build trusted classes."""
    _check_declared(settings, plan)
    plan = dataclasses.replace(plan, config_dirs=[str(Path(d).resolve()) for d in plan.config_dirs])
    sweep_dir, lock, saved = None, None, {}
    if plan.resume is not None:
        # the sweep's overrides typed again after --resume are the user's word again (they must match the saved ones)
        plan = dataclasses.replace(plan, trust=[*plan.trust, *targets_typed(settings.overrides)])
        sweep_dir, settings, saved = read_saved_sweep(Path(plan.resume).expanduser(), settings, plan.trust)
        _check_same_storage(plan.storage, saved.get("storage"), sweep_dir)
        trials_per_gpu = plan.trials_per_gpu or saved.get("trials_per_gpu")
        plan = dataclasses.replace(
            plan, config_dirs=plan.config_dirs or saved_config_dirs(saved, sweep_dir), trials_per_gpu=trials_per_gpu,
            # jobs derived from --trials-per-gpu are derived again here (this machine may have other GPUs)
            jobs=plan.jobs or (saved.get("jobs") if not trials_per_gpu else None), threads=plan.threads or saved.get("threads"))
        lock = RunLock(sweep_dir).acquire()  # one process finishes a sweep at a time
        if saved.get("storage"):  # a database-backed sweep: resuming it is joining its study again
            plan = dataclasses.replace(plan, storage=saved["storage"], name=saved.get("study_name", plan.name), joining=True)
    if plan.trials_per_gpu is not None and plan.gpus_per_trial:
        raise UserError("--trials-per-gpu K and --gpus-per-trial both say how trials share GPUs: give one")
    try:
        if plan.storage:
            settings, plan = prepare_shared(settings, plan)
        received = plan.resume is not None or plan.joining  # the overrides come from a file or a database: trusted only as named
        jobs, ray_gpus, note = plan_slots(plan.jobs, plan.trials_per_gpu, torch.cuda.device_count(), plan.backend)
        plan = dataclasses.replace(plan, jobs=jobs, gpus_per_trial=plan.gpus_per_trial or ray_gpus)
        space, planned = plan_space(settings, plan.config_dirs)
        bounds = check_trial_values(space, plan.config_dirs, trusted=plan.trust if received else None)
        max_epochs, folds, devices = bounds.epochs, bounds.folds, bounds.devices
        if not received:  # what the user's own command builds is trusted for every step of this sweep
            plan = dataclasses.replace(plan, trust=[*plan.trust, *sorted(bounds.user_targets)])
        check_devices_per_trial(devices, plan, torch.cuda.device_count())
        metric, mode, runs_dir = _metric_and_mode(settings, space, first_trial(space), plan.config_dirs,
                                                  received=received)
        settings.metric, settings.mode = metric, mode
        if runs_dir != "runs" and plan.runs_dir == "runs":  # runs_dir=... among the overrides: where the sweep goes
            plan = dataclasses.replace(plan, runs_dir=runs_dir)
        plan = dataclasses.replace(plan, threads=plan.threads or default_threads(plan.jobs))
        study_name = saved.get("study_name", STUDY_NAME) if plan.resume is not None else plan.name
        if plan.storage and not plan.joining:  # before the sweep directory: a database that cannot be reached leaves nothing
            start_study(plan.storage, study_name, settings, space, planned, folds, plan.heartbeat)
        if note:  # said once every check has passed: a command refused says one line, the reason
            log(note)
        if sweep_dir is None:
            sweep_dir, lock = _new_sweep_dir(settings, plan, space, planned, metric, mode, folds, bounds.user_targets)
        sweep_dir = sweep_dir.resolve()  # trials (and Ray workers on other nodes) find the study by this path
        update_summary(sweep_dir, kind="sweep", status="running", metric=metric, mode=mode, trials=planned)
        try:
            pruning = Pruning(settings.prune, settings.prune_warmup, settings.prune_startup, steps=folds or max_epochs,
                              per_fold=folds is not None)
            named = _trial_name(space, sweep_dir)
            open_sweep = OpenSweep(sweep_dir, settings, plan, space, planned, pruning, study_name, metric, mode,
                                   _parent_runs(sweep_dir, settings, space, first_trial(space), plan.config_dirs, log, named),
                                   named, devices)
            return _run_closing_parents(open_sweep, log)
        except BaseException as exc:  # whatever broke off the sweep, its summary must not say running forever
            _record_broken_off(sweep_dir, exc)
            raise
    finally:
        if lock is not None:
            lock.release()


def _run_closing_parents(open_sweep: OpenSweep, log: Callable[[str], None]) -> SweepResult:
    try:
        return _run_trials(open_sweep, log)
    except BaseException:  # the sweep broke off: its parent run must not say running forever
        close_parent_runs(open_sweep.parents, "failed", {}, log)
        raise


def _record_broken_off(sweep_dir: Path, exc: BaseException) -> None:
    """A sweep that stopped on an error (or a second Ctrl-C) after its directory said running:
    the summary says how it ended and why, so `dl runs` and --resume see the truth."""
    try:
        if read_summary(sweep_dir).get("status") != "running":
            return
        interrupted = isinstance(exc, KeyboardInterrupt)
        update_summary(sweep_dir, status="interrupted" if interrupted else "failed",
                       message="interrupted" if interrupted else first_line(exc, default=type(exc).__name__))
    except Exception:  # recording the end must not hide the error that ended it
        pass


def _new_sweep_dir(settings: SweepSettings, plan: SweepPlan, space: SearchSpace, planned: int, metric: str, mode: str,
                   folds: int | None, user_targets: dict[str, str]):
    """runs/sweeps/<name>/<timestamp>/ with sweep.yaml (what --resume reads back) and an empty trials/."""
    saved = {
        **settings.as_dict(),
        "space": {"fixed": space.fixed, "params": [p.__dict__ for p in space.params]},
        "trials_planned": planned,
        "folds": folds,  # each trial cross-validated over this many folds (split.kfold), or null
        "study": STUDY_FILE if not plan.storage else "database",  # Optuna's journal: optuna-dashboard <sweep>/study.journal
        "study_name": plan.name,
        "storage": plan.storage,  # the URL without its password (dlcli.sweep.storage)
        "config_dirs": list(plan.config_dirs),
        "jobs": plan.jobs,
        "threads": plan.threads,
        "trials_per_gpu": plan.trials_per_gpu,
        # the classes the user's command built on their word: a resume names them when they need trusting again
        # (this record only words that refusal: the file never vouches for them)
        "typed_targets": dict(user_targets),
        "command": " ".join(shlex.quote(masked(a) if is_database_url(a) else a) for a in ["dl", *sys.argv[1:]]) if sys.argv else "",
    }
    start = RunStart(texts={"sweep.yaml": OmegaConf.to_yaml(OmegaConf.create(saved))}, folders=("trials",),
                     summary={"kind": "sweep", "status": "running", "metric": metric, "mode": mode, "trials": planned})
    return start_run_dir(Path(plan.runs_dir) / "sweeps", plan.name, start)


def plan_space(settings: SweepSettings, config_dirs) -> tuple[SearchSpace, int]:
    """The search space and the number of trials the sweep runs."""
    kind_of(settings.kind)  # a known kind, or one line naming them
    space = parse_space(settings.overrides, config_dirs)
    return space, check_budget(settings.kind, space, settings.trials)


def _metric_and_mode(settings: SweepSettings, space: SearchSpace, first: dict[str, str], config_dirs,
                     received: bool = False) -> tuple[str, str, str]:
    """Default metric: the task's validation metric. Validated on the first trial's config, which
    also says where the sweep goes (its runs_dir). `received`: the overrides come from sweep.yaml
    (a resume), which writes into no folder it names (no download, no cache)."""
    cfg = compose([*space.fixed, *(f"{k}={v}" for k, v in first.items())], config_dirs)
    if received:
        never_write_where_it_names(cfg)
    if cfg.split.get("kfold") is not None and cfg.split.get("fold") is None:
        cfg.split.fold = 1  # a cross-validated trial: its folds are built as its first one is
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
    return metric, mode, str(cfg.runs_dir)


def _trial_name(space: SearchSpace, sweep_dir: Path) -> list[str]:
    """Trials are named after the sweep's --name (the MLflow experiment they log to), unless the
    overrides name them."""
    return [] if any(override_key(o) == "name" for o in space.fixed) or "name" in space.keys else [f"name={sweep_dir.parent.name}"]


def _parent_runs(sweep_dir: Path, settings: SweepSettings, space: SearchSpace, first: dict, config_dirs, log, named: list[str]):
    """With a logger that nests runs (MLflow), the sweep is a run and its trials are runs under it."""
    cfg = compose([*space.fixed, *(f"{k}={v}" for k, v in first.items()), *named], config_dirs)
    return open_parent_runs(sweep_dir, cfg, "sweep", {"kind": settings.kind, "overrides": " ".join(settings.overrides),
                                                      "metric": settings.metric, "mode": settings.mode}, log)


def _run_trials(s: OpenSweep, log: Callable[[str], None]) -> SweepResult:
    """The trials still to run, `jobs` at a time, each recorded (results.csv, the study) as it ends."""
    sweep_dir, settings, space, plan, metric, mode = s.sweep_dir, s.settings, s.space, s.plan, s.metric, s.mode
    extra = [*s.named, *(p.override for p in s.parents)]
    if plan.storage:  # the study's budget is in its database, shared with every other worker
        asker, records, todo = SharedTaker(plan.storage, s, extra, plan.heartbeat), [], None
        log(f"sweep {sweep_dir}: worker of the study {s.study_name} in {masked(plan.storage)} ({s.planned} trials in all), "
            f"{plan.jobs} at a time, {plan.threads} thread(s) each")
    else:
        asker, records, todo = _local_asker(s, extra, log)
    failures, stopped = [], []

    def on_result(record: dict) -> bool:
        """Record a finished trial (saved at once, told to the study); False stops the sweep."""
        if any(r["number"] == record["number"] for r in records):  # reported again by a stop mid-report
            return True
        asker.tell(record)
        records.append(record)
        write_results(sweep_dir / "results.csv", results_frame(records, space, metric))  # saved trial by trial
        shown = ", ".join(f"{k}={setting(as_number(v))}" for k, v in record["params"].items())
        if record["status"] == "interrupted":  # Ctrl-C reached the trial: the sweep stops too
            stopped.append(record)
            log(f"trial {record['number']:03d} interrupted ({shown}): it will run again on --resume")
            return False
        if record["status"] == "failed":
            failures.append(record)
            log(f"trial {record['number']:03d} failed ({shown}): {record['message']}")
            return not plan.fail_fast
        log(f"trial {record['number']:03d} {record['status']} ({shown}): {metric} {value_text(record)}  {record['seconds']:.1f}s")
        return True

    status = "completed"
    try:
        _run_specs(asker.specs(todo), s, on_result)
        while plan.storage and not (stopped or (plan.fail_fast and failures)) and asker.more_to_come():
            _run_specs(asker.specs(), s, on_result)  # a trial whose worker died, enqueued again
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        asker.close()  # a trial asked but never started must not stay "running" in the study
    if status == "completed" and plan.fail_fast and failures:
        status = "failed"  # trials the fail-fast stop interrupted are part of that failure
    elif status == "completed" and stopped:
        status = "interrupted"
    if status != "completed":
        log(f"sweep {status}: finished trials are saved; continue with: dl sweep {settings.kind} --resume {sweep_dir}")
    if plan.storage:  # what every worker did: the whole study (run_dir HOST:PATH where another machine ran it)
        records = study_records(read_study(plan.storage, s.study_name)[0], space)
    result = finish(sweep_dir, records, space, metric, mode, status, log, plan.trust,
                     s.pruning.steps if s.pruning.per_fold else None)
    if asker.asked:
        result.summary = update_summary(sweep_dir, study_ms_per_trial=round(1000 * asker.seconds / asker.asked, 2))
    if s.parents:
        summary = result.summary
        numbers = {f"best_{metric}": summary.get(f"best_{metric}"),
                   **{f"test_{k}": v for k, v in (summary.get("test") or {}).items() if k not in ("epoch", "samples")}}
        close_parent_runs(s.parents, summary["status"], numbers, log)
    return result


def _local_asker(s: OpenSweep, extra: list[str], log: Callable[[str], None]):
    """The asker of a sweep whose study is the journal in its directory, the trials finished so
    far (a resume) and the numbers still to run."""
    repaired = repair_journal(s.sweep_dir)
    if repaired:
        log(repaired)
    study = open_study(s.sweep_dir, s.study_name, s.settings.kind, s.space, s.settings.seed, s.settings.trials, s.mode, s.pruning)
    records, again = collect(s.sweep_dir, study, s.space, s.metric, s.mode)
    finished = {r["number"] for r in records}
    todo = [n for n in range(s.planned) if n not in finished]
    asker = TrialAsker(study, s.sweep_dir, s.settings, s.space, s.metric, s.mode, s.plan.threads, s.plan.config_dirs, extra,
                       again, s.pruning, s.study_name, received=s.plan.resume is not None)
    asker.check_space_of_study()
    if records:
        log(f"resuming {s.sweep_dir}: {len(records)} of {s.planned} trials already finished")
    log(f"sweep {s.sweep_dir}: {len(todo)} trials to run, {s.plan.jobs} at a time ({s.plan.backend}), {s.plan.threads} thread(s) each")
    return asker, records, todo


def _run_specs(specs, s: OpenSweep, on_result) -> None:
    """The trials `specs` yields, where the plan says: this process, a local pool, or Ray."""
    plan = s.plan
    if plan.backend == "ray":
        run_on_ray(specs, plan.jobs, plan.address, plan.gpus_per_trial, on_result, s.devices)
    elif plan.jobs == 1:
        run_in_process(specs, on_result)
    else:  # a database's connections do not survive a fork: its workers start from the fork server
        run_in_pool(specs, plan.jobs, torch.cuda.device_count(), plan.threads, on_result, s.devices, fork=not plan.storage)


def check_devices_per_trial(devices: int, plan: SweepPlan, gpus: int) -> None:
    """Trials on trainer.devices=N processes each: locally, --jobs J of them at once on J x N GPUs
    (or sharing the CPU cores); on Ray each trial asks for N CPUs and --gpus-per-trial N GPUs; not
    with --trials-per-gpu (which shares one GPU among trials)."""
    if devices <= 1:
        return
    if plan.trials_per_gpu:
        raise UserError(f"--trials-per-gpu {plan.trials_per_gpu} with trainer.devices={devices}: one puts several trials on "
                        "a GPU, the other several GPUs under a trial; give one")
    if plan.backend == "ray":
        if plan.gpus_per_trial and plan.gpus_per_trial != devices:
            raise UserError(f"--gpus-per-trial {plan.gpus_per_trial:g} with trainer.devices={devices}: a trial on {devices} "
                            f"GPUs asks Ray for {devices}; give --gpus-per-trial {devices} (or leave it out on CPUs)")
        return
    if gpus and plan.jobs * devices > gpus:
        raise UserError(f"--jobs {plan.jobs} trials of trainer.devices={devices} GPUs need {plan.jobs * devices} GPUs, and "
                        f"this machine has {gpus}: give --jobs {max(1, gpus // devices)}")


def first_trial(space: SearchSpace) -> dict[str, str]:
    """Each parameter's first listed value or lower bound: the trial that settles the metric."""
    return {p.key: p.values[0] if p.discrete else _bound(p, p.low) for p in space.params}


def _bound(param, value) -> str:
    return str(int(value)) if param.integer else repr(float(value))


class TrialBounds(NamedTuple):
    epochs: int  # the most epochs a trial trains
    folds: int | None  # the folds each trial cross-validates over (None: no k-fold)
    devices: int  # the most processes a trial trains with (trainer.devices)
    user_targets: dict[str, str]  # `_target_` -> its path: what the trials build on the user's word only (dlcli.trust.targets)


def check_trial_values(space: SearchSpace, config_dirs, trusted: Sequence[str] | None = None) -> TrialBounds:
    """Every value a swept parameter can take, checked before the first trial starts: composed with
    the first trial's other values and checked as `dl train` would (types, ranges, choices, each
    component's settings); an interval at both its ends. With `trusted`, the composed configs may
    only build trusted classes (a resumed sweep's saved overrides). Returns the most epochs a
    trial trains and the folds each trial cross-validates over (the steps a pruner counts in:
    Hyperband's budget), the most processes a trial trains with, and the classes only the user's
    word trusts."""
    first = first_trial(space)
    variants = [dict(first)]
    for param in space.params:
        values = param.values if param.discrete else [_bound(param, param.low), _bound(param, param.high)]
        variants += [{**first, param.key: value} for value in values if value != first[param.key]]
    epochs, folds, devices, user_targets = 1, set(), 1, {}
    for params in variants:
        cfg = compose([*space.fixed, *(f"{k}={v}" for k, v in params.items())], config_dirs)
        if trusted is not None:
            check_trusted_targets(cfg, trusted, source="the sweep's overrides")
        user_targets.update(needing_trust(cfg))
        check_config(cfg)
        if cfg.split.get("kfold") is None and float(cfg.split.val) == 0:
            raise UserError("a sweep compares trials on the validation split, and split.val=0 leaves none: keep a split.val "
                            "(then train the chosen settings on train+val with dl train refit=BEST_TRIAL)")
        if cfg.get("refit"):
            raise UserError("refit= trains one finished run again: it has no place in a sweep")
        if int(cfg.trainer.get("devices", 1)) > 1 and cfg.split.get("kfold") is not None:
            raise UserError(f"split.kfold with trainer.devices={cfg.trainer.devices}: k-fold trains its folds in one process; "
                            "use trainer.devices=1 in a cross-validated sweep")
        devices = max(devices, int(cfg.trainer.get("devices", 1)))
        epochs = max(epochs, int(cfg.trainer.epochs))
        folds.add(int(cfg.split.kfold) if cfg.split.get("kfold") is not None and cfg.split.get("fold") is None else None)
    if len(folds) > 1:
        raise UserError("every trial of a sweep is cross-validated over the same split.kfold, or none is: "
                        "fix split.kfold outside the swept values")
    return TrialBounds(epochs, folds.pop(), devices, user_targets)


def _check_declared(settings: SweepSettings, plan: SweepPlan) -> None:
    """Settings given through the Python API meet the table the command's options meet, in the
    same words (the command has checked its own already)."""
    for name, constraint in declared().items():
        if name in ("kind", "overrides", "config_dirs"):
            continue  # the kind is looked up by name, overrides are parsed, directories are read: each says so itself
        value = getattr(settings, name) if name in SweepSettings.__dataclass_fields__ else getattr(plan, name)
        problem = constraint.problem(value)
        if problem is not None:
            raise UserError(f"--{name.replace('_', '-')} {show(value)} {problem}")
