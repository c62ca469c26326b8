"""What a config that came from a file may build: trust by name, decided before anything is
imported or called.

A saved config.yaml, a sweep's sweep.yaml or best.yaml, or an --overrides-file may come from
someone else, and a `_target_` is a call. Such a config may name:

1. exactly a class or factory that dl's own configs name (the `_target_`s under conf/), in
   the place they name it (a logger class under logger.NAME, not as a callback);
2. a class of the kind its place calls for, from the libraries dl builds on: under `optim` a
   torch.optim optimizer, under `sched` a torch.optim.lr_scheduler schedule, under `loss` a
   torch.nn loss, under `model` a torchvision.models module. Only those namespaces are imported to
   see what the name is; a function there (`torch.hub.load`) is never such a class, and private or
   special names (`_x`, `__main__`) are never looked up;
3. what the user trusts: `--trust NAME` or a ./conf/trust.yaml holding `trust: [NAME, ...]`, where
   NAME is a module (trusting everything under it) or one dotted target; and what the working
   directory's own ./conf files name (`named_by_own_configs`): the user's configs vouch for the
   user's classes, in the directory they are in. A received directory never vouches for itself:
   inside a run, sweep or k-fold directory, or one the command opens, ./conf counts for nothing
   (dlcli.trust.workdir, one rule for everything the working directory may vouch for).

Anything else is refused in one line that names it and how to trust it. Overrides read from a file
are held to the same rule, and may not reach Hydra itself (`hydra.*`) or carry interpolations, even
escaped ones. A config the user composes on the command line is theirs and is not checked here.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

import dlcli.conf
from dlcli.errors import UserError
from dlcli.trust.received import check_no_interpolation, read_yaml
from dlcli.trust.workdir import own_conf, set_aside

TRUST_FILE = Path("conf") / "trust.yaml"

# group -> (the library namespaces searched, the base class a target there must subclass). Only
# classes whose construction runs nothing of the caller's choosing: dl's own classes are trusted
# by exact name only (several of them take paths they write to).
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "optim": (("torch.optim",), ("torch.optim.optimizer.Optimizer",)),
    "sched": (("torch.optim.lr_scheduler",), ("torch.optim.lr_scheduler.LRScheduler", "torch.optim.lr_scheduler.ReduceLROnPlateau")),
    "loss": (("torch.nn",), ("torch.nn.modules.loss._Loss",)),
    "model": (("torchvision.models",), ("torch.nn.Module",)),
}


@functools.lru_cache(maxsize=1)
def shipped_targets() -> dict[str, frozenset[str]]:
    """Every `_target_` the configs inside the package name, by the place (group) it is named in:
    a logger class is trusted under logger.NAME, not as a callback."""
    root = Path(dlcli.conf.__file__).parent
    found: dict[str, set[str]] = {}
    for file in root.rglob("*.yaml"):
        group = file.parent.relative_to(root).parts[0] if file.parent != root else ""
        for path, target in targets_in(yaml.safe_load(file.read_text(encoding="utf-8"))):
            # a group's file holds its own node; an experiment names full paths (model._target_)
            place = path.split(".", 1)[0].split("[", 1)[0] if group in ("", "experiment") else group
            if isinstance(target, str):
                found.setdefault(place, set()).add(target)
    return {place: frozenset(targets) for place, targets in found.items()}


def check_trusted_targets(config: Any, trusted: Iterable[str] = (), source: str = "the saved config") -> None:
    """Refuse the first `_target_` in `config` (a DictConfig or plain containers) that is not
    trusted, naming it, where it was, and the --trust that would accept it."""
    if isinstance(config, (DictConfig, ListConfig)):
        config = OmegaConf.to_container(config, resolve=False)
    trusted = [*trusted, *trusted_here()]
    for path, target in targets_in(config):
        if target is None:  # a component switched off (sched: none)
            continue
        if not isinstance(target, str) or not is_trusted(target, path, trusted):
            shown = str(target).replace("\n", " ")[:120]
            module = shown.rsplit(".", 1)[0] if "." in shown else shown

            raise UserError(
                f"{path}._target_={shown} in {source} is not trusted: a config read from a file may build only what dl's "
                f"own configs name, or an optimizer, schedule, loss, model, callback or logger class of dl's kind; "
                f"if you trust it, add --trust {module}{set_aside('./conf')}"
            )


def check_trusted_overrides(overrides: Sequence[str], trusted: Iterable[str] = (), source: str = "the file") -> None:
    """The same rule for overrides read from a file (a sweep's best.yaml or sweep.yaml, a run's
    overrides.yaml), parsed with Hydra's own override parser: every `_target_` an override sets,
    directly (`+callbacks.x._target_=...`) or inside a value (`+callbacks={x: {_target_: ...}}`);
    no `hydra.*` setting; no interpolation in any value once Hydra has read it."""
    parser = OverridesParser.create()
    for text in overrides:
        try:
            parsed = parser.parse_overrides([text])[0]
            value = parsed.value()
        except Exception:
            continue  # malformed: composing it says what is wrong, and builds nothing
        key = parsed.key_or_group
        if key == "hydra" or key.startswith("hydra."):  # Hydra's own settings: where configs are searched for, ...
            raise UserError(f"{source} sets {key}: a file dl did not write for you may not reach Hydra's own settings "
                            "(hydra.searchpath would compose configs from wherever it says); type it yourself if you mean it")
        check_no_interpolation(_plain(value), f"{source} ({text[:60]})")  # also what an escaped ${...} becomes once parsed
        if key == "_target_" or key.endswith("._target_"):
            check_trusted_targets({"_target_": value} if key == "_target_" else _nest(key.rsplit(".", 1)[0], {"_target_": value}),
                                  trusted, source)
        else:
            check_trusted_targets(_nest(key, _plain(value)), trusted, source)


def needing_trust(config: Any) -> dict[str, str]:
    """target -> the path it is built at, for every `_target_` in `config` that a file alone could
    not name (not dl's own, nor a library class of its place's kind): what a command the user typed
    builds on the user's word. A sweep trusts these by exact name for its own trials and its look at the test
    split, and records them so that a resume can say which need trusting again."""
    if isinstance(config, (DictConfig, ListConfig)):
        config = OmegaConf.to_container(config, resolve=False)
    return {target: path for path, target in targets_in(config) if isinstance(target, str) and not is_trusted(target, path)}


def targets_typed(overrides: Sequence[str]) -> list[str]:
    """Every `_target_` the overrides set, directly or inside a value: what the user names when
    typing them (and so trusts, in this command)."""
    parser = OverridesParser.create()
    found: list[str] = []
    for text in overrides:
        try:
            parsed = parser.parse_overrides([text])[0]
            value = _plain(parsed.value())
        except Exception:
            continue  # malformed: composing it says what is wrong
        key = parsed.key_or_group
        nested = {"_target_": value} if key == "_target_" or key.endswith("._target_") else _nest(key, value)
        for _, target in targets_in(nested):
            for one in target if isinstance(target, list) else [target]:  # a swept target: each value
                if isinstance(one, str):
                    found.append(one)
    return found


def _nest(dotted: str, value: Any) -> Any:
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def _plain(value: Any) -> Any:
    """Hydra's parsed values (which may be sweeps of several) as plain containers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "list"):  # a choice/glob sweep: every value it could take
        return [_plain(v) for v in value.list]
    return value


