"""The completion index on disk: where it lives, whether it is fresh, reading it without ever
failing, writing it atomically, and starting its rebuild in the background.

Two kinds of file, under dl's cache directory (completion/):
- commands.json: the command tree (commands, options, their choices), written by `dl` itself
  (`dl --build-completion-index`: it imports the CLI and what declares the options' choices,
  seconds on a slow machine). A TAB that finds it missing or older than the dl it describes starts
  that build in the background and answers from what it has: a TAB never waits seconds.
- configs-<digest>.json: one per set of config directories (the package's conf/, ./conf, each
  --config-dir). Reading the YAML takes a fraction of a second and needs no framework, so a TAB
  that finds it stale rebuilds it at once: an option added to ./conf is offered at the next TAB.

A file that cannot be read or parsed is treated as missing; where the cache directory cannot be
written, the index lives in a private folder of the temporary directory (index_dir), never an error.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from pathlib import Path

import dlcli
from dlcli.completion import COMPLETE_VAR
from dlcli.system.cache_dir import cache_root

FORMAT = 1  # of both files; raise it when their layout changes
COMMANDS = "commands.json"
BUILDING = "building"  # a lock file: a background build is under way (its age tells a dead one)
BUILD_TAKES_AT_MOST = 120  # seconds: a lock older than this belongs to no running build
BUILD_OPTION = "--build-completion-index"  # dl's hidden option that writes commands.json


def index_dir() -> Path:
    """completion/ in dl's cache directory; where that cannot be written (a read-only home, a cache
    path that is a file), a folder of this user's own in the temporary directory: without an index
    no TAB could answer at all."""
    preferred = cache_root() / "completion"
    if _usable(preferred):
        return preferred
    fallback = Path(os.environ.get("TMPDIR") or "/tmp") / f"dl-completion-{os.getuid()}"
    return fallback if _usable(fallback, private=True) else preferred


def _usable(folder: Path, private: bool = False) -> bool:
    """`folder` exists (made if need be) and can be written; `private`: and is this user's alone
    (a shared temporary directory: another user's folder of that name is never read)."""
    try:
        folder.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
        if private:
            found = folder.lstat()
            if found.st_uid != os.getuid() or found.st_mode & 0o077 or not folder.is_dir() or folder.is_symlink():
                return False
        return os.access(folder, os.W_OK)
    except OSError:
        return False


def read_index(path: Path) -> dict | None:
    """The index in `path`, or None when it is missing, unreadable, corrupt or of another format."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) and content.get("format") == FORMAT else None


def write_index(path: Path, content: dict) -> bool:
    """Write atomically (a TAB reading it meanwhile sees the old file or the new, never half of
    one); False where the cache directory cannot be written."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps({**content, "format": FORMAT}, separators=(",", ":")), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        try:
            temporary.unlink()
        except OSError:
            pass
        return False
    return True


def tree_stamp(folder: Path) -> list:
    """What says that a config directory changed: the count of its YAML files and the newest
    modification time among them and its folders (a file removed or renamed changes its folder's
    time). Two levels deep, where the groups hold the options; hidden entries (an editor's swap
    file) and __pycache__ do not count."""
    try:
        newest, count = folder.stat().st_mtime_ns, 0
        entries = [entry for entry in os.scandir(folder) if not entry.name.startswith(".") and entry.name != "__pycache__"]
    except OSError:
        return [0, 0]
    for entry in entries:
        if _is_dir(entry):
            try:
                files = [file for file in os.scandir(entry.path) if file.name.endswith(".yaml") and not file.name.startswith(".")]
            except OSError:
                continue
            # a file that cannot be stat'ed (a dangling or looping link) counts without a time: it
            # must not hide the group's other files from the stamp
            times = [_mtime(entry), *(_mtime(file) for file in files)]
            newest, count = max(newest, *times), count + len(files)
        elif entry.name.endswith(".yaml"):
            newest, count = max(newest, _mtime(entry)), count + 1
    return [count, newest]


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _mtime(entry: os.DirEntry) -> int:
    try:
        return entry.stat().st_mtime_ns
    except OSError:
        return 0


def commands_stamp() -> list:
    """What commands.json describes: this dl's version and its CLI's modules (an editable
    install's commands change without a new version)."""
    try:
        times = [entry.stat().st_mtime_ns for entry in os.scandir(Path(dlcli.__file__).parent / "cli") if entry.name.endswith(".py")]
    except OSError:
        times = []
    return [dlcli.__version__, len(times), max(times, default=0)]


def configs_path(directories: list[Path]) -> Path:
    """The configs index of this set of config directories: one file per set, so that two
    projects, each with its own ./conf, never rebuild each other's."""
    digest = zlib.crc32("\n".join(map(str, directories)).encode())  # (hashlib's import alone costs a TAB milliseconds)
    return index_dir() / f"configs-{digest:08x}.json"


def fresh_commands() -> dict | None:
    """commands.json when it describes this dl; else None, and its rebuild started in the background."""
    commands = read_index(index_dir() / COMMANDS)
    if commands is not None and commands.get("stamp") == commands_stamp():
        return commands
    rebuild_in_background()
    return commands  # an older dl's commands are still mostly right: better than nothing


def rebuild_in_background() -> None:
    """Start `dl --build-completion-index` detached (its own session, no terminal, no output), unless
    one is under way or the cache directory cannot be written (then it could not write either)."""
    lock = index_dir() / BUILDING
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        if lock.exists() and time.time() - lock.stat().st_mtime < BUILD_TAKES_AT_MOST:
            return
        lock.write_text(str(os.getpid()), encoding="utf-8")
    except OSError:
        return
    import subprocess  # noqa: PLC0415  (only this rare path starts a process: its import costs every TAB milliseconds)

    try:
        environment = {name: value for name, value in os.environ.items() if name != COMPLETE_VAR}  # a build, not a TAB
        # run in dl's own index folder: `python -m` puts its working directory first on the import
        # path, and the folder a TAB is pressed in may be one someone sent (a planted torch.py there
        # would run); the commands' index reads nothing of the working directory
        subprocess.Popen([sys.executable, "-m", "dlcli", BUILD_OPTION], env=environment, cwd=lock.parent, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    except OSError:
        lock.unlink(missing_ok=True)


def build_finished() -> None:
    """The background build's lock removed (the build calls this whether or not it succeeded)."""
    try:
        (index_dir() / BUILDING).unlink(missing_ok=True)
    except OSError:
        pass
