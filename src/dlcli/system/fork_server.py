"""Worker processes forked from a server that has already imported what they need.

A process started with multiprocessing's "spawn" is a fresh interpreter: it imports torch,
sklearn, pandas and dl again (about 7 s of CPU each here) before it does anything. The
"forkserver" start method starts one interpreter, the server, imports the modules named once
there, and forks each worker from it: a worker starts with everything imported, in milliseconds,
and so does every later one (a restart, the next run of a sweep's trial, the next launch of the
same process). The server has only imported: torch's thread pools and CUDA start lazily, in a
worker, never in it; the libraries that start threads at import (OpenBLAS, pyarrow's jemalloc)
stop and restart them around a fork themselves (as for DataLoader workers). A fork from it is as
safe as a fresh interpreter, with CUDA too.

What a server changes, and how it is kept as a spawned worker would have it:
- It inherits this process's environment and its stdout/stderr when it starts, not when a worker
  starts: `ready_server` starts it again when they changed since (the working directory and
  sys.path travel with each worker).
- A worker's parent is the server, not this process (`parent_of_workers`): each worker dies with
  its parent, and the server with this process (`dlcli.system.fork_server_guard`), so nothing of
  a run outlives the process that started it, SIGKILL included.
- The server ignores stop signals (a stop sent to this process's group would otherwise end it, and
  with it every worker's exit status): the process that started the workers passes stops on.

Linux only (elsewhere `start_method` is "spawn"): the guard relies on the kernel's parent-death
signal, since a watchdog thread in the server would be forked into every worker. DL_START_METHOD=spawn
starts every worker as a fresh interpreter instead (benchmarks/worker_start.py compares the two).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from multiprocessing import forkserver, get_all_start_methods, set_forkserver_preload
from typing import Sequence

from dlcli.errors import UserError
from dlcli.system.sockets import make_worker_sockets_fit

START_METHOD_VARIABLE = "DL_START_METHOD"
GUARD = "dlcli.system.fork_server_guard"  # imported first: the server takes its stance before the long imports
# variables that say what the calling process is doing, not how a worker should run: pytest names
# the test running in one, a new value each test, and a suite's launches should share one server
NOT_SETTINGS = ("PYTEST_CURRENT_TEST",)
RETIRE_SECONDS = 5.0  # how long a server that is no longer wanted gets to see its last client go

_server = forkserver._forkserver  # multiprocessing's one fork server per process (the start method uses it)
_started_for: tuple | None = None  # what the running server inherited (see _inherited); None: not ours


def start_method() -> str:
    """"forkserver" where the server can die with this process (Linux), else "spawn"; DL_START_METHOD
    (spawn or forkserver) chooses (spawn: a fresh interpreter per worker, as before the server)."""
    chosen = os.environ.get(START_METHOD_VARIABLE, "").strip()
    if chosen not in ("", "spawn", "forkserver"):
        raise UserError(f"{START_METHOD_VARIABLE}={chosen}: give spawn or forkserver (or leave it unset: forkserver where it can run)")
    linux = sys.platform.startswith("linux")
    possible = linux and "forkserver" in get_all_start_methods() and _knows_its_server()
    return "forkserver" if possible and chosen != "spawn" else "spawn"


def ready_server(preload: Sequence[str]) -> None:
    """Have the server running, started by this process with its environment of now, importing
    `preload` (after the guard). Returns at once: the server imports while this process goes on,
    and a worker asked for meanwhile is forked when the imports are done."""
    global _started_for
    wanted = _inherited(preload)
    if _started_for != wanted:
        _retire()
        # (the main module too: each worker would import it again, `dl`'s command line and all)
        set_forkserver_preload([GUARD, "__main__", *preload])
    make_worker_sockets_fit()  # the server listens on a Unix socket under TMPDIR, as DataLoader workers do
    forkserver.ensure_running()  # (starts it again if it died meanwhile)
    _started_for = wanted


def parent_of_workers(method: str) -> int:
    """The pid a worker started by `method` has for its parent: the server, or this process."""
    return _server._forkserver_pid if method == "forkserver" else os.getpid()


def server_pid() -> int | None:
    """The running server's pid, when this process started one."""
    return _server._forkserver_pid if _started_for is not None else None


def _inherited(preload: Sequence[str]) -> tuple:
    """What a server keeps from the moment it started: this process (a forked child has a server
    of its own to start), the environment, where stdout and stderr go, and what it imports."""
    environment = tuple(sorted((name, value) for name, value in os.environ.items() if name not in NOT_SETTINGS))
    streams = []
    for fd in (1, 2):
        try:
            status = os.fstat(fd)
            streams.append((status.st_dev, status.st_ino))
        except OSError:
            streams.append(None)
    return os.getpid(), environment, tuple(streams), tuple(preload)


def _retire() -> None:
    """Stop the server this process started (it ends when its last client lets go of it: its
    workers have all ended by now). One this process did not start (another library's) is only
    forgotten: a new one with dl's imports takes its place for dl's workers."""
    global _started_for
    pid, alive, address = _server._forkserver_pid, _server._forkserver_alive_fd, _server._forkserver_address
    ours = _started_for is not None
    _server._forkserver_address = _server._forkserver_alive_fd = _server._forkserver_pid = None
    _started_for = None
    if pid is None or not ours:
        return
    os.close(alive)  # its signal to stop
    if address and not str(address).startswith("\0"):  # (a socket in the file system, not an abstract one)
        try:
            os.unlink(address)
        except OSError:
            pass
    deadline = time.monotonic() + RETIRE_SECONDS
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:  # a client still holds it (a process it forked lives on): end it
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.02)
    except ChildProcessError:  # reaped already
        pass


def _knows_its_server() -> bool:
    """multiprocessing still keeps its server's pid, address and alive pipe where this module reads them."""
    return all(hasattr(_server, name) for name in ("_forkserver_pid", "_forkserver_address", "_forkserver_alive_fd"))


def _forget_in_child() -> None:
    """A forked child did not start its parent's server: it starts its own when it needs one, and
    lets go of its copy of the parent's alive pipe (which would keep that server alive)."""
    global _started_for
    if _started_for is None:
        return
    alive = _server._forkserver_alive_fd
    _server._forkserver_address = _server._forkserver_alive_fd = _server._forkserver_pid = None
    _started_for = None
    if alive is not None:
        try:
            os.close(alive)
        except OSError:
            pass


if hasattr(os, "register_at_fork") and _knows_its_server():
    os.register_at_fork(after_in_child=_forget_in_child)
