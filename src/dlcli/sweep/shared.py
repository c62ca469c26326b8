"""A sweep whose study is in a database server (`--storage URL`): its budget is in the study, and
any number of workers (`dl sweep join URL --study NAME`, on any machine) take trials from it.

The command that starts the sweep enqueues every trial of the budget once, as a waiting Optuna
trial carrying its number (a grid's N-th combination with its values fixed; a random or TPE
trial without values, drawn when a worker takes it). A worker takes a trial by moving one waiting
trial to running, which the database does under a row lock (`SELECT ... FOR UPDATE`, Optuna's
own queue): of two workers reaching for the same trial one gets it and the other moves on, so
every trial of the budget runs once across all workers, and no worker ever asks Optuna for a
trial outside the budget. The values of a random or TPE trial are drawn when it is taken, from
the study as it is then: TPE sees every trial finished by any worker.

Each worker sends a heartbeat for each trial it runs; a worker that finds a trial silent for
three heartbeats fails it, and Optuna's RetryFailedTrialCallback enqueues it once more (same
number and values), so a trial whose worker was killed runs again elsewhere, once. A worker
stops when no trial waits and no other worker's trial is still running (one may yet be retried).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from pathlib import Path

from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.trial import TrialState, create_trial

from dlcli.errors import UserError
from dlcli.system.files import remove_tree
from dlcli.trust.targets import check_trusted_overrides
from dlcli.system.interrupts import ctrl_c_deferred
from dlcli.sweep.kinds import KINDS, grid_combinations, quiet_optuna, sampler_for
from dlcli.sweep.plan import OpenSweep, SweepPlan, SweepSettings, declared
from dlcli.sweep.space import SearchSpace
from dlcli.sweep.storage import MOST_RETRIES, STALE_AFTER, check_workers, connection_errors, holds_studies, masked, open_storage, without_password
from dlcli.sweep.study import NUMBER_ATTR, distributions, optuna_values, outcome, trial_id_of, trial_params
from dlcli.sweep.trial import TrialSpec

SETTINGS_ATTR = "dl_sweep"  # the study's user attribute holding what it searches: set last, when its budget is enqueued
SAVED = ("kind", "overrides", "trials", "seed", "metric", "mode", "prune", "prune_warmup", "prune_startup")
WHERE_ATTR = "dl_where"  # where a trial runs: {host, pid (of its worker), run_dir}, one write
RECORD_ATTR = "dl_record"  # how it ended
RECORDED = ("status", "value", "val_loss", "best_epoch", "std", "folds", "seconds", "message")


def prepare_shared(settings: SweepSettings, plan: SweepPlan) -> tuple[SweepSettings, SweepPlan]:
    """A database-backed sweep's plan: its URL checked and kept without its password; a worker
    that joins takes the sweep's settings from the study, whose overrides (a database others may
    write) build only classes the user trusts."""
    if plan.backend != "local":
        raise UserError("--storage runs a worker on each machine (dl sweep join URL --study NAME): it replaces --backend ray, "
                        "whose workers need the sweep directory on shared storage")
    check_workers(plan.storage, plan.jobs or 1)
    plan = dataclasses.replace(plan, storage=without_password(plan.storage))
    if not plan.joining:
        open_storage(plan.storage, plan.heartbeat)  # a server that cannot be reached is said at once, before any config is composed
        return settings, plan
    study, saved = read_study(plan.storage, plan.name)
    with connection_errors(plan.storage):
        left = unfinished(study)
    if not left:
        raise NothingToRun(f"the study {plan.name} in {masked(plan.storage)} has no trial left to run: nothing to do "
                           f"(its results: dl sweep report {masked(plan.storage)} --study {plan.name})")
    source = f"the study {plan.name} in {masked(plan.storage)}"
    check_trusted_overrides(saved["overrides"], plan.trust, source=source)
    return SweepSettings(**{key: saved[key] for key in SAVED}), dataclasses.replace(plan, heartbeat=int(saved["heartbeat"]))


class NothingToRun(Exception):
    """A worker joined a study whose every trial has ended: it creates nothing and says so."""


def unfinished(study) -> int:
    """Trials of the study still waiting or running (one running may yet be retried)."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)))


