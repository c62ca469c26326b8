"""What a dl checkpoint holds, declared once, and the check every checkpoint read meets before
anything is taken from it.

A run directory may come from someone else. torch.load(weights_only=True) keeps code out of a
checkpoint; this keeps the rest honest: a string where the weights belong, an epoch of "abc" or -5,
an optimizer of 5, a missing or mis-sized RNG state would otherwise surface as a traceback deep in
torch (or, for a negative epoch, as a metrics.csv counting from -4). Each is one line naming the
file and the field, as every other received file is (dlcli.trust.received, dlcli.data.record).

The parts of torch's own state dicts (the optimizer's per-parameter state, a schedule's fields)
are checked by torch when they are loaded; those errors are turned into one line where they are
loaded (dlcli.engine.checkpoint.restore).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dlcli.config.constraints import Boolean, Constraint, Interval, nullable, show
from dlcli.errors import UserError

READABLE_FORMATS = (1, 2)  # 2: run progress without the per-epoch history (that is metrics.csv)
MOST_EPOCHS = 10**9  # far beyond any run; bounds what a received file may claim
MOST_STEPS = 10**15  # likewise for optimizer steps


class Part:
    """One place in a checkpoint: `problem` says what is wrong with the value found there, in
    words that complete "<field> ...", or None."""

    def problems(self, value: Any, where: str):
        """(field, what is wrong) for each problem at `where` and below, the first first."""
        problem = self.problem(value)
        if problem is not None:
            yield where, problem

    def problem(self, value: Any) -> str | None:
        raise NotImplementedError


def _kind(value: Any) -> str:
    return "a tensor" if isinstance(value, torch.Tensor) else f"{show(value)} (of type {type(value).__name__})"


@dataclass(frozen=True)
class Setting(Part):
    """A plain value under one of dl's declared constraints (a whole number in a range, ...)."""

    constraint: Constraint

    def problem(self, value):
        if isinstance(value, torch.Tensor):
            return "is a tensor where a plain value belongs"
        problem = self.constraint.problem(value)
        return None if problem is None else f"={show(value)} {problem}"


@dataclass(frozen=True)
class Table(Part):
    """A mapping with these keys, each checked by its part (other keys are let be: an older format
    held more); the keys named `optional` are checked where present (a newer field, which older
    checkpoints lack), the others are required."""

    fields: dict
    optional: tuple = ()

    def problems(self, value, where):
        if not isinstance(value, dict):
            yield where, f"is {_kind(value)}, not a mapping of {', '.join(self.fields)}"
            return
        for key, part in self.fields.items():
            inner = f"{where}.{key}" if where else key
            if key not in value:
                if key in self.optional:
                    continue
                yield inner, "is missing"
                return
            yield from part.problems(value[key], inner)


@dataclass(frozen=True)
class NamedTensors(Part):
    """A model's weights: tensors by parameter name."""

    def problems(self, value, where):
        if not isinstance(value, dict):
            yield where, f"is {_kind(value)}, not the model's tensors by name"
            return
        for key, tensor in value.items():
            if not isinstance(key, str):
                yield where, f"has a key {show(key)} that is not a parameter name"
                return
            if not isinstance(tensor, torch.Tensor):
                yield f"{where}[{show(key)}]", f"is {_kind(tensor)}, not a tensor"
                return


@dataclass(frozen=True)
class Mapping(Part):
    """A state dict of torch's own (a schedule, a grad scaler): a mapping by name, whose fields
    torch checks when it loads them."""

    def problem(self, value):
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            return f"is {_kind(value)}, not a mapping by name"
        return None


@dataclass(frozen=True)
class Items(Part):
    """A list, each item checked by `part`."""

    part: Part

    def problems(self, value, where):
        if not isinstance(value, (list, tuple)):
            yield where, f"is {_kind(value)}, not a list"
            return
        for index, item in enumerate(value):
            yield from self.part.problems(item, f"{where}[{index}]")


@dataclass(frozen=True)
class GeneratorState(Part):
    """A random generator's state: a flat byte tensor (of `length` bytes for the CPU's Mersenne
    Twister, whose size torch fixes)."""

    length: int | None = None

    def problem(self, value):
        if not isinstance(value, torch.Tensor):
            return f"is {_kind(value)}, not a generator's state (a flat uint8 tensor)"
        if value.dtype != torch.uint8 or value.dim() != 1:
            return f"is a {value.dtype} tensor of shape {list(value.shape)}, not a generator's state (a flat uint8 tensor)"
        if self.length is not None and value.numel() != self.length:
            return f"holds {value.numel()} bytes, and a CPU generator's state is {self.length}"
        return None


@dataclass(frozen=True)
class _Formats(Constraint):
    def problem(self, value):
        ok = isinstance(value, int) and not isinstance(value, bool) and value in READABLE_FORMATS
        return None if ok else f"is not a format this dl reads ({', '.join(map(str, READABLE_FORMATS))})"


