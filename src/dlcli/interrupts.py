"""Ctrl-C (SIGINT) around work that must be whole: a checkpoint and the progress it records, the
end of a run's bookkeeping, a journal write that holds a file lock.

`ctrl_c_deferred()` holds a Ctrl-C (a first or a second) until its block is done, then lets it act
as it would have. `reached(name)` marks a named point of a run's closing sequence; it does nothing
unless a test has registered a probe (`probe`), which is how the suite interrupts a run at each
of those points and checks that no finished epoch is lost.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable

_probes: list[Callable[[str], None]] = []


@contextlib.contextmanager
def ctrl_c_deferred():
    """Hold Ctrl-C until the block is done. A Python-level handler records the signal meanwhile
    (one already pending when the block starts is caught too); afterwards the handler that was
    in place is called with it (Python's default raises KeyboardInterrupt there). Main thread
    only; signals do not arrive elsewhere."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, caught[0])  # e.g. Python's default: KeyboardInterrupt, now
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt


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
