"""What a sweep searches (SweepSettings, saved in sweep.yaml), how it runs (SweepPlan: where, how
many trials at once, on what), and what it returns (SweepResult)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from dlcli.config.constraints import SEED, Interval, ListOf, Options, Text, nullable
from dlcli.config.schema import CONSTRAINTS
from dlcli.errors import UserError
from dlcli.sweep.kinds import KINDS
from dlcli.sweep.storage import DEFAULT_HEARTBEAT
from dlcli.sweep.study import DEFAULT_STARTUP, DEFAULT_WARMUP, MOST_TRIALS, PRUNERS

BACKENDS = ("local", "ray")
MOST_HEARTBEAT = 3600  # seconds: a worker silent for three of them is dead
MOST_AT_ONCE = 4096  # --jobs, --threads, --trials-per-gpu: more than any machine has cores or GPUs
FINISHED = ("completed", "pruned")  # never re-run on resume
SAVED_SETTINGS = ("kind", "overrides", "trials", "seed", "metric", "mode", "prune")  # sweep.yaml must hold these
LATER_SETTINGS = ("prune_warmup", "prune_startup")  # and these, unless an older dl made it (their defaults then)
SAVED_PLAN = ("jobs", "threads", "trials_per_gpu", "config_dirs")  # and may hold these (how it ran)


def declared() -> dict:
    """What each setting of a sweep may be: one table for the command's options, for SweepSettings
    and SweepPlan given through the Python API, and for the sweep.yaml a resume reads."""
    at_once = nullable(Interval(1, MOST_AT_ONCE, integer=True))
    return {"kind": Options(tuple(KINDS)), "overrides": ListOf(Text()), "trials": nullable(Interval(1, MOST_TRIALS, integer=True)),
            "seed": SEED, "metric": nullable(Text(non_empty=True)), "mode": nullable(Options(("min", "max"))),
            "prune": Options(PRUNERS), "prune_warmup": Interval(0, MOST_TRIALS, integer=True),
            "prune_startup": Interval(0, MOST_TRIALS, integer=True), "jobs": at_once, "threads": at_once, "trials_per_gpu": at_once,
            "backend": Options(BACKENDS), "gpus_per_trial": Interval(0, MOST_AT_ONCE), "name": nullable(CONSTRAINTS["name"]),
            "config_dirs": ListOf(Text(non_empty=True)), "storage": nullable(Text(non_empty=True)),
            "heartbeat": Interval(1, MOST_HEARTBEAT, integer=True), "joining": Options((False, True))}


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
    prune_warmup: int = DEFAULT_WARMUP  # epochs every trial trains before --prune may stop it
    prune_startup: int = DEFAULT_STARTUP  # trials that complete before --prune stops any

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class SweepPlan:
    """How a sweep runs. `jobs` and `threads` default to what a resumed sweep used, else 1 and each
    job's share of the cores; `trust` names what a resumed sweep's saved overrides may build."""

    jobs: int | None = None
    threads: int | None = None
    fail_fast: bool = False
    backend: str = "local"
    address: str | None = None  # a Ray cluster
    gpus_per_trial: float = 0.0
    trials_per_gpu: int | None = None
    resume: str | Path | None = None  # a sweep directory to finish
    name: str = "sweep"
    runs_dir: str = "runs"
    config_dirs: Sequence[str] = ()
    trust: Sequence[str] = ()
    storage: str | None = None  # a database URL holding the study (dlcli.sweep.shared); None: the journal in the sweep directory
    heartbeat: int = DEFAULT_HEARTBEAT  # with storage: seconds between a worker's heartbeats
    joining: bool = False  # with storage: the sweep's settings come from its study (dl sweep join)


@dataclass
class OpenSweep:
    """A sweep ready for its trials: its directory, with everything the command left open settled."""

    sweep_dir: Path
    settings: SweepSettings
    plan: SweepPlan  # jobs, threads and config directories resolved
    space: object  # dlcli.sweep.space.SearchSpace
    planned: int  # trials in all
    pruning: object  # dlcli.sweep.study.Pruning, its budget settled (the longest trial's epochs, or the folds)
    study_name: str
    metric: str
    mode: str
    parents: list = field(default_factory=list)  # the sweep's own run in loggers that nest (dlcli.tracking)
    named: list = field(default_factory=list)  # name=<--name> for every trial, unless the overrides name them
    devices: int = 1  # processes each trial trains with (trainer.devices)


def saved_config_dirs(saved: dict, sweep_dir: Path) -> list[str]:
    """The --config-dir a resumed sweep composes from is typed again: sweep.yaml's own list says
    where the sweep was first composed from, and a file that may come from someone else may not
    choose where configs are read from (as hydra.searchpath in it may not)."""
    named = [str(d) for d in saved.get("config_dirs") or []]
    if named:
        again = " ".join(f"--config-dir {shlex.quote(d)}" for d in named)
        raise UserError(f"--resume {sweep_dir} was composed with {again}: give it again if it is yours "
                        "(a sweep's own file may not choose where configs are read from)")
    return []
