"""What every logger shares: the RunLogger callback base (guarded: a failing logger warns once and
goes quiet, never costing the run), what a logger is told about its run, and the hooks a backend
may add: a parent run that sweeps and k-fold nest their runs under, the pictures, and what a new
run made from a saved config must forget. Nothing here knows a backend by name.

Backends (one file each in this package) register themselves by their `option` name.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Sequence

from omegaconf import OmegaConf

from dlcli.config.build import call_target, checked_target, resolve_target, settings_checked
from dlcli.config.compose import COMPONENT_GROUPS, option_name, override_key
from dlcli.engine.callbacks import Callback
from dlcli.errors import UserError, first_line

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from dlcli.engine.checkpoint import Checkpointer


def require(module: str, extra: str, option: str) -> None:
    """A logger whose package is missing is the user's to fix, before runs/ is touched."""
    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise UserError(f"logger={option} needs the {extra} package: pip install 'dlcli[{extra}]' (or pip install {extra})")


@dataclass
class LoggedRun:
    """What a logger needs to know about the run it follows."""

    run_dir: Path
    cfg: DictConfig
    overrides: Sequence[str]
    checkpointer: Checkpointer
    warn: Callable[[str], None]
    resumed: bool = False  # the run directory existed before this command (resume=): its config may come from anyone


@dataclass
class ParentRun:
    """A run that a sweep's trials or a k-fold's folds are nested under, in one backend."""

    option: str  # the backend (logger.<option>)
    override: str  # how a child finds it, e.g. logger.mlflow.parent_run_id=ID
    close: Callable[[str, dict], None]  # (status, final numbers)


class RunLogger(Callback):
    """Base of the loggers: every call is guarded, so a failing logger warns once and goes quiet."""

    option = "logger"
    needs: ClassVar[str | None] = None  # the package (and dlcli extra of that name) a backend cannot work without
    by_option: ClassVar[dict[str, type[RunLogger]]] = {}  # every backend class, by its `option`

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "option" in cls.__dict__:
            RunLogger.by_option[cls.option] = cls

    def __init__(self):
        self.require_package()
        self.failure: str | None = None
        self.run: LoggedRun | None = None

    @classmethod
    def require_package(cls) -> None:
        if cls.needs:
            require(cls.needs, cls.needs, cls.option)

    def attach(self, run: LoggedRun) -> None:
        self.run = run

    def _safely(self, action, *args) -> None:
        if self.failure is not None or self.run is None:
            return
        try:
            action(*args)
        except Exception as exc:  # never the run's problem: say so once, keep training
            self.failure = f"{type(exc).__name__}: {first_line(exc, default='')}".rstrip(": ")
            self.run.warn(f"warning: logger={self.option} failed and is off for the rest of this run ({self.failure}); "
                          "training goes on, metrics.csv has every epoch")

    def on_fit_start(self, session, state) -> None:
        self._safely(self.start, session, state)

    def on_epoch_end(self, state, row: dict, improved: bool) -> None:
        self._safely(self.epoch, state, row)

    def on_fit_end(self, state, status: str) -> None:
        self._safely(self.fit_end, state, status)

    def finish(self, summary: dict) -> None:
        """After the test look and summary.json: final numbers and status. Always closes."""
        self._safely(self.summarize, summary)
        try:
            self.close()
        except Exception:  # closing what already failed: nothing more to say
            pass

    # what each logger does
    def start(self, session, state) -> None: ...
    def epoch(self, state, row: dict) -> None: ...
    def fit_end(self, state, status: str) -> None: ...
    def summarize(self, summary: dict) -> None: ...
    def close(self) -> None: ...

    # what a backend may add; the defaults do nothing, so a backend without them still works
    @classmethod
    def open_parent(cls, directory: Path, node, cfg, kind: str, params: dict) -> ParentRun | None:
        """The run a sweep's trials or a k-fold's folds are nested under, where the backend has such a thing."""
        return None

    @classmethod
    def log_pictures(cls, run_dir: Path, paths: Sequence[Path]) -> None:
        """The run's pictures, once drawn (called by the drawing process, dlcli.tracking.plots)."""

    @classmethod
    def as_new_run(cls, node) -> None:
        """A new run is made from a saved config (trained longer, refitted): forget in `node` what
        belonged to the old run (its parent, a store the saved file names)."""


