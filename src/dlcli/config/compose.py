"""Compose the experiment config with Hydra's compose API.

The built-in configs live in the package (`dlcli/conf`), so `dl` works from any directory. A
`./conf` in the working directory and any `--config-dir` are added to Hydra's search path so users
can add their own options and experiments next to the built-in ones (./conf only where the working
directory is the user's own, not a received one: dlcli.trust.workdir).
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from dlcli.config.build import target_parameters
from dlcli.config.own_settings import OWN_SETTINGS, data_setting_of_the_other_kind
from dlcli.config.schema import SCHEMA_NODES, register
from dlcli.errors import UserError, first_line
from dlcli.config.recipes import chosen_recipe, gave_way, model_training_defaults, swapped_to, typed_choices
from dlcli.trust.received import read_yaml
from dlcli.config.places import config_directories, search_path
from dlcli.trust.workdir import opening, set_aside

CONFIG_MODULE = "dlcli.conf"


def override_key(override: str) -> str:
    """The key an override sets: `+optim.l1=0.1` -> optim.l1, `~model.hidden` -> model.hidden, `model=vgg` -> model."""
    return str(override).split("=", 1)[0].lstrip("+~")


def read_overrides_file(path: str | Path, trust: Sequence[str] = (), what: str | None = None) -> list[str]:
    """Overrides kept in YAML: a sweep's best.yaml (`overrides: [...]`) or a run's overrides.yaml
    (a plain list). Such files are passed around, so they are read as received files are
    (dlcli.trust.received: bounded, no interpolation) and every `_target_` they set must be trusted."""
    from dlcli.trust.targets import check_trusted_overrides  # noqa: PLC0415  (dl --help runs without hydra: dlcli.trust.targets imports it)

    what = what or f"--overrides-file {path}"
    file = Path(path).expanduser()
    opening(file)  # its folder is received: a ./conf there is not the user's
    if not file.is_file():
        raise UserError(f"{what}: no such file (give a sweep's best.yaml or a run's overrides.yaml)")
    content = read_yaml(file, what)
    if content is None:
        return []
    overrides = content.get("overrides") if isinstance(content, dict) else content
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UserError(f"{what} must hold a list of overrides, or `overrides: [key=value, ...]` as best.yaml does")
    check_trusted_overrides(overrides, trust, source=what)
    # resume and runs_dir are where that run lived, not settings to repeat: a new run goes where this
    # command says
    return [o for o in overrides if override_key(o) not in ("resume", "runs_dir")]


REQUIRED_GROUPS = ("data", "model", "optim")  # a run cannot do without these


def compose(overrides: Sequence[str] = (), config_dirs: Sequence[str | Path] = ()) -> DictConfig:
    """The fully composed (not yet resolved) config for these Hydra overrides."""
    overrides = list(overrides)
    _check_override_syntax(overrides)
    register()
    extra = search_path(config_dirs)
    searched = ["hydra.searchpath=[" + ",".join(extra) + "]"] if extra else []

    def composed(given: list[str]) -> DictConfig:
        groups, values = _split_values(given)
        key = (tuple(groups), tuple(searched), _fingerprint(extra))
        cfg = _COMPOSED.get(key)
        if cfg is None:
            cfg = _hydra_compose(groups + searched, overrides, config_dirs)
            if len(_COMPOSED) >= _COMPOSED_MOST:
                _COMPOSED.pop(next(iter(_COMPOSED)))
            _COMPOSED[key] = cfg
        cfg = copy.deepcopy(cfg)
        if values:  # as Hydra applies them after composing: in order, on the struct config
            from hydra._internal.config_loader_impl import ConfigLoaderImpl  # noqa: PLC0415  (dl --help runs without hydra)

            try:
                ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
            except Exception as exc:
                raise UserError(_explain_hydra_error(exc, overrides, config_dirs)) from None
        return cfg

    recipe = chosen_recipe(overrides, dict(config_options("experiment")))
    swapped = swapped_to(recipe, typed_choices(overrides))

    def with_own_model(cfg: DictConfig) -> DictConfig:
        """The recipe's model swapped: the chosen model as its own option makes it, with what the user typed under it."""
        if swapped:
            cfg.model = composed([o for o in overrides if override_key(o).startswith("model")]).model
            cfg.recipe = {"name": recipe.name, "made_for": recipe.made_for, "gave_way": gave_way(recipe)}  # for the run log
        return cfg

    cfg = with_own_model(composed(overrides))
    brought = model_training_defaults(cfg, overrides, recipe, swapped is not None)
    if brought:  # before the user's overrides: whatever they typed wins
        cfg = with_own_model(composed([*brought, *overrides]))
    check_schema_keys(cfg)
    try:
        OmegaConf.resolve(cfg)
    except Exception as exc:
        raise UserError(f"cannot resolve the config: {first_line(exc)}") from None
    return cfg


