"""The sweep's Optuna study: every kind of sweep asks its trials from it, reports their epochs to
it and records how they ended in it.

The study lives in the sweep directory as Optuna's file-based journal (study.journal), which is
safe for several processes and for workers on other machines that share the directory: the local
process pool and Ray workers report their epochs to the same study the sweep asks from, so TPE
learns from every finished trial whichever worker ran it, and `--resume` continues the same study.
`optuna-dashboard <sweep>/study.journal` shows it. With `--storage URL` the study is in a
database server instead, shared by workers on any machine (dlcli.sweep.shared).

Samplers: one per kind of sweep (dlcli.sweep.kinds).
Pruners: median -> MedianPruner, asha -> SuccessiveHalvingPruner, hyperband -> HyperbandPruner.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from dlcli.errors import UserError
from dlcli.sweep.kinds import KINDS, quiet_optuna, sampler_for
from dlcli.sweep.space import Param, SearchSpace
from dlcli.sweep.storage import connection_errors, open_storage
from dlcli.system.files import write_atomically

STUDY_FILE = "study.journal"
STUDY_NAME = "dl-sweep"  # the study of a sweep made before studies took the sweep's --name
PRUNERS = ("none", "median", "asha", "hyperband")
DEFAULT_WARMUP = 1  # a first epoch says little about where a trial ends
DEFAULT_STARTUP = 4  # the median of fewer completed trials is noise
MOST_TRIALS = 1_000_000  # a study larger than this is a typo (each trial is at least a directory)
NUMBER_ATTR = "dl_number"  # the trial's directory number, trials/<NNN>/


_optuna = quiet_optuna


def storage(sweep_dir: Path):
    optuna = _optuna()
    from optuna.storages.journal import JournalFileBackend  # noqa: PLC0415  (dl --help runs without optuna)

    return optuna.storages.JournalStorage(JournalFileBackend(str(Path(sweep_dir) / STUDY_FILE)))


def distributions(space: SearchSpace, kind: str) -> dict:
    """Optuna distributions of the swept parameters (a grid's are its listed values)."""
    from optuna.distributions import CategoricalDistribution  # noqa: PLC0415  (dl --help runs without optuna)

    if not KINDS[kind].draws:  # a grid's values are the listed texts, enqueued in order
        return {p.key: CategoricalDistribution(list(p.values)) for p in space.params}
    return {p.key: distribution(p) for p in space.params}


def distribution(param: Param):
    """The Optuna distribution of one swept parameter: interval -> float, tag(log, ...) -> log
    scale, int(interval(...)) -> int, range(...) -> int steps, choice/lists -> categorical."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: PLC0415  (dl --help runs without optuna)

    if param.step is not None:
        return IntDistribution(int(param.low), int(param.high), step=int(param.step))
    if param.discrete:
        return CategoricalDistribution(list(param.values))
    if param.integer:
        return IntDistribution(int(param.low), int(param.high), log=param.log)
    return FloatDistribution(float(param.low), float(param.high), log=param.log)


def override_value(param: Param, value) -> str:
    """A sampled value as the override text a trial is composed with (and results.csv shows)."""
    if isinstance(value, str):  # categorical (and every grid value): the override text itself
        return value
    if param.integer or param.step is not None:
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True)
class Pruning:
    """How --prune judges a trial. A step is an epoch, or a fold in a k-fold sweep (the mean of the
    folds so far). `warmup`: epochs every trial trains before a pruner may stop it (a fold always
    trains in full, so a k-fold trial may be stopped after its first fold); `startup`: trials
    that must complete before any is stopped; `steps`: the most steps a trial takes (Hyperband's
    budget, the same in every worker)."""

    rule: str = "none"
    warmup: int = DEFAULT_WARMUP
    startup: int = DEFAULT_STARTUP
    steps: int = 1
    per_fold: bool = False

    @property
    def first_judged_step(self) -> int:
        return 1 if self.per_fold else self.warmup + 1


def pruner_for(pruning: Pruning):
    """Optuna's pruner for --prune with its brakes: Median's own n_warmup_steps and
    n_startup_trials; successive halving and Hyperband start their first rung at the first step
    judged (min_resource) and wait for `startup` completed trials (a subclass, so that Optuna's
    samplers still recognise a HyperbandPruner)."""
    optuna = _optuna()
    rule = pruning.rule
    if rule not in PRUNERS:
        raise UserError(f"--prune {rule} is not a pruning rule: choose one of {', '.join(PRUNERS)}")
    first = pruning.first_judged_step
    if rule == "median":  # stop a trial below the median of the completed trials at the same step
        return optuna.pruners.MedianPruner(n_startup_trials=pruning.startup, n_warmup_steps=first, n_min_trials=2)
    if rule == "asha":
        return _after_startup(optuna.pruners.SuccessiveHalvingPruner, pruning.startup)(min_resource=first, reduction_factor=3)
    if rule == "hyperband":
        return _after_startup(optuna.pruners.HyperbandPruner, pruning.startup)(
            min_resource=min(first, max(1, pruning.steps)), max_resource=max(1, int(pruning.steps)), reduction_factor=3)
    return optuna.pruners.NopPruner()


def _after_startup(pruner_class, startup: int):
    """`pruner_class` that stops no trial until `startup` trials have completed."""
    from optuna.trial import TrialState  # noqa: PLC0415  (dl --help runs without optuna)

    class AfterStartup(pruner_class):
        def prune(self, study, trial) -> bool:
            if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < startup:
                return False
            return super().prune(study, trial)

    AfterStartup.__name__ = pruner_class.__name__
    return AfterStartup


def repair_journal(sweep_dir: Path) -> str | None:
    """A sweep killed while Optuna wrote to its journal leaves a last line without its newline:
    that torn record is cut off (kept in study.journal.torn), and the trial it belonged to runs
    again. A damaged line elsewhere is one line naming it. Returns what was done, if anything.
    Called with the sweep's lock held, so no process of the sweep is alive to hold Optuna's journal
    lock: one left by a process killed while writing is removed (Optuna would wait for it, then
    break it with two warnings)."""
    stale_lock = Path(sweep_dir) / (STUDY_FILE + ".lock")  # a link Optuna makes beside the journal
    if stale_lock.is_symlink() or stale_lock.is_file():
        stale_lock.unlink()  # the link itself, never what it names
    journal = Path(sweep_dir) / STUDY_FILE
    if not journal.is_file() or journal.is_symlink():
        return None
    data = journal.read_bytes()
    whole = data.rfind(b"\n") + 1
    for number, line in enumerate(data[:whole].splitlines(), start=1):
        try:
            json.loads(line)
        except ValueError:
            raise UserError(f"{journal} is damaged at line {number} (not a JSON record): restore it from a copy of the sweep, "
                            "or start a new sweep") from None
    if whole == len(data):
        return None

    write_atomically(journal.with_name(STUDY_FILE + ".torn"), lambda file: file.write(data[whole:]), binary=True)
    with open(journal, "r+b") as file:  # cut in place: Optuna's lock file stays beside it
        file.truncate(whole)
    return f"{journal} ended in a record cut short (a kill while it was written): dropped it (kept in {STUDY_FILE}.torn)"


def open_study(sweep_dir: Path, study_name: str, kind: str, space: SearchSpace, seed: int, trials: int | None, mode: str,
               pruning: Pruning):
    """The sweep's study, created on first use (a resumed sweep loads the one it has)."""
    optuna = _optuna()
    return optuna.create_study(study_name=study_name, storage=storage(sweep_dir), load_if_exists=True,
                               sampler=sampler_for(kind, space, seed, trials), pruner=pruner_for(pruning),
                               direction="maximize" if mode == "max" else "minimize")


def trial_handle(sweep_dir: Path, study_name: str, trial_id: int, pruning: Pruning, url: str | None = None):
    """The trial, as the process that trains it opens it: to report its epochs and ask whether to
    stop. (Optuna has no public way to report to a trial asked by another process; Trial(study,
    trial_id) is what its own ask() builds.) The journal must exist: a worker that does not see
    the sweep directory (a Ray node without the shared storage at the same path) says so."""
    optuna = _optuna()
    if url is not None:  # the study is in a database (dlcli.sweep.shared)
        with connection_errors(url):
            study = optuna.load_study(study_name=study_name, storage=open_storage(url, heartbeat=None, checked=True),
                                      pruner=pruner_for(pruning), sampler=optuna.samplers.RandomSampler())
            return optuna.trial.Trial(study, trial_id)
    journal = Path(sweep_dir) / STUDY_FILE
    if not journal.is_file():
        raise UserError(f"{journal} is not on this machine: Ray workers need the sweep directory on storage they share, "
                        "mounted at the same path")
    study = optuna.load_study(study_name=study_name, storage=storage(sweep_dir), pruner=pruner_for(pruning),
                              sampler=optuna.samplers.RandomSampler())  # a worker never samples
    return optuna.trial.Trial(study, trial_id)


def trial_id_of(trial) -> int:
    """The storage's id of an asked trial (what trial_handle opens); private in Optuna, kept here."""
    return trial._trial_id


def trial_params(space: SearchSpace, trial) -> dict[str, str]:
    """An asked Optuna trial's values as override texts, in the space's order."""
    return {p.key: override_value(p, trial.params[p.key]) for p in space.params}


def optuna_values(space: SearchSpace, kind: str, params: dict[str, str]) -> dict:
    """Override texts back as the values Optuna's distributions hold (to enqueue a trial again)."""
    values = {}
    for p in space.params:
        text = params[p.key]
        if not KINDS[kind].draws or (p.discrete and p.step is None):
            values[p.key] = text
        elif p.step is not None or p.integer:
            values[p.key] = int(float(text))
        else:
            values[p.key] = float(text)
    return values


def outcome(record: dict):
    """(state, value) to tell the study about a trial's record: a completed trial with a finite
    value is COMPLETE; pruned is PRUNED; anything else (failed, interrupted, no value) is FAIL."""
    from optuna.trial import TrialState  # noqa: PLC0415  (dl --help runs without optuna)

    value = record.get("value")
    if record["status"] == "completed" and value is not None and math.isfinite(float(value)):
        return TrialState.COMPLETE, float(value)
    if record["status"] == "pruned":
        return TrialState.PRUNED, None
    return TrialState.FAIL, None


