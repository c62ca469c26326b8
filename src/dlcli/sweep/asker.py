"""The sweep's side of its Optuna study: asking for each trial when a slot is free, telling the
study how each ended, and on resume bringing the study in line with the trial directories."""

from __future__ import annotations

import time
from pathlib import Path

from optuna.trial import TrialState, create_trial

from dlcli.errors import UserError, first_line
from dlcli.rundir.lock import is_training
from dlcli.system.files import remove_tree
from dlcli.system.interrupts import ctrl_c_deferred
from dlcli.rundir.directory import read_summary
from dlcli.sweep.kinds import KINDS, grid_combinations
from dlcli.sweep.plan import FINISHED, SweepSettings
from dlcli.sweep.space import SearchSpace
from dlcli.sweep.study import (
    NUMBER_ATTR,
    STUDY_FILE,
    distributions,
    optuna_values,
    outcome,
    sampler_for,
    trial_id_of,
    trial_params,
)
from dlcli.sweep.trial import TrialSpec, trial_outcome


class TrialAsker:
    """Asks the study for trials as slots free up, and tells it how each ended.

    Trial N of the sweep (trials/<NNN>/) is the Optuna trial enqueued for it with N as a user
    attribute, in one step, so no trial ever exists without its number. A grid's trial N is its
    N-th combination; a trial that failed or was interrupted runs again with the same values;
    any other trial takes what the sampler suggests, seeded by (seed, N). Journal calls hold
    Ctrl-C until they are done (Optuna breaks its file lock when interrupted waiting for it)."""

    def __init__(self, study, sweep_dir: Path, settings: SweepSettings, space: SearchSpace, metric: str, mode: str,
                 threads: int, config_dirs, extra: list[str], again: dict[int, dict[str, str]], pruning, study_name: str,
                 received: bool = False):
        self.study, self.sweep_dir, self.settings, self.space = study, sweep_dir, settings, space
        self.metric, self.mode, self.threads, self.config_dirs, self.extra = metric, mode, threads, list(config_dirs), extra
        self.pruning, self.study_name = pruning, study_name
        self.received = received  # the overrides come from a sweep.yaml read back: its trials write into no folder it names
        self.known = dict(again)
        if not KINDS[settings.kind].draws:  # a grid's trial N is its N-th combination
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
                            str(self.sweep_dir / "trials" / f"{number:03d}"), self.metric, self.mode, self.pruning,
                            self.threads, self.config_dirs, extra=list(self.extra), sweep_dir=str(self.sweep_dir),
                            trial_id=trial_id_of(trial), study_name=self.study_name, received=self.received)

    def tell(self, record: dict) -> None:
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
        with ctrl_c_deferred():
            for optuna_number in self.running.values():
                self.study.tell(optuna_number, state=TrialState.FAIL)
            self.running.clear()


def collect(sweep_dir: Path, study, space: SearchSpace, metric: str, mode: str) -> tuple[list[dict], dict[int, dict[str, str]]]:
    """Finished trials become records, and the study is brought in line with them (a trial that
    finished while the sweep was being killed is told now); trials that failed, were interrupted
    or were left running by a killed sweep are failed in the study and cleaned away, to run again
    with the same values. Waiting trials a killed sweep enqueued but never asked are dropped."""
    with ctrl_c_deferred():
        while any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False)):
            study.tell(study.ask(), state=TrialState.FAIL)
        latest = {}
        for trial in study.get_trials(deepcopy=False):
            number = trial.user_attrs.get(NUMBER_ATTR)
            # asked without a number (an older interruption), or killed inside ask() before every value
            # was written: nothing to keep, and the trial's number runs again
            if number is None or any(p.key not in trial.params for p in space.params):
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
                          **trial_outcome(trial_dir, metric, mode)}
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