# Hydra's composition of a set of group choices, kept for this process: a sweep composes every
# trial (and every value it checks) from the same groups, and Hydra reads and merges every option's
# YAML each time (~0.2 s). Plain `key.path=value` overrides are applied to a copy, exactly as Hydra
# applies them after composing (its own ConfigLoaderImpl._apply_overrides_to_config).
_COMPOSED: dict[tuple, DictConfig] = {}
_COMPOSED_MOST = 64


def _hydra_compose(given: list[str], overrides: Sequence[str], config_dirs) -> DictConfig:
    from hydra import compose as hydra_compose  # noqa: PLC0415  (dl --help runs without hydra)
    from hydra import initialize_config_module  # noqa: PLC0415  (dl --help runs without hydra)
    from hydra.core.global_hydra import GlobalHydra  # noqa: PLC0415  (dl --help runs without hydra)

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            try:
                cfg = hydra_compose(config_name="config", overrides=given)
            except Exception as exc:  # Hydra raises several types; all are the user's input here
                raise UserError(_explain_hydra_error(exc, overrides, config_dirs)) from None
            loader = GlobalHydra.instance().config_loader()
            for group in REQUIRED_GROUPS:
                if not isinstance(cfg.get(group), DictConfig):
                    options = ", ".join(sorted(loader.get_group_options(group)))
                    raise UserError(f"a run needs a {group}, and the overrides removed it: choose one with {group}=NAME ({options})")
    finally:
        GlobalHydra.instance().clear()
    return cfg


def _split_values(given: list[str]) -> tuple[list[str], list]:
    """Overrides that choose config groups (or touch hydra.*) as given, and the plain value
    overrides of dotted keys (`optim.lr=0.1`, `+data.as_sequence=true`, `~model.hidden`) parsed,
    which Hydra applies after composing whatever their order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: PLC0415  (dl --help runs without hydra)

    groups, values = [], []
    parsed = OverridesParser.create().parse_overrides(given)
    for text, override in zip(given, parsed):
        key = override.key_or_group
        plain = ("." in key and "/" not in key and override.package is None and not override.is_sweep_override()
                 and not override.is_hydra_override())
        if plain:
            values.append(override)
        else:
            groups.append(text)
    return groups, values


def _fingerprint(extra: list[str]) -> tuple:
    """What the extra config directories hold (names, sizes, times): an option edited between two
    compositions in one process is read again."""
    files = []
    for directory in extra:
        root = Path(directory.removeprefix("file://"))
        for path in sorted(root.rglob("*")):
            try:
                stat = path.stat()
            except OSError:
                continue
            files.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(files)


def check_schema_keys(cfg: DictConfig) -> None:
    """A key added (+key=...) to a node with a fixed schema would never be read: refuse it."""
    for path, schema in SCHEMA_NODES.items():
        node = OmegaConf.select(cfg, path) if path else cfg
        if not isinstance(node, DictConfig):
            continue
        for key in node.keys():
            if key not in schema.__dataclass_fields__:
                raise UserError(_unknown_key(f"{path}.{key}" if path else str(key), cfg))


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def _check_override_syntax(overrides: Sequence[str]) -> None:
    """Parse with Hydra's own override parser so a malformed override gets a precise message."""
    from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: PLC0415  (dl --help runs without hydra)

    parser = OverridesParser.create()
    for text in overrides:
        try:
            parsed = parser.parse_overrides([text])
        except Exception as exc:
            raise UserError(
                f"malformed override '{text}': {first_line(exc)} "
                "(expected key=value, group=option, +key=value or ~key)"
            ) from None
        if parsed and not parsed[0].key_or_group:
            raise UserError(f"malformed override '{text}': nothing before '=' (expected key=value, e.g. trainer.epochs=3)")
        if parsed and parsed[0].is_sweep_override():
            raise UserError(
                f"override '{text}' is a sweep (several values); `dl train` takes one value "
                "per key: use `dl sweep` to try several"
            )


def _explain_hydra_error(exc: Exception, overrides: Sequence[str], config_dirs: Sequence[str | Path]) -> str:
    """Turn Hydra's multi-line messages into one line that says what would be right."""
    from hydra.errors import MissingConfigException  # noqa: PLC0415  (dl --help runs without hydra)

    message = str(exc)
    if isinstance(exc, MissingConfigException):
        options = sorted(getattr(exc, "options", None) or [])
        missing = getattr(exc, "missing_cfg_file", "") or ""
        group, _, option = missing.rpartition("/")

        if group and options:
            return f"unknown {group} '{option}': choose one of {', '.join(options)}{set_aside('./conf')}"
        if group:
            return f"unknown {group} '{option}'{set_aside('./conf')}"
        return first_line(message)
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ValidationError) and "Error merging override" in message:
        override = message.split("Error merging override", 1)[1].strip()
        return f"{override} {_expected_type(str(cause))}"
    if "Could not override" in message or "not in struct" in message:
        key = message.split("'")[1] if "'" in message else "?"
        others = [o for o in overrides if override_key(o) != key]
        try:
            context = compose(others, config_dirs)
        except UserError:
            context = None
        return _unknown_key(key, context)
    if "Could not append to config" in message:
        return first_line(message) + " (use key=value to change an existing key)"
    if "Could not delete" in message:
        return first_line(message)
    return first_line(message)


