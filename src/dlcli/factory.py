"""Build a component from its config node: `_target_` names the class or function to call.

Unlike hydra.utils.instantiate, keyword arguments are checked against the target's signature
first, so a misspelt key gets a message naming the valid ones instead of a wrapped TypeError.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf

from dlcli.errors import UserError


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


def call_target(node: DictConfig, group: str, skip: Iterable[str] = (), inject: dict | None = None, **runtime: Any) -> Any:
    """Call node._target_ with the node's keys (minus `skip`) plus `runtime` keyword arguments.

    `inject` values are passed only when the target accepts them (e.g. a seed for data makers).
    """
    if "_target_" not in node or not node._target_:
        raise UserError(f"{group} has no _target_: name the class or function that builds it")
    missing_values = sorted(OmegaConf.missing_keys(node))
    if missing_values:
        key = missing_values[0]  # already the full dotted path, e.g. data.path
        raise UserError(f"{key} must be set (it has no default): add {key}=... to the command")
    target = resolve_target(node._target_, group)
    kwargs = target_kwargs(node, skip)
    kwargs.update(runtime)
    params = _parameters(target)
    if params is not None:
        for key, value in (inject or {}).items():
            if key in params and key not in kwargs:
                kwargs[key] = value
        unknown = [k for k in kwargs if k not in params]
        if unknown:
            valid = sorted(p for p in params if p not in runtime and p != "self")
            raise UserError(
                f"{group}.{unknown[0]} is not a setting of {node._target_}: valid settings are {', '.join(valid)}"
            )
        missing = [
            name
            for name, p in params.items()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and name not in kwargs
        ]
        if missing:
            raise UserError(f"{group}.{missing[0]} is required by {node._target_}: set it with {group}.{missing[0]}=...")
    try:
        return target(**kwargs)
    except (ValueError, TypeError) as exc:  # the component itself refused these settings
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{group} settings rejected by {node._target_}: {detail}") from None


def _parameters(target: Any) -> dict[str, inspect.Parameter] | None:
    """Named parameters, or None when the target takes **kwargs (then anything may be valid)."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return dict(params)
