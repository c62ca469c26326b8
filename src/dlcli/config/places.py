"""Where config options are read from: the package's conf/, ./conf when the working directory is
the user's own (dlcli.trust.workdir), and each --config-dir. No Hydra here: TAB completion
(dlcli.completion) reads the same places as composing does (dlcli.config.compose)."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence

import dlcli.conf
from dlcli.errors import UserError
from dlcli.trust.workdir import own_conf


def search_path(config_dirs: Sequence[str | Path] = ()) -> list[str]:
    """Extra config directories: ./conf (when the working directory is the user's own:
    dlcli.trust.workdir) and each --config-dir, as file:// paths."""
    dirs: list[Path] = []
    local = own_conf()
    if local is not None:
        dirs.append(local)
    for d in config_dirs:
        p = Path(d).expanduser()
        if not p.is_dir():
            raise UserError(f"--config-dir {d}: no such directory")
        dirs.append(p)
    return [f"file://{p.resolve()}" for p in dirs]


def config_directories(config_dirs: Sequence[str | Path] = ()) -> list[Path]:
    """Where config options live, built-in first: the package's conf/, ./conf, each --config-dir."""
    return [Path(dlcli.conf.__file__).parent, *(Path(p.removeprefix("file://")) for p in search_path(config_dirs))]
