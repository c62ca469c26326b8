"""Writing into run and sweep directories, which may have come from someone else.

Every file dl writes there is created fresh under a unique hidden name (O_EXCL: never an existing
file, never through a link) and renamed into place; a rename replaces a link, it does not write
through it. Files that grow (train.log, metrics.csv) and the run's .lock are opened with
O_NOFOLLOW. A directory about to be written is first checked for links that lead out of it, and a
tree is only deleted when it lies inside its directory with no link on the way.

A file the user names outside any run (`--output`) is another matter: the user chose it, links
and all. A link there is written through (its regular file gets the new contents, the link stays),
and anything that is not a regular file (a folder, a device, a FIFO, a socket, a link to nothing)
is refused in one line (`output_file`): replacing `--output /dev/stdout` would replace the
system's link, and writing a device or a FIFO is not a file dl can make whole.

A full disk is one line (DiskFull) that names the directory, the space the write needed and what
is free; the half-written temporary file is removed.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, IO

from dlcli.errors import RunFailed, UserError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFull(RunFailed):
    """A write ran out of space: the run is failed (and resumable once space is freed)."""


def write_atomically(path: Path, write: Callable[[IO], None], binary: bool = False, size_hint: int | None = None,
                     prefix: str | None = None, suffix: str = ".tmp") -> None:
    """Create `path` whole or not at all: `write(file)` fills a fresh temporary file beside it
    (hidden: `.<name>.<random><suffix>`), which then replaces `path` (a link there is replaced,
    never followed)."""
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=prefix or f".{path.name}.", suffix=suffix)
    temporary = Path(name)
    try:
        os.fchmod(handle, 0o666 & ~current_umask())  # mkstemp's 0600 would hide a run from the people it is shared with
        with os.fdopen(handle, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as file:
            write(file)
        os.replace(temporary, path)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if out_of_space(exc):
            raise disk_full(path, size_hint, exc) from None
        raise


def output_file(path: Path, given: str | Path | None = None) -> Path:
    """The regular file to write for a path the user named (`--output`): the path itself when
    nothing is there or a regular file is, the regular file a link leads to (written through: the
    link stays), and a one-line refusal for anything else, named as what it is."""
    path = Path(path)
    shown = f"--output {given if given is not None else path}"
    try:
        info = os.stat(path)  # follows links, as far as they lead
    except FileNotFoundError:
        if path.is_symlink():
            raise UserError(f"{shown} is a link to nothing ({os.readlink(path)}): give a file path, or a link to a file") from None
        return path  # a new file
    except OSError as exc:  # a loop of links, a name too long, a folder that cannot be looked into
        raise UserError(f"{shown} cannot be written: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        through = " (through a link)" if path.is_symlink() else ""
        raise UserError(f"{shown} is {_file_kind(info.st_mode)}{through}: dl writes its output whole into a regular file; "
                        "give a file path")
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (a named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda file: file.write(text), size_hint=len(text.encode("utf-8")))


def copy_file(source: Path, target: Path) -> None:
    """A copy of `source` at `target`, atomically (the source's own links are not followed)."""
    if Path(source).is_symlink():
        raise UserError(f"{source} is a link: dl copies only plain files out of a run")

    def copy(file) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, file)

    write_atomically(target, copy, binary=True, size_hint=Path(source).stat().st_size)


def open_append(path: Path) -> IO:
    """A file that grows (train.log, metrics.csv), opened without following a link."""
    return os.fdopen(_open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a", encoding="utf-8", newline="")


def open_lock_file(path: Path) -> IO:
    return os.fdopen(_open_no_follow(path, os.O_RDWR | os.O_CREAT), "r+", encoding="utf-8")


def _open_no_follow(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)  # less the umask, as any file the user makes
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{path} is a link: dl never writes through links in a run directory; remove it") from None
        if exc.errno in NO_SPACE:
            raise disk_full(Path(path), None, exc) from None
        raise


def check_no_links_out(directory: Path, what: str = "the run directory") -> None:
    """Refuse to write into `directory` when a link inside it leads out of it (to a file or a
    folder elsewhere, or nowhere yet): a write or a deletion there would land outside."""
    root = Path(directory).resolve()
    for current, folders, files in os.walk(root, followlinks=False):
        for name in [*folders, *files]:
            entry = Path(current) / name
            if entry.is_symlink() and not _inside(entry.resolve(), root):
                raise UserError(f"{what} {directory} contains {entry.relative_to(root)} -> {os.readlink(entry)}, a link that "
                                "leads out of it: dl never writes through such links; remove the link (or copy the "
                                "directory with its files rather than links)")


def remove_tree(path: Path, root: Path) -> None:
    """Delete `path` (a folder or file inside `root`), never across a link."""
    path, root = Path(path), Path(root)
    parts = path.relative_to(root).parts if path.is_relative_to(root) else None
    if parts is None:
        raise UserError(f"{path} is not inside {root}: dl deletes only inside the directory it manages")
    step = root
    for part in parts:
        step = step / part
        if step.is_symlink():
            raise UserError(f"{step} is a link: dl never deletes across links; remove the link yourself")
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def out_of_space(exc: BaseException) -> bool:
    """Did this error (or one it was raised from, such as torch's writer wrapping an OSError)
    come from a full disk or a file size limit?"""
    return _space_errno(exc) is not None


def _space_errno(exc: BaseException | None) -> int | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full(path: Path, needed: int | None, exc: BaseException | None = None) -> DiskFull:
    """The one line a full disk (or a file size limit, `ulimit -f`) is said in."""
    directory = Path(path).parent
    need = f" writing {Path(path).name} needs about {_size(needed)}" if needed else f" writing {Path(path).name} failed"
    if _space_errno(exc) == errno.EFBIG:
        return DiskFull(f"the file size limit (ulimit -f) stops{need.replace(' needs', ', which needs')} in {directory}: "
                        "raise the limit (what was finished is kept)")
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        free = None
    have = f", {_size(free)} free" if free is not None else ""
    return DiskFull(f"no space left in {directory}:{need}{have}; free some space (what was finished is kept)")


def current_umask() -> int:
    """The process's umask, read where the system shows it (Linux's /proc/self/status) rather than
    by setting it, as os.umask must: while it is set to something else, a file another thread
    creates would get the wrong mode. Read each time: a program may change it between runs."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere, the only way there is
    os.umask(mask)
    return mask


def as_mkdir_would(directory: Path) -> Path:
    """Give a directory tempfile.mkdtemp made (always 0700, for its own safety while it is a
    temporary name) the mode a plain mkdir gives: 0777 less the umask. A run directory is made
    that way so it appears whole; under umask 022 a lab's shared runs/ must still be readable by
    the group, under 077 it stays private."""
    os.chmod(directory, 0o777 & ~current_umask())
    return directory


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _size(count: int | None) -> str:
    if count is None:
        return "?"
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"
