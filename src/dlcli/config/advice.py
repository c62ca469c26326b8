"""Overrides dl suggests (a diagnosis' "try:" line), kept only where they would work for the run
they are about: the key is one the run's config has (or one dl reads for that group, which is
then written with `+`), and the value meets the key's declared constraint. A suggestion such as
`model.dropout=0.3` is dropped for a model without dropout, `optim.lr=-0.04` is never made.

The constraints come from where they are declared (dlcli.config.schema, dlcli.config.own_settings,
dlcli.config.library_constraints, @constrained on dl's classes); a class of someone else's is never
imported here, so advising about a run someone sent runs none of its code.
"""

from __future__ import annotations

import math

from collections.abc import Mapping

from dlcli.config.build import constraints_for, resolve_target
from dlcli.config.constraints import Anything, Constraint, show
from dlcli.config.library_constraints import LIBRARY
from dlcli.config.own_settings import OWN_SETTINGS, data_setting_of_the_other_kind
from dlcli.config.schema import CONSTRAINTS


def suggest(config: Mapping | None, *candidates: tuple[str, object]) -> list[str]:
    """`key=value` (or `+key=value`) for each candidate that fits `config`; all of them, checked
    against the declared constraints only, when the config is not known."""
    kept = []
    for key, value in candidates:
        if isinstance(value, float) and math.isfinite(value):
            value = float(f"{value:.4g}")  # a rate times 3 is 0.009, not 0.009000000000000001
        group, _, leaf = key.partition(".")
        if group == "data" and data_setting_of_the_other_kind((_node(config or {}, "data") or {}).get("_target_"), leaf):
            continue  # data.normalize for a table, data.standardize for images: refused there
        form = _form(config, key)
        if form is not None and _constraint(config, key).problem(value) is None:
            kept.append(f"{form}{key}={show(value)}")
    return kept


def _form(config: Mapping | None, key: str) -> str | None:
    """'' when the config has the key, '+' when dl reads it for that group without the option's
    YAML listing it, None when the run has no such setting."""
    if config is None:
        return ""
    parent, _, leaf = key.rpartition(".")
    node = _node(config, parent)
    if node is None:
        return None
    if leaf in node:
        return ""
    return "+" if leaf in OWN_SETTINGS.get(parent, {}) and "_target_" in node else None


def _node(config: Mapping, dotted: str) -> Mapping | None:
    node = config
    for part in dotted.split(".") if dotted else []:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else None


def _constraint(config: Mapping | None, key: str) -> Constraint:
    if key in CONSTRAINTS:
        return CONSTRAINTS[key]
    group, _, leaf = key.partition(".")
    if leaf in OWN_SETTINGS.get(group, {}):
        return OWN_SETTINGS[group][leaf]
    target = (_node(config, group) or {}).get("_target_") if config is not None else None
    if not isinstance(target, str):
        return Anything()
    if target in LIBRARY:
        return LIBRARY[target].get(leaf, Anything())
    if target.startswith("dlcli."):  # dl's own classes declare theirs beside them (importing them runs only dl)
        try:
            return constraints_for(resolve_target(target, group), target).get(leaf, Anything())
        except Exception:  # a class dl no longer has: nothing to check the value against
            return Anything()
    return Anything()