def _expected_type(validation_message: str) -> str:
    """'must be an integer' from OmegaConf's "Value 'x' ... could not be converted to Integer"."""
    for name, words in (("Integer", "must be an integer"), ("Boolean", "must be true or false"), ("bool", "must be true or false"),
                        ("Float", "must be a number"), ("String", "must be text")):
        if name in validation_message:
            return words
    return f"has the wrong type: {first_line(validation_message)}"


def _unknown_key(key: str, cfg: DictConfig | None) -> str:
    """What to say about a key nothing reads: the valid keys of its node and the nearest one;
    `+key=...` is suggested only where the key would be used (a setting its target accepts)."""
    parent, _, leaf = key.rpartition(".")
    elsewhere = [k for k in (_dotted_keys(cfg) if cfg is not None else []) if k.endswith("." + leaf) and k != key]

    def hint(valid) -> str:
        """The key the user probably meant: the same name under another node, or a near spelling here."""
        close = elsewhere[:1] or [f"{parent}.{m}" if parent else m for m in difflib.get_close_matches(leaf, list(valid), n=1, cutoff=0.75)]
        return f"; did you mean {close[0]}?" if close else ""

    if parent in SCHEMA_NODES:
        fields = list(SCHEMA_NODES[parent].__dataclass_fields__)
        where = f"{parent} takes" if parent else "the top level takes"
        return f"unknown config key '{key}': {where} {', '.join(fields)}{hint(fields)}"

    node = OmegaConf.select(cfg, parent) if cfg is not None and parent else None
    if leaf in OWN_SETTINGS.get(parent, {}):  # a setting dl reads itself, left out of this option's YAML
        other = data_setting_of_the_other_kind(node.get("_target_"), leaf) if parent == "data" and isinstance(node, DictConfig) else None
        if other:  # `+` would only meet the next refusal (dlcli.data)
            return f"{key} applies to {other} only, and data._target_={node._target_} is not one: drop it"
        return f"{key} is not in the {parent} config; dl reads it: add it with +{key}=VALUE"
    if isinstance(node, DictConfig) and node.get("_target_"):
        params = target_parameters(node, parent)
        if params is None or leaf in params:
            return f"{key} is not in the {parent} config; {node._target_} accepts it: add it with +{key}=VALUE"
        return f"{key} is not a setting of {node._target_}: valid settings are {', '.join(sorted(params))}{hint(params)}"
    return f"unknown config key '{key}': check the spelling with `dl train --cfg`{hint([])}"


def _dotted_keys(node, prefix: str = "") -> list[str]:
    """Every leaf key of a config, dotted (trainer.early_stopping.patience, model.hidden, ...)."""
    keys = []
    for key, value in node.items_ex(resolve=False):
        if isinstance(value, DictConfig):
            keys += _dotted_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


# -- the option catalog: which option of a group a saved component came from ---------------------

COMPONENT_GROUPS = ("data", "model", "optim", "sched", "loss", "logger")  # config groups named by their option
_option_cache: dict[str, list[tuple[str, dict]]] = {}


def option_name(group: str, node) -> str:
    """The name of the config option a component came from (model=softmax, not its `_target_`):
    the option file of that group with the same `_target_` and the most settings in common.
    A class of the user's own with no option file shows as its class name."""
    if not isinstance(node, dict) or node.get("_target_") is None:
        return "none"
    target = node["_target_"]
    best, best_score = None, -1
    for option, settings in config_options(group):
        if settings.get("_target_") != target:
            continue
        score = sum(1 for k, v in settings.items() if node.get(k) == v)
        if score > best_score:
            best, best_score = option, score
    return best or str(target).rsplit(".", 1)[-1]


def config_options(group: str) -> list[tuple[str, dict]]:
    directories = config_directories()
    key = f"{group}:{':'.join(map(str, directories))}"  # ./conf counts in some directories, not others
    if key not in _option_cache:
        options = []
        for directory in directories:
            for file in sorted((directory / group).glob("*.yaml")):
                if not file.is_file():  # a FIFO would block (a dangling link, a folder: nothing to read)
                    continue
                try:
                    settings = yaml.safe_load(file.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, yaml.YAMLError):
                    continue  # an option Hydra itself cannot read is not one to name
                if isinstance(settings, dict):
                    options.append((file.stem, settings))
        _option_cache[key] = options
    return _option_cache[key]