def typed_overrides(cfg: DictConfig, overrides: Sequence[str]) -> dict:
    """The values the user set (`optim.lr=0.1`, `model=softmax`), read back from the resolved config,
    as scalars TensorBoard and MLflow can show."""
    values = {}
    for override in overrides:
        key = override_key(override)
        if "=" not in override or key in ("name", "resume", "runs_dir") or key.startswith("logger"):
            continue
        value = OmegaConf.select(cfg, key)
        if key in COMPONENT_GROUPS and value is not None:
            value = option_name(key, OmegaConf.to_container(value))
        elif not isinstance(value, (bool, int, float, str)) or value is None:
            value = str(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)
        values[key] = value
    return values


def final_numbers(summary: dict) -> dict:
    numbers = {}
    monitor = summary.get("monitor")
    if monitor and isinstance(summary.get(f"best_{monitor}"), (int, float)):
        numbers[f"best_{monitor}"] = float(summary[f"best_{monitor}"])
    for key, value in (summary.get("test") or {}).items():
        if key not in ("epoch", "samples") and isinstance(value, (int, float)) and math.isfinite(value):
            numbers[f"test_{key}"] = float(value)
    return numbers


def build_loggers(node, check_only: bool = False) -> list[RunLogger]:
    """The loggers of the config's `logger:` mapping (logger=tensorboard, logger=[tensorboard,mlflow]).
    With `check_only`, each entry's settings and package are checked and nothing is built (a run
    checks its config before it builds its loggers, once)."""
    loggers = []
    for name, entry in (node or {}).items():
        if entry is None:
            continue
        target = checked_target(entry, f"logger.{name}")
        if not (inspect.isclass(target) and issubclass(target, RunLogger)):  # known before anything is called
            raise UserError(f"logger.{name}._target_={entry._target_} is not a dl logger (a dlcli.tracking.RunLogger)")
        if check_only:
            target.require_package()  # what building it would ask first
            continue
        with settings_checked():  # just now
            loggers.append(call_target(entry, f"logger.{name}"))
    return loggers


def logger_classes(cfg) -> list[tuple[str, type[RunLogger]]]:
    """(name, class) of each logger the config names (logger.<name>._target_)."""
    found = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None or not node.get("_target_"):
            continue
        target = resolve_target(str(node._target_), f"logger.{name}")
        if isinstance(target, type) and issubclass(target, RunLogger):
            found.append((str(name), target))
    return found


def open_parent_runs(directory: Path, cfg, kind: str, params: dict, warn: Callable[[str], None]) -> list[ParentRun]:
    """The parent run of a sweep or k-fold directory in every backend that has one; a backend that
    cannot open one warns, and its children log as runs of their own."""
    parents = []
    for name, cls in logger_classes(cfg):
        try:
            parent = cls.open_parent(directory, cfg.logger[name], cfg, kind, params)
        except Exception as exc:  # a logger never costs a run
            warn(f"warning: logger={name} could not open the {kind}'s parent run ({type(exc).__name__}: "
                 f"{first_line(exc, default='')}); its runs are logged without one")
            continue
        if parent is not None:
            parents.append(parent)
    return parents


def close_parent_runs(parents: Sequence[ParentRun], status: str, numbers: dict, warn: Callable[[str], None]) -> None:
    for parent in parents:
        try:
            parent.close(status, {k: float(v) for k, v in numbers.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        except Exception as exc:
            warn(f"warning: logger={parent.option} could not close the parent run: {first_line(exc)}")


def as_new_run(cfg) -> None:
    """A new run made from a saved config: every logger forgets what belonged to the old run."""
    for name, cls in logger_classes(cfg):
        cls.as_new_run(cfg.logger[name])


def hand_pictures(run_dir: Path, paths: Sequence[Path], options: Sequence[str]) -> None:
    """The drawn pictures to the loggers that are still working (by option name)."""
    for option in options:
        cls = RunLogger.by_option.get(option)
        if cls is not None:
            cls.log_pictures(run_dir, [p for p in paths if p.is_file()])
