"""Build a component from its config node: `_target_` names the class or function to call.

Unlike hydra.utils.instantiate, keyword arguments are checked against the target's signature
first (names, required ones, and the simple types its annotations state: bool, int, float), so
a misspelt key or `batch_norm=maybe` gets a message naming the valid ones instead of a wrapped
TypeError. What the target builds is checked to be the kind of thing asked for.

Checked once: a run checks every group's settings in one pass before runs/ is touched
(check_components, from dlcli.experiment.check_config) and builds inside settings_checked(), where
call_target trusts that pass. Called outside one (the Python API building one model, say),
call_target checks what it builds, as it always did.

Errors: a library target (torch, torchvision) that refuses its settings with ValueError or
TypeError is a one-line user error; anything raised by dl's own or a user's class keeps its
traceback (dl's classes raise UserError for bad settings; anything else there is a bug).
"""

from __future__ import annotations

import inspect
import math
import typing
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterable, Mapping

from omegaconf import DictConfig, OmegaConf

from dlcli.config.annotations import from_annotation
from dlcli.config.constraints import NUMBER, Constraint, check
from dlcli.config.library_constraints import LIBRARY
from dlcli.config.own_settings import GROUPS, Group, passed_by_the_run
from dlcli.errors import UserError, first_line

# Libraries whose ValueError/TypeError from a constructor means "these settings are refused".
SETTINGS_REFUSED_BY = ("torch", "torchvision")
# True while what is built was checked whole before runs/ was touched (settings_checked)
_CHECKED = ContextVar("dl_settings_checked", default=False)
_NO_GROUP = Group(own={})  # callbacks.NAME, logger.NAME: every key goes to the class


@contextmanager
def settings_checked():
    """Inside: every setting of what is built has been checked, in the one pass a run makes before
    runs/ is touched (dlcli.experiment.check_config), so call_target builds without checking again.
    Outside, a caller of the Python API building one component gets it checked as it is built."""
    token = _CHECKED.set(True)
    try:
        yield
    finally:
        _CHECKED.reset(token)


@contextmanager
def checked_once(node: DictConfig, group: str, offered: Mapping | None = None):
    """For a builder that calls the node's target more than once (a model counted on the meta
    device, then built; a schedule rehearsed, then built): the node is checked here, unless a run's
    one pass already did, and not again inside."""
    if not _CHECKED.get():
        check_group(node, group, offered)
    with settings_checked():
        yield


def checked_target(node: DictConfig, group: str) -> Any:
    """The node's target, resolved; its settings checked first unless the run's one pass already
    did (inside settings_checked)."""
    if _CHECKED.get():
        return resolve_target(node._target_, group)
    return prepare_call(node, group)[0]


def check_components(cfg: DictConfig) -> None:
    """Every component group's settings (dlcli.config.own_settings.GROUPS) against its class and
    the table: what a run checks of them before runs/ is touched."""
    offered = {"seed": cfg.seed}  # what the run offers; what it computes later (class weights) is checked as None
    for name, group in GROUPS.items():
        node = cfg.get(name)
        if group.optional and not (node or {}).get("_target_"):
            continue
        check_group(node, name, {key: offered.get(key) for key in group.offered})


def check_group(node: DictConfig, group: str, offered: Mapping | None = None) -> None:
    """One group's settings, with what the run passes its class given as names (their values come
    from the data, the model, the optimizer) and a setting the run fills in (sched.mode=auto) left to it."""
    declared = GROUPS.get(group, _NO_GROUP)
    filled = [key for key in declared.filled_when_auto if node.get(key) == "auto"]
    if filled:
        node = OmegaConf.create({k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in filled})
    prepare_call(node, group, offered, dict.fromkeys((*declared.runtime, *filled)))


def resolve_target(path: str, group: str) -> Any:
    from hydra.utils import get_object  # noqa: PLC0415  (dl cache list runs without hydra)

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
    return {name: p for name, p in params.items() if name not in {*passed_by_the_run(group), "self"}}


def call_target(node: DictConfig, group: str, inject: dict | None = None, expect: type | tuple[type, ...] | None = None,
                expect_name: str | None = None, **runtime: Any) -> Any:
    """Call node._target_ with the node's keys (less the settings dl reads itself: GROUPS) plus
    `runtime` keyword arguments, checked first unless they were (settings_checked).

    `inject` values are passed only when the target accepts them (e.g. a seed for data makers).
    With `expect`, what the target returns must be an instance of it (`expect_name` says what).
    """
    if _CHECKED.get():
        target = resolve_target(node._target_, group)
        kwargs = _arguments(node, group, target, _parameters(target), inject, runtime)
    else:
        target, kwargs = prepare_call(node, group, inject, runtime)
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