def study_settings(settings: SweepSettings, planned: int, folds: int | None, heartbeat: int) -> dict:
    """What the study holds of a sweep: enough for a worker on another machine to run its trials."""
    return {**{key: getattr(settings, key) for key in SAVED}, "planned": planned, "folds": folds, "heartbeat": heartbeat}


def start_study(url: str, name: str, settings: SweepSettings, space: SearchSpace, planned: int, folds: int | None,
                heartbeat: int) -> None:
    """The study and its budget, made once: every trial enqueued, then the settings (so a study
    without them is one whose start broke off, completed here when the command runs again). A
    study of that name holding another sweep is refused."""
    optuna = quiet_optuna()
    storage = open_storage(url, heartbeat)
    wanted = study_settings(settings, planned, folds, heartbeat)
    with connection_errors(url):
        try:
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize" if settings.mode == "max" else "minimize")
        except DuplicatedStudyError:
            study = optuna.load_study(study_name=name, storage=storage)
        saved = study.user_attrs.get(SETTINGS_ATTR)
        if saved is not None:
            differ = next((key for key in wanted if saved.get(key) != wanted[key]), None)
            if differ is not None:
                raise UserError(f"the study {name} in {masked(url)} holds another sweep ({differ}: {saved.get(differ)}): "
                                f"join it with dl sweep join {masked(url)} --study {name}, or give another --name")
            return  # started before: this command is one more worker
        taken = {t.user_attrs.get(NUMBER_ATTR) for t in study.get_trials(deepcopy=False)}
        grid = None if KINDS[settings.kind].draws else grid_combinations(space)
        for number in range(planned):
            if number not in taken:
                values = optuna_values(space, settings.kind, grid[number]) if grid else {}
                study.enqueue_trial(values, user_attrs={NUMBER_ATTR: number})
        study.set_user_attr(SETTINGS_ATTR, wanted)


def read_study(url: str, name: str, heartbeat: int | None = None):
    """(the study, its saved settings, checked like a sweep.yaml read back: a database may be shared)."""
    optuna = quiet_optuna()
    if not holds_studies(url):  # asked first: opening the storage would create its tables (and a SQLite file)
        raise UserError(f"--study {name}: no such study in {masked(url)} (it holds none); start one with "
                        f"dl sweep KIND ... --storage URL --name {name}")
    storage = open_storage(url, heartbeat)  # (None: any this process has open)
    with connection_errors(url):
        names = optuna.get_all_study_names(storage)
        if name not in names:
            known = f" (it holds {', '.join(sorted(names)[:10])})" if names else " (it holds none)"
            raise UserError(f"--study {name}: no such study in {masked(url)}{known}; start one with "
                            f"dl sweep KIND ... --storage URL --name {name}")
        study = optuna.load_study(study_name=name, storage=storage)
        saved = study.user_attrs.get(SETTINGS_ATTR)
    if not isinstance(saved, dict):
        raise UserError(f"the study {name} in {masked(url)} is not a dl sweep's, or the command that started it broke off: "
                        "run that command again")
    table = declared()
    for key in SAVED:
        problem = table[key].problem(saved.get(key)) if key in saved else "is missing"
        if problem is not None:
            raise UserError(f"the study {name} in {masked(url)}: {key} {problem} (not a study dl wrote)")
    return study, saved


