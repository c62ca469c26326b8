"""What a sweep searches (SweepSettings, saved in sweep.yaml), how it runs (SweepPlan: where, how
many trials at once, on what), and what it returns (SweepResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from dlcli.sweep.kinds import KINDS
from dlcli.sweep.study import PRUNERS

BACKENDS = ("local", "ray")
MOST_AT_ONCE = 4096  # --jobs, --threads, --trials-per-gpu: more than any machine has cores or GPUs
FINISHED = ("completed", "pruned")  # never re-run on resume
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


@dataclass
class OpenSweep:
    """A sweep ready for its trials: its directory, with everything the command left open settled."""

    sweep_dir: Path
    settings: SweepSettings
    plan: SweepPlan  # jobs, threads and config directories resolved
    space: object  # dlcli.sweep.space.SearchSpace
    planned: int  # trials in all
    max_epochs: int  # the longest trial (Hyperband's budget)
    metric: str
    mode: str
    parents: list = field(default_factory=list)  # the sweep's own run in loggers that nest (dlcli.tracking)
