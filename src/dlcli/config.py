"""Compose the experiment config with Hydra's compose API.

The built-in configs live in the package (`dlcli/conf`), so `dl` works from any directory. A
`./conf` in the working directory and any `--config-dir` are added to Hydra's search path so users
can add their own options and experiments next to the built-in ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from dlcli.errors import UserError

CONFIG_MODULE = "dlcli.conf"


def search_path(config_dirs: Sequence[str | Path] = ()) -> list[str]:
    """Extra config directories: ./conf (if present) and each --config-dir, as file:// paths."""
    dirs: list[Path] = []
    local = Path.cwd() / "conf"
    if local.is_dir():
        dirs.append(local)
    for d in config_dirs:
        p = Path(d).expanduser()
        if not p.is_dir():
            raise UserError(f"--config-dir {d}: no such directory")
        dirs.append(p)
    return [f"file://{p.resolve()}" for p in dirs]


def compose(overrides: Sequence[str] = (), config_dirs: Sequence[str | Path] = ()) -> DictConfig:
    """The fully composed (not yet resolved) config for these Hydra overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(overrides)
    _check_override_syntax(overrides)
    extra = search_path(config_dirs)
    if extra:
        overrides.append("hydra.searchpath=[" + ",".join(extra) + "]")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    except Exception as exc:  # Hydra raises several types; all are the user's input here
        raise UserError(_explain_hydra_error(exc)) from None
    finally:
        GlobalHydra.instance().clear()
    try:
        OmegaConf.resolve(cfg)
    except Exception as exc:
        raise UserError(f"cannot resolve the config: {_first_line(str(exc))}") from None
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def _check_override_syntax(overrides: Sequence[str]) -> None:
    """Parse with Hydra's own override parser so a malformed override gets a precise message."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for text in overrides:
        try:
            parsed = parser.parse_overrides([text])
        except Exception as exc:
            raise UserError(
                f"malformed override '{text}': {_first_line(str(exc))} "
                "(expected key=value, group=option, +key=value or ~key)"
            ) from None
        if parsed and parsed[0].is_sweep_override():
            raise UserError(
                f"override '{text}' is a sweep (several values); `dl train` takes one value "
                "per key: use `dl sweep` to try several"
            )


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else text.strip()


def _explain_hydra_error(exc: Exception) -> str:
    """Turn Hydra's multi-line messages into one line that says what would be right."""
    from hydra.errors import MissingConfigException

    message = str(exc)
    if isinstance(exc, MissingConfigException):
        options = sorted(getattr(exc, "options", None) or [])
        missing = getattr(exc, "missing_cfg_file", "") or ""
        group, _, option = missing.rpartition("/")
        if group and options:
            return f"unknown {group} '{option}': choose one of {', '.join(options)}"
        if group:
            return f"unknown {group} '{option}'"
        return _first_line(message)
    if "Could not override" in message or "not in struct" in message:
        key = message.split("'")[1] if "'" in message else "?"
        return (
            f"unknown config key '{key}': check the spelling with `dl train --cfg`, "
            f"or add a new key with +{key}=..."
        )
    if "Could not append to config" in message:
        return _first_line(message) + " (use key=value to change an existing key)"
    if "Could not delete" in message:
        return _first_line(message)
    return _first_line(message)
