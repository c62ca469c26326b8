"""The constraint a parameter's annotation states (bool, int, float, str, Optional, lists and
tuples of them): where a setting's constraint starts from (dlcli.config.build.constraints_for), before
the table of library classes and a class's own @constrained, which win."""

from __future__ import annotations

import typing
from typing import Any

from dlcli.config.constraints import BOOLEAN, INTEGER, NUMBER, TEXT, AnyOf, Anything, Constraint, ListOf, nullable


def from_annotation(annotation: Any) -> Constraint | None:
    """The constraint an annotation states: bool, int, float, str, Optional/Union, list[...] and
    tuple[...] of them; None for anything else (a type dl cannot check from config)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        found = [a for a in args[1:] if isinstance(a, Constraint)]
        return found[0] if found else from_annotation(args[0])
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>" or type(annotation).__name__ == "UnionType":
        inner = [from_annotation(a) for a in args if a is not type(None)]
        if any(c is None for c in inner):
            return None
        constraint = inner[0] if len(inner) == 1 else AnyOf(tuple(inner))
        return nullable(constraint) if type(None) in args else constraint
    if origin in (list, tuple) or annotation in (list, tuple):
        if not args:
            return ListOf(Anything())
        if origin is tuple and len(args) > 1 and args[-1] is not Ellipsis:
            elements = [from_annotation(a) for a in args]
            if any(c is None for c in elements) or len(set(map(repr, elements))) > 1:
                return None
            return ListOf(elements[0], len(args), len(args))
        element = from_annotation(args[0])
        return ListOf(element) if element is not None else None
    if annotation is bool:
        return BOOLEAN
    if annotation is int:
        return INTEGER
    if annotation is float:
        return NUMBER
    if annotation is str:
        return TEXT
    return None