def is_trusted(target: str, path: str, trusted: Sequence[str] = ()) -> bool:
    group = path.split(".", 1)[0].split("[", 1)[0]
    if target in shipped_targets().get(group, ()) or any(target == name or target.startswith(name + ".") for name in trusted if name):
        return True
    kind = KINDS.get(group)
    return kind is not None and path == group and _is_library_class_of_kind(target, *kind)


def targets_in(value: Any, path: str = ""):
    """(dotted path, target) for every `_target_` key in plain containers."""
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "_target_":
                yield path or "config", child
            else:
                yield from targets_in(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from targets_in(child, f"{path}[{index}]")


def trusted_here() -> list[str]:
    """Names the user trusts for every file opened from this directory: ./conf/trust.yaml, and
    what this directory's own ./conf files name (named_by_own_configs); nothing when the working
    directory is received (dlcli.trust.workdir: a run, sweep or k-fold directory, or one this command
    opens, never vouches for itself)."""
    conf = own_conf()
    if conf is None:
        return []
    path = conf / TRUST_FILE.name
    named = named_by_own_configs()
    if not path.is_file():
        return named
    content = read_yaml(path)
    names = content.get("trust") if isinstance(content, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise UserError(f"{path} must hold `trust: [module, ...]`")
    return [*names, *named]


OWN_CONFIGS_SCANNED = 500  # ./conf files read for their targets (a project has tens)
OWN_CONFIG_BYTES = 1 << 20


def named_by_own_configs() -> list[str]:
    """What the working directory's own ./conf/**/*.yaml name as `_target_`: a user who trained
    model=mynet from ./conf/model/mynet.yaml (class mypkg.MyNet) opens that run here without
    --trust. A module that lives in this directory (./mypkg/ or ./mypkg.py) is trusted whole, as
    the user's own code; any other target only by its exact name. Only the directory dl runs in
    vouches, and only when it is the user's (dlcli.trust.workdir): a run directory's config.yaml,
    wherever it is, still trusts nothing."""
    root = own_conf()
    if root is None:
        return []  # (a received directory, even as the working directory, does not vouch for its own config)
    named: set[str] = set()
    for file in sorted(root.rglob("*.yaml"))[:OWN_CONFIGS_SCANNED]:
        try:
            if file.stat().st_size > OWN_CONFIG_BYTES:
                continue
            content = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
            continue  # composing it says what is wrong with it; here it vouches for nothing
        for _, target in targets_in(content):
            if not isinstance(target, str) or "." not in target or target.startswith("dlcli."):
                continue  # dl's own classes are trusted by their exact names in dl's configs only
            top = target.split(".", 1)[0]
            own_module = (Path.cwd() / top).is_dir() or (Path.cwd() / f"{top}.py").is_file()
            named.add(target.rpartition(".")[0] if own_module else target)
    return sorted(named)


def _is_library_class_of_kind(target: str, namespaces: tuple[str, ...], bases: tuple[str, ...]) -> bool:
    """Is `target` a class, in one of dl's own library namespaces, subclassing one of `bases`?
    Only modules inside those namespaces are imported to find out."""
    module_name, _, name = target.rpartition(".")
    parts = [*module_name.split("."), name]
    # no private or special names: importing `pkg.__main__` runs a program, `_private` is nobody's API
    if not module_name or not all(part.isidentifier() and not part.startswith("_") for part in parts):
        return False
    if not any(module_name == ns or module_name.startswith(ns + ".") for ns in namespaces):
        return False
    try:
        module = importlib.import_module(module_name)
    except Exception:
        return False
    candidate = getattr(module, name, None)
    if not inspect.isclass(candidate):
        return False
    return any(_subclass_of(candidate, base) for base in bases)


def _subclass_of(candidate: type, base_path: str) -> bool:
    module_name, _, name = base_path.rpartition(".")
    try:
        base = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        return False
    return issubclass(candidate, base)
