"""Ctrl-C (SIGINT) around work that must be whole: a checkpoint and the progress it records, the
end of a run's bookkeeping, a journal write that holds a file lock.

SIGTERM and SIGHUP are stop requests too (a supervisor's stop, a cluster's preemption, a closed
terminal, `kill PID`): `stop_signals_act_as_ctrl_c()` makes them do what Ctrl-C does, so every
handler below sees the three alike (`STOP_SIGNALS`). `ctrl_c_deferred()` holds a stop signal (a
first or a second) until its block is done, then lets it act as it would have. `reached(name)`
marks a named point of a run's closing sequence; it does nothing unless a test has registered a
probe (`probe`), which is how the suite interrupts a run at each of those points and checks that
no finished epoch is lost.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from typing import Callable

_probes: list[Callable[[str], None]] = []

# the signals that ask a run to stop: Ctrl-C, `kill`/a supervisor/preemption, a closed terminal
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def stop_signals_act_as_ctrl_c() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does, so a run stopped by them closes
    like a Ctrl-C'd one (summary, checkpoint, exit 130) instead of dying mid-write. Only where they
    have their default action: a SIGHUP ignored by `nohup` stays ignored. Main thread only."""
    for signum in STOP_SIGNALS:
        if signum != signal.SIGINT and signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, signal.default_int_handler)


def catch_stop_signals(handler) -> dict:
    """`handler` for every stop signal that Python handles in this process now (Ctrl-C's default,
    SIGTERM and SIGHUP after `stop_signals_act_as_ctrl_c`, a caller's own handler); returns what
    was there, for `restore_handlers`. A signal ignored (a background job's Ctrl-C, `nohup`'s
    SIGHUP) stays ignored, and one left at the system's default keeps it (a sweep's pool worker
    ends at once on SIGTERM)."""
    return {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS if callable(signal.getsignal(signum))}


def restore_handlers(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def signal_name(signum: int) -> str:
    """`Ctrl-C` for SIGINT, the signal's name for the others (what the user is told was received)."""
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def forward_stop_signals() -> None:
    """Each stop signal this process gets is passed on, once, to the processes it started through
    multiprocessing (PyTorch's launcher starts a multi-process run's workers so): however a stop
    arrives (a terminal's Ctrl-C, `kill PID`, a supervisor, a notebook's interrupt), every worker
    gets one, and they stop together as Ctrl-C makes them. The workers must sit in a process group
    of their own (dlcli.run.launch.worker), so that a signal to this process's group reaches them
    through here only, never twice. Before any worker exists there is nothing to keep: this
    process stops (KeyboardInterrupt). A signal this process ignores (`nohup`) stays ignored."""

    def forward(signum, frame) -> None:
        workers = multiprocessing.active_children()
        if not workers:
            raise KeyboardInterrupt
        for process in workers:
            try:
                os.kill(process.pid, signum)
            except ProcessLookupError:  # ended meanwhile
                pass

    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, forward)


class StopRequests:
    """A stop-signal handler that only counts: it stands in where nothing can stop yet (a worker
    process starting up) and is read when something can (dlcli.engine.fit's collective stop)."""

    def __init__(self):
        self.count = 0

    def __call__(self, signum, frame) -> None:
        self.count += 1


@contextlib.contextmanager
def ctrl_c_deferred():
    """Hold a stop signal until the block is done. A Python-level handler records it meanwhile (one
    already pending when the block starts is caught too); afterwards the handler that was in place
    is called with the first one received (Python's default for Ctrl-C raises KeyboardInterrupt
    there; a signal whose action was the default then takes it). Main thread only; signals do not
    arrive elsewhere."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {signum: signal.signal(signum, lambda signum, frame: caught.append((signum, frame))) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        restore_handlers(previous)
        if caught:
            signum, frame = caught[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)  # e.g. Python's default: KeyboardInterrupt, now
            elif handler == signal.SIG_DFL:
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt
                os.kill(os.getpid(), signum)  # what the signal would have done: the default action, now


def reached(point: str) -> None:
    """A named point of a run's closing sequence (see `probe`)."""
    for probe_function in _probes:
        probe_function(point)


@contextlib.contextmanager
def probe(function: Callable[[str], None]):
    """Call `function(point)` at every named point while the block runs (tests only)."""
    _probes.append(function)
    try:
        yield
    finally:
        _probes.remove(function)
