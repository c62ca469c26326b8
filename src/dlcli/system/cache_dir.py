"""dl's cache directory, found without importing anything heavy: the image cache
(dlcli.data.cache_store) and the completion index (dlcli.completion.index) both live under it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(setting: str | None = None) -> Path:
    """dl's cache directory: `setting` (data.cache_dir), else $XDG_CACHE_HOME/dl, else ~/.cache/dl.
    A relative $XDG_CACHE_HOME is ignored, as the XDG specification says."""
    if setting:
        return Path(str(setting)).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path("~/.cache").expanduser()
    return base / "dl"
