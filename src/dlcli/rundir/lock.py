"""Who is training in a run directory right now: an advisory lock on <run>/.lock that the
operating system drops when its process ends, however it ends."""

from __future__ import annotations

import os
import socket
import weakref
from pathlib import Path

from dlcli.errors import UserError
from dlcli.system.files import open_lock_file


class RunLock:
    """Who is training in a run directory right now: a lock on <run>/.lock, held for as long as
    the run trains. The operating system drops it when that process ends, however it ends
    (SIGKILL and power loss included), so a run that says `running` but whose lock is free was
    killed, and a run whose lock is held must not be resumed by a second process.

    The lock belongs to the open file, and a forked child (a sweep's pool worker, a DataLoader
    worker) would share it: it would outlive a killed owner in every child that outlives it, and a
    resume would be refused in the owner's name. Each forked child therefore closes its copy at
    once (the owner's lock stays), so the lock lives exactly as long as the process that took it."""

    FILE = ".lock"

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / self.FILE
        self._file = None

    def acquire(self) -> "RunLock":
        file = open_lock_file(self.path)  # never through a link: .lock is truncated below
        if not _lock(file):
            file.seek(0)
            owner = file.read().strip() or "another process"
            file.close()
            raise UserError(f"{self.path.parent} is still being trained by {owner}: wait for it to finish, or stop it first")
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        file.flush()
        self._file = file
        _held.add(self)
        return self

    def release(self) -> None:
        _held.discard(self)
        if self._file is not None:
            self._file.close()  # closing drops the lock
            self._file = None

    def _forget_in_child(self) -> None:
        """In a forked child: close this process's copy of the file. Closing a copy never unlocks
        (only the last copy does, or an explicit unlock), so the owner keeps its lock."""
        if self._file is not None:
            self._file.close()
            self._file = None


_held: "weakref.WeakSet[RunLock]" = weakref.WeakSet()


def _forget_held_locks() -> None:
    for lock in list(_held):
        lock._forget_in_child()
    _held.clear()


if hasattr(os, "register_at_fork"):  # POSIX; a spawned or exec'd process never gets the file (PEP 446)
    os.register_at_fork(after_in_child=_forget_held_locks)


def is_training(run_dir: Path) -> bool:
    """Is some process training in this run directory now (does it hold its lock)?"""
    path = Path(run_dir) / RunLock.FILE
    if not path.is_file() or path.is_symlink():  # a link is no lock dl made
        return False
    with open(path, "r", encoding="utf-8") as file:  # read-only: looking never changes the file
        return not _lock(file)  # got it: nobody holds it (closing the file lets it go again)


try:
    import fcntl
except ImportError:  # not POSIX: without advisory locks a run's liveness cannot be known
    fcntl = None


def _lock(file) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def can_tell_liveness() -> bool:
    """Without POSIX advisory locks (fcntl) nobody can tell a killed run from a running one."""
    return fcntl is not None