def prepare_call(node: DictConfig, group: str, inject: dict | None = None, runtime: dict | None = None) -> tuple[Any, dict]:
    """The target and its checked keyword arguments, without calling it (so a whole sweep's
    settings can be checked before the first trial starts). Every setting is checked against its
    constraint (dlcli.config.constraints): the target's declared ones, the table for library
    classes, or its annotation; the settings dl reads itself against the group's table (GROUPS).
    `runtime` names what the run passes the target (its values are not the user's to check)."""
    runtime = runtime or {}
    if "_target_" not in node or not node._target_:
        raise UserError(f"{group} has no _target_: name the class or function that builds it")
    missing_values = sorted(OmegaConf.missing_keys(node))
    if missing_values:
        key = missing_values[0]  # already the full dotted path, e.g. data.path
        raise UserError(f"{key} must be set (it has no default): add {key}=... to the command")
    target = resolve_target(node._target_, group)
    values = OmegaConf.to_container(node, resolve=True)
    supplied = next((key for key in passed_by_the_run(group) if key in values), None)
    if supplied is not None:  # the run's value would replace it without a word
        raise UserError(f"{group}.{supplied} is not a setting: dl gives {node._target_} its {supplied} itself; "
                        f"drop {group}.{supplied}")
    for key, constraint in GROUPS.get(group, _NO_GROUP).own.items():  # optim.head_lr, model.init, ...
        if key in values:
            check(f"{group}.{key}", values[key], constraint)
    params = _parameters(target)
    kwargs = _arguments(node, group, target, params, inject, runtime)
    if params is None:
        _check_values(group, kwargs, constraints_for(target, node._target_), runtime)
        return target, kwargs
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        valid = sorted(p for p in params if p not in {*runtime, *passed_by_the_run(group), "self"})
        raise UserError(f"{group}.{unknown[0]} is not a setting of {node._target_}: valid settings are {', '.join(valid)}")
    missing = [
        name
        for name, p in params.items()
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in kwargs
    ]
    if missing:
        raise UserError(f"{group}.{missing[0]} is required by {node._target_}: set it with {group}.{missing[0]}=...")
    _check_values(group, kwargs, constraints_for(target, node._target_), runtime)
    return target, kwargs


def kept_from_target(group: str, target: Any) -> tuple[str, ...]:
    """The keys of the group's node that dl reads itself rather than passing them to its target:
    the group's own settings, less one the target takes itself (torchvision's models load
    model.weights)."""
    declared = GROUPS.get(group, _NO_GROUP)
    taken = [key for key in declared.passed_when_taken if key in _named_parameters(target)]
    return tuple(key for key in declared.own if key not in taken)


def _arguments(node: DictConfig, group: str, target: Any, params: dict | None, inject: dict | None, runtime: dict) -> dict:
    """The call's keyword arguments: the node's keys but those dl reads itself, what the run passes,
    and what it offers (`inject`) that the target takes."""
    kwargs = target_kwargs(node, kept_from_target(group, target))
    kwargs.update(runtime)
    for key, value in (inject or {}).items():
        if params is not None and key in params and key not in kwargs:
            kwargs[key] = value
    return kwargs


def constraints_for(target: Any, name: str | None = None) -> dict[str, Constraint]:
    """Each setting's constraint: derived from the annotations, then the table of library classes
    dl ships configs for, then what the target declares itself (@constrained); later ones win."""
    found: dict[str, Constraint] = {}
    for key, annotation in _type_hints(target).items():
        constraint = from_annotation(annotation)
        if constraint is not None:
            found[key] = constraint
    found.update(LIBRARY.get(name or "", {}))
    found.update(getattr(target, "__constraints__", {}))
    return found


def _check_values(group: str, kwargs: dict, constraints: dict, runtime: dict) -> None:
    for key, value in kwargs.items():
        if key in runtime:
            continue
        constraint = constraints.get(key)
        if constraint is not None:
            check(f"{group}.{key}", value, constraint)
        elif isinstance(value, float) and not math.isfinite(value):  # nothing a setting can mean by it
            check(f"{group}.{key}", value, NUMBER)


def _module_of(target: str) -> str:
    return target.rsplit(".", 1)[0] if "." in target else ""


def _names(kinds) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(f"{k.__module__}.{k.__qualname__}" for k in kinds)


def _named_parameters(target: Any) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return ()


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
    """Evaluated annotations of the target's parameters, Annotated ones with their extras ({} when
    they cannot be evaluated)."""
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:  # annotations naming what only a type checker imports: check nothing
        return {}