def _suggest(trial, key: str, distribution):
    """The trial's value of one parameter, through Optuna's public suggest calls (a value already
    there, enqueued or retried, is kept; otherwise the study's sampler draws it now)."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(key, distribution.choices)
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(key, distribution.low, distribution.high, log=distribution.log, step=distribution.step)
    return trial.suggest_int(key, distribution.low, distribution.high, step=distribution.step, log=distribution.log)


class SharedTaker:
    """This worker's side of the shared study: takes waiting trials one at a time (as slots free),
    keeps their heartbeats, and tells the study how each ended (with where it ran)."""

    def __init__(self, url: str, s: OpenSweep, extra: list[str], heartbeat: int):
        self.url, self.s, self.extra, self.heartbeat = url, s, extra, heartbeat
        self.storage = open_storage(url, heartbeat)
        with connection_errors(url):
            self.study_id = self.storage.get_study_id_from_name(s.study_name)
            # to tell and to fail stale trials: a sampler with nothing to do after a trial (a GridSampler would read
            # every trial each time); a trial's values are drawn by a fresh study with its own sampler, in _take
            self.plain = quiet_optuna().load_study(study_name=s.study_name, storage=self.storage,
                                                   sampler=quiet_optuna().samplers.RandomSampler())
        self.distributions = distributions(s.space, s.settings.kind)
        self.host = socket.gethostname()
        self.running: dict[int, object] = {}  # sweep trial number -> the Optuna trial this worker runs
        self.asked, self.seconds = 0, 0.0
        self.lost: str | None = None  # why the heartbeats stopped reaching the database
        self._due_since: dict[int, float] = {}  # a stale trial's number -> when this worker first saw its retry missing
        self._stop = threading.Event()
        self._beats = threading.Thread(target=self._beat, name="dl-heartbeat", daemon=True)
        self._beats.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                for trial in list(self.running.values()):
                    self.storage.record_heartbeat(trial_id_of(trial))
            except Exception as exc:  # the worker's loop says it, in one line, when it next talks to the study
                self.lost = str(exc)

    def _study(self, number: int = 0):
        optuna = quiet_optuna()
        settings = self.s.settings
        return optuna.load_study(study_name=self.s.study_name, storage=self.storage, pruner=optuna.pruners.NopPruner(),
                                 sampler=sampler_for(settings.kind, self.s.space, settings.seed, settings.trials, number))

    def _check_connection(self) -> None:
        if self.lost is not None:
            with connection_errors(self.url, "keep in touch with"):
                raise OSError(self.lost)

    def specs(self, numbers=None):
        """Trials taken from the study while any waits (`numbers`: the study decides, not this worker).
        A dead worker's trial is failed and enqueued again by more_to_come, once the queue is empty:
        the budget is the same whichever order its trials run in, and each take stays cheap."""
        while True:
            self._check_connection()
            started = time.perf_counter()
            with ctrl_c_deferred(), connection_errors(self.url, "keep in touch with"):
                trial = self._take()
            if trial is None:
                return
            self.seconds += time.perf_counter() - started
            self.asked += 1
            yield self._spec(trial)

    def _take(self):
        for waiting in self.storage.get_all_trials(self.study_id, deepcopy=False, states=(TrialState.WAITING,)):
            try:
                if not self.storage.set_trial_state_values(trial_id_of(waiting), state=TrialState.RUNNING):
                    continue  # another worker took it first
            except UpdateFinishedTrialError:
                continue
            self.storage.record_heartbeat(trial_id_of(waiting))  # at once: killed from here on, it is retried
            number = int(waiting.user_attrs[NUMBER_ATTR])
            trial = quiet_optuna().trial.Trial(self._study(number), trial_id_of(waiting))
            for key, distribution in self.distributions.items():
                _suggest(trial, key, distribution)
            trial.set_user_attr(WHERE_ATTR, {"host": self.host, "pid": os.getpid(), "run_dir": str(self._trial_dir(number))})
            self.running[number] = trial
            return trial
        return None

    def _trial_dir(self, number: int) -> Path:
        return self.s.sweep_dir / "trials" / f"{number:03d}"

    def _spec(self, trial) -> TrialSpec:
        s = self.s
        number = int(trial.user_attrs[NUMBER_ATTR])
        trial_dir = self._trial_dir(number)
        if trial_dir.exists() or trial_dir.is_symlink():  # an earlier try of this trial on this machine: it runs again
            remove_tree(trial_dir, s.sweep_dir)
        return TrialSpec(number, trial_params(s.space, trial), s.space.fixed, str(trial_dir), s.metric, s.mode, s.pruning,
                         s.plan.threads, s.plan.config_dirs, extra=list(self.extra), sweep_dir=str(s.sweep_dir),
                         trial_id=trial_id_of(trial), study_name=s.study_name, storage=self.url,
                         received=s.plan.joining)  # a joining worker's overrides come from the database: no download where they say

    def tell(self, record: dict) -> None:
        """How a trial ended, recorded in the study with it. An interrupted trial (Ctrl-C) goes back
        into the queue; one the study already failed (its heartbeats stopped reaching it, so it is
        being retried elsewhere) keeps its result in its directory only."""
        trial = self.running.pop(record["number"], None)
        if trial is None:
            return
        started = time.perf_counter()
        state, value = outcome(record)
        with ctrl_c_deferred(), connection_errors(self.url, "keep in touch with"):
            try:
                if record["status"] == "interrupted":
                    self._give_back(trial)
                trial.set_user_attr(RECORD_ATTR, {key: record.get(key) for key in RECORDED})
                self.plain.tell(trial.number, value, state=state)
            except UpdateFinishedTrialError:
                pass
        self.seconds += time.perf_counter() - started

    def _give_back(self, trial) -> None:
        frozen = self.storage.get_trial(trial_id_of(trial))
        self.plain.add_trial(create_trial(state=TrialState.WAITING, params=frozen.params, distributions=frozen.distributions,
                                             user_attrs={NUMBER_ATTR: frozen.user_attrs[NUMBER_ATTR]}))

    def more_to_come(self, poll: float | None = None) -> bool:
        """Waits while other workers' trials run (one whose worker dies is enqueued again, for
        whoever is still here); True as soon as a trial waits, False when none is left."""
        while True:
            self._check_connection()
            with connection_errors(self.url, "keep in touch with"):
                quiet_optuna().storages.fail_stale_trials(self.plain)
                trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
            if any(t.state == TrialState.WAITING for t in trials):
                return True
            if not any(t.state == TrialState.RUNNING for t in trials) and not self._retries_due(trials):
                return False
            time.sleep(poll or self.heartbeat)

    def _retries_due(self, trials) -> list:
        """Trials failed for their silence and not yet enqueued again: Optuna fails a stale trial and
        enqueues its retry in two steps, and a worker that looked in between would stop one trial
        short. One whose retry does not appear within three heartbeats (the worker that failed it
        died between the steps) is given up."""
        retried = {number for t in trials for number in t.system_attrs.get("retry_history", [])}
        due = [t for t in trials if t.state == TrialState.FAIL and RECORD_ATTR not in t.user_attrs and t.number not in retried
               and len(t.system_attrs.get("retry_history", [])) < MOST_RETRIES]
        now = time.monotonic()
        return [t for t in due if now - self._due_since.setdefault(t.number, now) < STALE_AFTER * self.heartbeat]

    def close(self) -> None:
        """Trials still running here when the worker stops (Ctrl-C, a lost connection) go back."""
        self._stop.set()
        for number in list(self.running):
            try:
                self.tell({"number": number, "status": "interrupted", "params": {}})
            except UserError:
                break  # the database is gone: their heartbeats stop, and another worker retries them


def study_records(study, space: SearchSpace) -> list[dict]:
    """A record per trial of the shared study (its latest try), as the sweep's results show them;
    where it ran in run_dir (HOST:PATH for another machine's) and host."""
    latest: dict[int, object] = {}
    for trial in study.get_trials(deepcopy=False):
        number = trial.user_attrs.get(NUMBER_ATTR)
        if number is not None and trial.state != TrialState.WAITING and (number not in latest or trial.number > latest[number].number):
            latest[number] = trial
    here = socket.gethostname()
    records = []
    for number, trial in sorted(latest.items()):
        done = trial.user_attrs.get(RECORD_ATTR) or {}
        status = done.get("status") or {TrialState.RUNNING: "running", TrialState.FAIL: "failed"}.get(trial.state, trial.state.name.lower())
        where = trial.user_attrs.get(WHERE_ATTR) or {}
        host, path = str(where.get("host", "")), str(where.get("run_dir", ""))
        records.append({**{key: done.get(key) for key in RECORDED}, "number": int(number), "status": status,
                        "params": _params(space, trial), "host": host,
                        "run_dir": path if host == here else f"{host}:{path}", "seconds": done.get("seconds") or 0.0,
                        "message": done.get("message") or ("its worker stopped sending heartbeats" if status == "failed" and not done else None)})
    return records


def _params(space: SearchSpace, trial) -> dict[str, str]:
    """A trial's values as override texts (a trial taken but killed before its values were drawn has none)."""
    if any(p.key not in trial.params for p in space.params):
        return {p.key: str(trial.params.get(p.key, "")) for p in space.params}
    return trial_params(space, trial)
