"""Where a folder of images decoded once is kept (dlcli.data.image_cache), and the listing and
removal of what is kept (`dl cache list`, `dl cache clear`). No torch: `dl cache` answers at once.

The cache lives in the user's cache directory, never in the data's folder: a dataset folder is often
read-only, shared, under version control or synced, and writing into it is a side effect nobody
asked for. The place is `data.cache_dir` when given, else `$XDG_CACHE_HOME/dl`, else `~/.cache/dl`;
under it, `images/<digest of the folder's resolved path>/decoded-<mode>-<size>.bin`. Each file's
header names its folder, colour mode and resize, and holds the key of the folder's files it was
made from (names, sizes, modification and change times, inodes, labels), so an entry whose folder
is gone, or whose folder changed since, is known as stale and can be removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from dlcli.data.image_files import class_files
from dlcli.system.cache_dir import cache_root  # (the one place that says where dl's cache directory is)

CACHE_FORMAT = 1  # of the cache file; raise it when the decoding changes
IMAGES = "images"  # the part of dl's cache directory that holds decoded folders
HEADER_LIMIT = 64 * 1024  # a header line longer than this is not one dl wrote
SUFFIX = ".bin"
UNFINISHED_AFTER = 3600  # seconds: a temporary cache file untouched this long belongs to no running write


def folder_entry(folder: Path, setting: str | None = None) -> Path:
    """The directory that keeps `folder`'s decoded images: one per resolved path, so the same
    folder reached through another path or a link shares it."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return cache_root(setting) / IMAGES / digest


def cache_name(mode: str, resize: int | None) -> str:
    return f"decoded-{mode}-{resize or 'native'}{SUFFIX}"


def folder_key(paths: list[Path], labels, root: Path | None, mode: str, resize: int | None) -> str:
    """A digest of what the decoded pixels depend on: every file's place, size, modification and
    change times, inode and label, the colour mode, the resize and the cache's format."""
    digest = hashlib.sha256(f"format={CACHE_FORMAT} mode={mode} resize={resize}\n".encode())
    for path, label in zip(paths, labels):
        stat = path.stat()
        shown = path.relative_to(root) if root is not None else path
        # the change time and inode as well: no copy or unpacking keeps them, so a cache that came
        # with a folder from elsewhere is never taken for this one's, and an edit that kept the
        # modification time is still seen
        digest.update(f"{shown}\t{stat.st_size}\t{stat.st_mtime_ns}\t{stat.st_ctime_ns}\t{stat.st_ino}\t{int(label)}\n".encode())
    return digest.hexdigest()


def open_cache(path: Path):
    """(the open file, its size) for a cache file that is a regular file, else (None, why not).
    Never through a link, never blocking on a pipe."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return None, f"the cache {path} cannot be opened ({type(exc).__name__})"
    size = os.fstat(descriptor)
    if not S_ISREG(size.st_mode):  # a directory, a pipe, a device in its place
        os.close(descriptor)
        return None, f"the cache {path} is not a regular file"
    return os.fdopen(descriptor, "rb"), size.st_size


def read_header(file) -> tuple[dict | None, bytes]:
    """The header line of an open cache file (a dict, or None when it is not one dl wrote) and its bytes."""
    line = file.readline(HEADER_LIMIT)
    try:
        header = json.loads(line)
    except ValueError:
        return None, line
    return (header if isinstance(header, dict) else None), line


@dataclass
class CacheEntry:
    """One kept folder of decoded images, and why it is stale (None while it matches its folder)."""

    path: Path
    folder: str | None
    mode: str | None
    resize: int | None
    size: int
    stale: str | None

    def to_json(self) -> dict:
        return {"path": str(self.path), "folder": self.folder, "mode": self.mode, "resize": self.resize,
                "bytes": self.size, "stale": self.stale is not None, "why": self.stale}


def cache_entries(setting: str | None = None) -> list[CacheEntry]:
    """Every decoded folder kept under dl's cache directory, each checked against its folder now."""
    images = cache_root(setting) / IMAGES
    if not images.is_dir() or images.is_symlink():
        return []
    entries = []
    for directory in sorted(images.iterdir()):
        if directory.is_dir() and not directory.is_symlink():
            entries += [_entry(path) for path in sorted(directory.glob(f"decoded-*{SUFFIX}"))]
            # what a write cut short by a SIGKILL or a power cut left (files.write_atomically's
            # temporaries), once old enough that no run is still writing it
            entries += [CacheEntry(path, None, None, None, path.lstat().st_size, "an unfinished write")
                        for path in sorted(directory.glob(f".decoded-*{SUFFIX}.*"))
                        if time.time() - path.lstat().st_mtime > UNFINISHED_AFTER]
    return entries


def _entry(path: Path) -> CacheEntry:
    opened, why = open_cache(path)
    if opened is None:
        return CacheEntry(path, None, None, None, 0, why)
    file, size = opened, why
    with file:
        header, _ = read_header(file)
    if header is None or header.get("format") != CACHE_FORMAT:
        return CacheEntry(path, None, None, None, size, "not a cache this version of dl wrote")
    folder, mode, resize = header.get("folder"), header.get("mode"), header.get("resize")
    return CacheEntry(path, folder, mode, resize, size, _why_stale(path, header))


def _why_stale(path: Path, header: dict) -> str | None:
    folder, mode, resize = header.get("folder"), header.get("mode"), header.get("resize")
    if not isinstance(folder, str) or mode not in ("L", "RGB"):
        return "its header does not name a folder"
    root = Path(folder)
    if not root.is_dir():
        return "its folder no longer exists"
    if folder_entry(root, str(path.parent.parent.parent)) != path.parent:
        return "its folder resolves elsewhere now"
    try:
        _, paths, labels = class_files(root)
        key = folder_key(paths, labels, root, mode, resize)
    except OSError:
        return "its folder cannot be read"
    return None if key == header.get("key") else "its folder changed since"


def remove_entries(entries: list[CacheEntry]) -> int:
    """Remove these cache files (and their folder's directory once empty); the bytes freed."""
    freed = 0
    for entry in entries:
        try:
            entry.path.unlink()
        except FileNotFoundError:
            continue
        freed += entry.size
        try:
            entry.path.parent.rmdir()  # only when nothing else is kept for that folder
        except OSError:
            pass
    return freed