@dataclass(frozen=True)
class Keyed(Part):
    """The optimizer's per-parameter state: keyed by parameter index (torch checks the rest)."""

    def problem(self, value):
        return None if isinstance(value, dict) else f"is {_kind(value)}, not a mapping"


def declared() -> Table:
    """Every field of a checkpoint dl writes (dlcli.engine.checkpoint.checkpoint_payload)."""
    cpu_state = int(torch.get_rng_state().numel())
    epoch = Setting(Interval(0, MOST_EPOCHS, integer=True))
    return Table({
        "format": Setting(_Formats()),
        "model": NamedTensors(),
        "optimizer": Table({"state": Keyed(), "param_groups": Items(Mapping())}),
        "scheduler": Mapping(),
        "scaler": Mapping(),
        "state": Table({"epoch": epoch, "steps": Setting(Interval(0, MOST_STEPS, integer=True)),
                        "best_value": Setting(nullable(Interval())), "best_epoch": epoch,
                        "epochs_without_improvement": epoch, "stopped_early": Setting(Boolean())},
                       optional=("steps",)),  # counted since issue 33: older checkpoints lack it
        "rng": Table({"torch": GeneratorState(cpu_state), "shuffle": GeneratorState(cpu_state),
                      "cuda": Items(GeneratorState())}),
    })


def check_checkpoint(payload: Any, path) -> dict:
    """`payload` as torch.load read it from `path`, if it has the shape of a dl checkpoint; else
    one line naming the file and the first field that is wrong."""
    if not isinstance(payload, dict):
        raise UserError(f"checkpoint {path} is not a dl checkpoint: it holds {_kind(payload)}, not a mapping "
                        "(restore it from a copy of the run)")
    for field, problem in declared().problems(payload, ""):
        raise UserError(f"checkpoint {path} is not a checkpoint dl can use: {field}{'' if problem.startswith('=') else ' '}"
                        f"{problem} (restore it from a copy of the run)")
    _check_progress(payload["state"], path)
    return payload


def _check_progress(state: dict, path) -> None:
    """The run's progress agrees with itself: its best epoch and its epochs without improvement
    lie within the epochs it completed."""
    for field in ("best_epoch", "epochs_without_improvement"):
        if state[field] > state["epoch"]:
            raise UserError(f"checkpoint {path} is not a checkpoint dl can use: state.{field}={state[field]} is after "
                            f"state.epoch={state['epoch']}, the epochs it completed (restore it from a copy of the run)")


def layout_problem(saved: Any, fresh: Any, where: str) -> str | None:
    """What keeps `saved` (a schedule's or grad scaler's state from a checkpoint) from having the
    layout of `fresh`, the state dict the run's own component gives: torch loads those by
    assigning every field as it is, so a field of the wrong kind would only fail (or mislead)
    epochs later. Fields an older torch did not write may be absent; a field the component has no
    use for is refused."""
    if isinstance(fresh, dict):
        if not isinstance(saved, dict):
            return f"{where} is {_kind(saved)}, not a mapping"
        for key, value in saved.items():
            if key not in fresh:
                return f"{where} has a field {show(key)} that this run's {where.split('.')[0]} does not have"
            problem = layout_problem(value, fresh[key], f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(fresh, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(fresh):
            return f"{where} is {_kind(saved)}, not a list of {len(fresh)}"
        return next((p for i, (s, f) in enumerate(zip(saved, fresh)) if (p := layout_problem(s, f, f"{where}[{i}]"))), None)
    if isinstance(fresh, torch.Tensor):
        ok = isinstance(saved, torch.Tensor) and saved.shape == fresh.shape
        return None if ok else f"{where} is {_kind(saved)}, not a tensor of shape {list(fresh.shape)}"
    if isinstance(fresh, bool) or isinstance(fresh, str):
        return None if type(saved) is type(fresh) else f"{where} is {_kind(saved)}, not a {type(fresh).__name__}"
    if isinstance(fresh, (int, float)):
        number = isinstance(saved, (int, float)) and not isinstance(saved, bool)
        return None if number and (isinstance(fresh, float) or isinstance(saved, int)) else \
            f"{where} is {_kind(saved)}, not {'a whole number' if isinstance(fresh, int) else 'a number'}"
    return None  # None (a field set later) or another kind: the component's own load decides


def optimizer_state_problem(optimizer: torch.optim.Optimizer) -> str | None:
    """After load_state_dict: a per-parameter state tensor (a momentum buffer, Adam's averages)
    of another shape than its parameter, which torch accepts and the first step breaks on. LBFGS
    keeps whole-model vectors in its first parameter's state, so it is let be."""
    if isinstance(optimizer, torch.optim.LBFGS):
        return None
    for index, (param, values) in enumerate(optimizer.state.items()):
        for name, value in values.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                return f"its state {show(name)} of parameter {index} has shape {list(value.shape)}, and the parameter " \
                       f"{list(param.shape)}"
    return None
