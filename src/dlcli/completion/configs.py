"""Build the configs index of a set of config directories: every group's options (with a line
about each and where it comes from), each option's keys and their values, the primary config's
chosen options and top-level keys, the schema's keys with their defaults, and the values the
declared constraints allow (dlcli.config.schema.CONSTRAINTS, dlcli.config.own_settings.GROUPS).

Read from the YAML itself, as Hydra would find the options, without composing: a TAB never
imports Hydra, and a rebuild takes a fraction of a second. Values are shown as an override writes
them (true, null, [a,b]); `${...}` interpolations as they are written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from dlcli.completion.values import choices_of, shown
from dlcli.config.own_settings import GROUPS
from dlcli.config.schema import CONSTRAINTS, SCHEMA_NODES

PRIMARY = "config.yaml"
GLOBAL_PACKAGE = "@package _global_"  # an option whose keys are the whole config's (an experiment)
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where it is installed: several times faster


def build_configs(directories: list[Path]) -> dict:
    """The configs index of `directories` (the package's conf/ first)."""
    groups: dict[str, dict] = {}
    for directory in directories:
        source = "dl" if directory == directories[0] else str(directory)
        for folder in _group_folders(directory):
            options = groups.setdefault(folder.name, {"default": None, "options": {}})["options"]
            for file in sorted(folder.glob("*.yaml")):
                option = _option(file, source)
                if option is not None:
                    options[file.stem] = option
    primary = _read(directories[0] / PRIMARY)[0] or {}
    for group, chosen in _chosen_in(primary.get("defaults")).items():
        if group in groups:
            groups[group]["default"] = chosen
    top = {**_schema_defaults(), **_flat({k: v for k, v in primary.items() if k != "defaults"})}
    return {"groups": groups, "top": top, "choices": _declared_choices(),
            "own": {group: sorted(settings.own) for group, settings in GROUPS.items() if settings.own}}


def _group_folders(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    except OSError:
        return []


def _read(file: Path) -> tuple[object, list[str]]:
    """A YAML file's content and its leading comment lines (None, [] where it cannot be read)."""
    if not file.is_file():  # a FIFO would block the TAB forever; a dangling link has nothing to read
        return None, []
    try:
        text = file.read_text(encoding="utf-8")
        content = yaml.load(text, Loader=LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None, []
    comments = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comments.append(line.lstrip("#").strip())
    return content, comments


def _option(file: Path, source: str) -> dict | None:
    """One option: a line about it (its first comment, else its _target_), where it comes from,
    its keys and values (the whole config's for an experiment), and the options it chooses."""
    content, comments = _read(file)
    if content is None:
        content = {}
    if not isinstance(content, dict):
        return None
    about = next((line for line in comments if line and not line.startswith("@package")), "") or str(content.get("_target_", ""))
    values = _flat({k: v for k, v in content.items() if k != "defaults"})
    return {"about": about, "from": source, "global": any(line.startswith(GLOBAL_PACKAGE) for line in comments),
            "keys": {key: value for key, value in values.items() if not key.rsplit(".", 1)[-1].startswith("_")},
            "chooses": _chosen_in(content.get("defaults"))}


def _chosen_in(defaults) -> dict[str, str]:
    """The options a defaults list chooses: `- data: digits`, `- override /model: lenet`."""
    chosen = {}
    for entry in defaults if isinstance(defaults, list) else []:
        if isinstance(entry, dict) and len(entry) == 1:
            (key, value), = entry.items()
            group = str(key).removeprefix("override").strip().lstrip("/")
            if isinstance(value, str):
                chosen[group] = value
    return chosen


def _flat(node: dict, prefix: str = "") -> dict[str, str]:
    """Every leaf of a nested mapping as a dotted key and its shown value ({} kept as a leaf)."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = shown(value)
    return flat


def _schema_defaults() -> dict[str, str]:
    """The schema's plain keys under its nodes and their defaults (trainer.devices, split.kfold,
    ...), so a key that no YAML lists is offered too (the root's are the primary config's)."""
    defaults = {}
    for path, schema in SCHEMA_NODES.items():
        if not path:
            continue
        for field in dataclasses.fields(schema):
            if field.default is not dataclasses.MISSING and not field.name.startswith("_"):
                defaults[f"{path}.{field.name}" if path else field.name] = shown(field.default)
    return defaults


def _declared_choices() -> dict[str, list[str]]:
    declared = {**CONSTRAINTS, **{f"{group}.{key}": constraint for group, settings in GROUPS.items()
                                  for key, constraint in settings.own.items()}}
    return {key: values for key, constraint in declared.items() if (values := choices_of(constraint))}
