"""Values as an override or an option writes them, and the ones a declared constraint allows:
what completion offers after `key=` or `--option ` (dlcli.completion.configs, dlcli.cli.completion)."""

from __future__ import annotations

from dlcli.config.constraints import AnyOf, Boolean, Constraint, ListOf, Null, Options, Text


def choices_of(constraint: Constraint) -> list[str]:
    """The values a declared constraint allows, as an override writes them; [] for a range or a text."""
    if isinstance(constraint, Options):
        return [shown(value) for value in constraint.values]
    if isinstance(constraint, Boolean):
        return ["true", "false"]
    if isinstance(constraint, Text):
        return list(constraint.usual)
    if isinstance(constraint, ListOf):
        return choices_of(constraint.element)
    if isinstance(constraint, AnyOf):
        found = [value for option in constraint.options for value in choices_of(option)]
        nullable = any(isinstance(option, Null) for option in constraint.options)
        return [*dict.fromkeys(found), *(["null"] if found and nullable else [])]
    return []


def shown(value) -> str:
    """A value as an override writes it: true/false, null, [a,b], {k:v}."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(shown(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{shown(item)}" for key, item in value.items()) + "}"
    return str(value)
