"""Whether the working directory speaks for the user.

`dl` takes the directory it runs in as the user's own: its ./conf joins Hydra's search path (the
user's options and experiments), ./conf/trust.yaml and the targets ./conf's files name are trusted
(dlcli.trust.targets), and its modules are importable (mypkg.MyNet). A directory someone sent is not the
user's, and must not vouch for itself (`cd RUN && dl eval .` would otherwise trust what RUN's own
conf/trust.yaml lists, and compose what its conf/data/*.yaml say). So one rule, here, decides:
the working directory is received when

- it, or a folder above it, is a directory dl made: a run, a sweep or a k-fold parent, known by
  the files dl writes there first (`made_by_dl`); or
- it lies inside a directory the current command opens (`opening`): a run given to eval, predict,
  export, inspect, diagnose, resume= or refit=, a sweep given to --resume, the folder of an
  --overrides-file. A command can only open a run that has its files, and a folder it opens
  counts whatever it holds, so stripping the marker files does not make a directory the user's.

Everything that lets the working directory count asks `own_conf()` (or `received_here()`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dlcli.conf

# Directories this process has opened as received (resolved). A command opens its directories
# before it reads ./conf for them; the processes it starts inherit nothing from here, and need
# nothing: a worker builds the config its parent composed and checked, a sweep's trial composes
# inside the sweep (its marker files), and a resumed sweep's trials never take the folders it names.
_OPENED: list[Path] = []
_ON_IMPORT_PATH: list[str] = []  # the working directory, when use_own_modules() put it on sys.path
# What the walk up from a working directory found (its path -> the clause, or None). A directory
# does not become dl's while a command runs in it, and `dl runs` asks once per run and option group.
_MADE_ABOVE: dict[Path, str | None] = {}


def made_by_dl(directory: Path) -> str | None:
    """What kind of directory dl made `directory` is ("a run directory", "a sweep directory",
    "a k-fold run directory"), told by the files dl writes into it when it creates it; None for
    any other folder. Each test asks for two files (a lone config.yaml or sweep.yaml is common in
    projects of every kind) and is implied by what the commands that open such a directory need."""
    def has(name: str) -> bool:
        return (directory / name).exists()

    if has("sweep.yaml") and (has("trials") or has("summary.json")):
        return "a sweep directory"
    if has("kfold.json") or (has("summary.json") and has("fold-1")):
        return "a k-fold run directory"
    if has("config.yaml") and any(has(name) for name in ("summary.json", "metrics.csv", "split.json", "checkpoints")):
        return "a run directory"
    return None


def opening(path: str | Path) -> None:
    """Record that this command reads `path` (a directory, or a file: its folder) as received:
    a working directory inside it is not the user's from now on. Done before anything the
    directory holds is read; takes the working directory back off the import path if it was
    put there."""
    path = Path(str(path)).expanduser()
    if not path.exists():
        return  # nothing is read from it (the command says so): its folder is not opened
    folder = path if path.is_dir() else path.parent
    try:
        _OPENED.append(folder.resolve())
    except OSError:
        return  # a path that cannot be resolved cannot hold the working directory
    if received_here() is not None:
        for entry in _ON_IMPORT_PATH:
            while entry in sys.path:
                sys.path.remove(entry)
        _ON_IMPORT_PATH.clear()


def received_here() -> str | None:
    """Why the working directory is not the user's own, as a clause for a message ("RUN is a run
    directory dl made"), or None when it is theirs."""
    try:
        cwd = Path.cwd()
    except OSError:
        return "the working directory is gone"
    if cwd not in _MADE_ABOVE:
        _MADE_ABOVE[cwd] = next((f"{_shown(folder, cwd)} is {kind} dl made" for folder in (cwd, *cwd.parents)
                                 if (kind := made_by_dl(folder)) is not None), None)
    if _MADE_ABOVE[cwd] is not None:
        return _MADE_ABOVE[cwd]
    around = {cwd, *cwd.parents}  # a set: a process that runs many commands (a test suite) has opened many folders
    return next((f"{_shown(folder, cwd)} is opened by this command" for folder in _OPENED if folder in around), None)


def own_conf() -> Path | None:
    """The working directory's ./conf when it speaks for the user (the user's options, trust.yaml
    and the targets its files name); None when there is none, the working directory is received, or
    ./conf is dl's own configs (the working directory is dl's repository: the same files count once)."""
    try:
        conf = Path.cwd() / "conf"
        shipped = conf.is_dir() and conf.resolve() == Path(dlcli.conf.__file__).parent.resolve()
    except OSError:
        return None
    return conf if conf.is_dir() and not shipped and received_here() is None else None


def set_aside(what: str = "./conf") -> str:
    """' (WHAT is not read here: RUN is a run directory dl made)' when the working directory holds
    `what` and does not count, for the end of a message that would otherwise puzzle; else ''."""
    try:
        present = (Path.cwd() / what.removeprefix("./")).exists()
    except OSError:
        return ""
    reason = received_here() if present else None
    return f" ({what} is not read here: {reason})" if reason else ""


def use_own_modules() -> None:
    """Put the working directory on the import path, so that the user's own modules (mypkg.MyNet)
    import as `python -m` would; appended, so they never shadow an installed package. Not a
    received directory: a `hydra_plugins/` package there would run as soon as Hydra starts."""
    cwd = os.getcwd()
    if received_here() is None and cwd not in sys.path:
        sys.path.append(cwd)
        _ON_IMPORT_PATH.append(cwd)


def children_import_nothing_from_here() -> None:
    """The Python processes dl starts (multiprocessing's fork server and spawned workers, its
    resource tracker, the picture drawer) start as `python -c ...` in the working directory, which
    Python puts first on their import path: a `multiprocessing/` or `torch.py` planted in a
    received directory would be imported instead of the real one. PYTHONSAFEPATH (Python 3.11+)
    keeps it off; what a child needs of the working directory travels in sys.path explicitly
    (use_own_modules: appended, and only for the user's own directory)."""
    os.environ["PYTHONSAFEPATH"] = "1"


def _shown(folder: Path, cwd: Path) -> str:
    return "the working directory" if folder == cwd else str(folder)
