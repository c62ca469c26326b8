"""Build a component from its config node: `_target_` names the class or function to call.

Unlike hydra.utils.instantiate, keyword arguments are checked against the target's signature
first (names, required ones, and the simple types its annotations state: bool, int, float), so
a misspelt key or `batch_norm=maybe` gets a message naming the valid ones instead of a wrapped
TypeError. What the target builds is checked to be the kind of thing asked for.

Errors: a library target (torch, torchvision) that refuses its settings with ValueError or
TypeError is a one-line user error; anything raised by dl's own or a user's class keeps its
traceback (dl's classes raise UserError for bad settings; anything else there is a bug).
"""

from __future__ import annotations

import inspect
import math
import typing
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf

from dlcli.errors import UserError, first_line

# What the run passes each group's target itself: never a config key.
RUNTIME_KEYS = {"model": ("input_shape", "num_outputs"), "optim": ("params",), "sched": ("optimizer",)}
# Libraries whose ValueError/TypeError from a constructor means "these settings are refused".
SETTINGS_REFUSED_BY = ("torch", "torchvision")


def resolve_target(path: str, group: str) -> Any:
    from hydra.utils import get_object

    try:
        return get_object(path)
    except Exception:
        raise UserError(f"{group}._target_={path} cannot be imported: give a dotted path to a class or function") from None


def target_kwargs(node: DictConfig, skip: Iterable[str] = ()) -> dict:
    skip = set(skip) | {"_target_"}
    values = OmegaConf.to_container(node, resolve=True)
    return {k: v for k, v in values.items() if k not in skip}


def target_parameters(node: DictConfig, group: str) -> dict[str, inspect.Parameter] | None:
    """The settings the node's target accepts from config (not what the run passes it), or None
    when it takes **kwargs (then anything may be valid)."""
    params = _parameters(resolve_target(node._target_, group))
    if params is None:
        return None
    return {name: p for name, p in params.items() if name not in {*RUNTIME_KEYS.get(group, ()), "self"}}


def call_target(node: DictConfig, group: str, skip: Iterable[str] = (), inject: dict | None = None,
                expect: type | tuple[type, ...] | None = None, expect_name: str | None = None, **runtime: Any) -> Any:
    """Call node._target_ with the node's keys (minus `skip`) plus `runtime` keyword arguments.

    `inject` values are passed only when the target accepts them (e.g. a seed for data makers).
    With `expect`, what the target returns must be an instance of it (`expect_name` says what).
    """
    target, kwargs = prepare_call(node, group, skip, inject, runtime)
    if expect is not None and inspect.isclass(target) and not issubclass(target, expect):
        # known before the call: a class of another kind is never built (its constructor may do anything)
        raise UserError(f"{group}._target_={node._target_} is a class of another kind, not a {expect_name or _names(expect)}: "
                        "name a class that builds one")
    try:
        built = target(**kwargs)
    except (ValueError, TypeError) as exc:
        if not _module_of(node._target_).startswith(SETTINGS_REFUSED_BY):
            raise  # a bug, or the user's own class refusing: its traceback says where
        detail = first_line(exc)
        raise UserError(f"{group} settings rejected by {node._target_}: {detail}") from None
    if expect is not None and not isinstance(built, expect):
        raise UserError(
            f"{group}._target_={node._target_} built a {type(built).__name__}, not a {expect_name or _names(expect)}: "
            f"name a class that builds one"
        )
    return built


def prepare_call(node: DictConfig, group: str, skip: Iterable[str] = (), inject: dict | None = None,
                 runtime: dict | None = None) -> tuple[Any, dict]:
    """The target and its checked keyword arguments, without calling it (so a whole sweep's
    settings can be checked before the first trial starts)."""
    runtime = runtime or {}
    if "_target_" not in node or not node._target_:
        raise UserError(f"{group} has no _target_: name the class or function that builds it")
    missing_values = sorted(OmegaConf.missing_keys(node))
    if missing_values:
        key = missing_values[0]  # already the full dotted path, e.g. data.path
        raise UserError(f"{key} must be set (it has no default): add {key}=... to the command")
    target = resolve_target(node._target_, group)
    kwargs = target_kwargs(node, skip)
    for key, value in kwargs.items():
        if isinstance(value, float) and math.isnan(value):
            raise UserError(f"{group}.{key}=nan must be a finite number")
    kwargs.update(runtime)
    params = _parameters(target)
    if params is None:
        return target, kwargs
    for key, value in (inject or {}).items():
        if key in params and key not in kwargs:
            kwargs[key] = value
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        valid = sorted(p for p in params if p not in runtime and p != "self")
        raise UserError(f"{group}.{unknown[0]} is not a setting of {node._target_}: valid settings are {', '.join(valid)}")
    missing = [
        name
        for name, p in params.items()
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in kwargs
    ]
    if missing:
        raise UserError(f"{group}.{missing[0]} is required by {node._target_}: set it with {group}.{missing[0]}=...")
    hints = _type_hints(target)
    for key, value in kwargs.items():
        if key in runtime or key not in hints:
            continue
        problem = _type_problem(value, hints[key])
        if problem:
            raise UserError(f"{group}.{key}={_show(value)} {problem}")
    return target, kwargs


def _module_of(target: str) -> str:
    return target.rsplit(".", 1)[0] if "." in target else ""


def _names(kinds) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(f"{k.__module__}.{k.__qualname__}" for k in kinds)


def _show(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _parameters(target: Any) -> dict[str, inspect.Parameter] | None:
    """Named parameters, or None when the target takes **kwargs (then anything may be valid)."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return dict(params)


def _type_hints(target: Any) -> dict:
    """Evaluated annotations of the target's parameters ({} when they cannot be evaluated)."""
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function)
    except Exception:  # annotations naming what only a type checker imports: check nothing
        return {}


def _type_problem(value, annotation) -> str | None:
    """What is wrong with `value` for a parameter annotated `annotation`, for the simple types a
    config can hold; None when it fits or the annotation is not one of them."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or str(origin) == "types.UnionType":
        if value is None and type(None) in args:
            return None
        problems = [_type_problem(value, a) for a in args if a is not type(None)]
        return None if any(p is None for p in problems) else problems[0]
    if annotation is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if annotation is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if annotation is float:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
            return "must be one number here, not a list"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        return None
    return None
