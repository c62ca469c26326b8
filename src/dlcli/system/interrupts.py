"""Stopping gracefully, in one process and in many: every signal handler dl installs is installed here.

A *stop request* is a stop signal this process received (`STOP_SIGNALS`): Ctrl-C (SIGINT), SIGTERM
(`kill PID`, a supervisor's stop, a cluster's preemption) or SIGHUP (a closed terminal). What it does
is decided by the innermost *scope* in force when it arrives (one begun and not yet ended):

- no scope: Python's own handling. `stop_signals_act_as_ctrl_c()` (the `dl` command, each process
  of a multi-process run) makes SIGTERM and SIGHUP raise KeyboardInterrupt as Ctrl-C does, so a
  stop is a KeyboardInterrupt wherever it lands and the code it unwinds closes the run.
- `GracefulStop` (a run's epochs): the first request is recorded and announced, and the work asks
  "should I stop?" (`stop.requested`) at its safe points, the ends of epochs, and stops there. A
  second request escalates: KeyboardInterrupt at once. So does a first when waiting would keep
  nothing (`can_wait()` false: the checkpoint already holds every finished epoch).
- `ctrl_c_deferred()` (a critical section: a checkpoint write, an epoch's bookkeeping, a journal
  write that holds a file lock): requests are held until the block ends; then the first acts as it
  would have on arrival, under the scope outside. A split write is never left behind.
- `StopRecord` (a process that cannot stop yet, or stops only between tasks: a rank starting up, a
  sweep's pool worker): requests are only counted. A `GracefulStop` begun inside one takes its
  count as its own: one request before the fit finishes the first epoch, two stop at once.
- `forwarded_to_workers()` (the process that launched a multi-process run): each request is sent on
  to the workers, which stop together; before any worker exists it stops this process.

Each scope puts its handler in place when it begins and puts back what was there when it ends
(restored), so a library caller's own handlers come back untouched. Only the main thread receives
signals: elsewhere a scope does nothing. A signal this process ignores (a background job's Ctrl-C,
`nohup`'s SIGHUP) stays ignored, and one at the system's default keeps it (a sweep's pool worker
between trials ends at once on SIGTERM). A forked child (a DataLoader worker, a sweep's pool worker) starts with
the handlers that were there before any scope: it never runs its parent's, and takes its own
stance (`ignore_ctrl_c`, `pool_worker_stance`).

`reached(name)` marks a named point of a run's closing sequence; it does nothing unless a test has
registered a probe (`probe`), which is how the suite interrupts a run at each of those points and
checks that no finished epoch is lost.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from typing import Callable

# the signals that ask a run to stop: Ctrl-C, `kill`/a supervisor/preemption, a closed terminal
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

_scopes: list[_Scope] = []  # begun and not yet ended, the innermost last
_probes: list[Callable[[str], None]] = []


def stop_signals_act_as_ctrl_c() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does, so a run stopped by them closes
    like a Ctrl-C'd one (summary, checkpoint, exit 130) instead of dying mid-write. Only where they
    have their default action: a SIGHUP ignored by `nohup` stays ignored. Main thread only."""
    for signum in STOP_SIGNALS:
        if signum != signal.SIGINT and signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, signal.default_int_handler)


def ignored_stop_signals() -> list[int]:
    """The stop signals this process ignores (`nohup`'s SIGHUP, a background job's Ctrl-C): a
    process it starts inherits that (`stop_signals_as_launched`)."""
    return [signum for signum in STOP_SIGNALS if signal.getsignal(signum) == signal.SIG_IGN]


def stop_signals_as_launched(ignored: list[int]) -> None:
    """The stop signals as a fresh interpreter started by a process that ignores `ignored` has
    them (a process forked from dl's fork server has those of the launcher as it was when the
    server started): ignored ones stay ignored, Ctrl-C raises KeyboardInterrupt, the others are at
    their default. Main thread only."""
    for signum in STOP_SIGNALS:
        if signum in ignored:
            signal.signal(signum, signal.SIG_IGN)
        else:
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)


def fork_server_stance() -> None:
    """dl's fork server's stance (dlcli.system.fork_server_guard): SIGTERM and SIGHUP ignored (the
    server ignores SIGINT itself), since a stop sent to the launching process's group is the
    launching process's to pass on. Each process it forks gets them back as they were: it starts
    as a fresh interpreter would."""
    kept = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS if signum != signal.SIGINT}
    for signum in kept:
        signal.signal(signum, signal.SIG_IGN)
    os.register_at_fork(after_in_child=lambda: _restore(kept))


def ignore_ctrl_c() -> None:
    """A DataLoader worker's stance: a terminal's Ctrl-C reaches the whole process group, and a
    worker it killed would fail the batch the main process waits for. The main process decides
    what Ctrl-C does; the workers end with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def pool_worker_stance() -> StopRecord:
    """A sweep's pool worker's stance, for its whole life: Ctrl-C is recorded (the worker then
    starts no more trials; a trial running stops as its run's `GracefulStop` says), even where
    the sweep itself ignores Ctrl-C, since the sweep stops its workers with it. SIGTERM or SIGHUP
    while a trial runs is a stop request as Ctrl-C is (a supervisor or a scheduler's preemption
    sends it to every process of the group: the trial keeps its finished epochs and ends as
    interrupted, and the worker starts no more trials); while the worker waits between trials it
    ends the worker at once (the pool ending a broken worker: a worker that took it as a Ctrl-C
    would go on waiting for trials that never come)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    record = StopRecord().begin()  # (takes Ctrl-C only: the others are at their default here)

    def stop_or_end(signum: int, frame) -> None:
        if any(isinstance(scope, GracefulStop) for scope in _scopes):  # heard first by the trial's own stop
            record.count += 1
            return
        signal.signal(signum, signal.SIG_DFL)  # waiting between trials: nothing to keep, end now
        os.kill(os.getpid(), signum)

    for signum in STOP_SIGNALS:
        if signum != signal.SIGINT:
            signal.signal(signum, stop_or_end)
    return record


def signal_name(signum: int) -> str:
    """`Ctrl-C` for SIGINT, the signal's name for the others (what the user is told was received)."""
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def signal_children(signum: int) -> int:
    """Send `signum` to each process this one started through multiprocessing; how many there were
    (one that ended meanwhile counts: it needs no signal)."""
    children = multiprocessing.active_children()
    for process in children:
        try:
            os.kill(process.pid, signum)
        except (ProcessLookupError, PermissionError):  # ended meanwhile
            pass
    return len(children)


# -- scopes ----------------------------------------------------------------------------------------
class _Scope:
    """What stop requests do while it is in force: `_on_request` is its handler, for the stop
    signals `_takes` (by the handler in place): by default those Python handles, leaving ignored
    signals ignored and defaults default. Begin and end it, or use it as a context manager."""

    def __init__(self):
        self._previous: dict = {}  # signal -> the handler this scope replaced, put back when it ends

    def _takes(self, handler) -> bool:
        return callable(handler)

    def _on_request(self, signum: int, frame) -> None:
        raise NotImplementedError

    def begin(self):
        if threading.current_thread() is threading.main_thread() and self not in _scopes:
            self._previous = {signum: signal.signal(signum, self._on_request)
                              for signum in STOP_SIGNALS if self._takes(signal.getsignal(signum))}
            _scopes.append(self)
        return self

    def end(self) -> None:
        if self in _scopes:
            _scopes.remove(self)
            _restore(self._previous)

    def __enter__(self):
        return self.begin()

    def __exit__(self, *exc) -> None:
        self.end()


class StopRecord(_Scope):
    """Counts stop requests and does nothing else (see the module doc)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    @property
    def requested(self) -> bool:
        return self.count > 0

    def _on_request(self, signum: int, frame) -> None:
        self.count += 1


class GracefulStop(StopRecord):
    """The first stop request is announced ("finishing `finishing` to keep it", unless `finishing`
    is None) and read by the work at its safe points (`requested`); a second, or a first while
    `can_wait()` is false, raises KeyboardInterrupt at once. A handler that was in place before
    (other than Python's default, which would raise) hears each request first: a pool worker's
    record, so that it takes no more trials, or the own handler of a program that calls dl."""

    def __init__(self, finishing: str | None = "this epoch", can_wait: Callable[[], bool] = lambda: True):
        super().__init__()
        self.finishing, self.can_wait = finishing, can_wait

    def begin(self):
        super().begin()
        outer = _scopes[-2] if len(_scopes) > 1 and _scopes[-1] is self else None
        if isinstance(outer, StopRecord):  # requests that arrived while the process could only count them
            self.count = outer.count
            if self.count > 1:  # a second already: stop at once, with nothing left in force
                self.end()
                raise KeyboardInterrupt
        return self

    def _on_request(self, signum: int, frame) -> None:
        previous = self._previous.get(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)
        self.count += 1
        if self.count > 1 or not self.can_wait():
            raise KeyboardInterrupt
        if self.finishing is not None:
            name = signal_name(signum)
            sys.stderr.write(f"\n{name}: finishing {self.finishing} to keep it, then stopping ({name} again to stop at once)\n")


class _Held(_Scope):
    """A critical section (`ctrl_c_deferred`): every stop signal not ignored is held, even one at
    the system's default, and the first acts when the section ends."""

    def __init__(self):
        super().__init__()
        self.held: list[tuple[int, object]] = []

    def _takes(self, handler) -> bool:
        return handler != signal.SIG_IGN

    def _on_request(self, signum: int, frame) -> None:
        self.held.append((signum, frame))

    def end(self) -> None:
        previous = self._previous
        super().end()
        if self.held:
            signum, frame = self.held[0]
            _act_as(previous.get(signum), signum, frame)


class _Forwarded(_Scope):
    """Each stop request goes on to the worker processes (`forwarded_to_workers`)."""

    def _takes(self, handler) -> bool:
        return handler != signal.SIG_IGN

    def _on_request(self, signum: int, frame) -> None:
        if not signal_children(signum):
            raise KeyboardInterrupt  # no worker yet: nothing to keep, this process stops


@contextlib.contextmanager
def ctrl_c_deferred():
    """Hold stop requests until the block is done (one already pending when it starts is caught
    too), then let the first act as it would have: under the scope outside, or Python's default
    (KeyboardInterrupt for Ctrl-C), or for a signal left at the system's default, that action."""
    with _Held():
        yield


@contextlib.contextmanager
def forwarded_to_workers():
    """While the block runs, each stop request this process gets is passed on, once, to the
    processes it started through multiprocessing (PyTorch's launcher starts a multi-process run's
    workers so): however a stop arrives (a terminal's Ctrl-C, `kill PID`, a supervisor, a
    notebook's interrupt), every worker gets one, and they stop together as Ctrl-C makes them. The
    workers must sit in a process group of their own (dlcli.run.launch.worker), so that a signal to
    this process's group reaches them through here only, never twice. Before any worker exists
    there is nothing to keep: KeyboardInterrupt. The launcher installs handlers of its own (SIGQUIT)
    and leaves them: they are put back as they were too."""
    quit_signal = getattr(signal, "SIGQUIT", None)
    kept = signal.getsignal(quit_signal) if quit_signal is not None else None
    try:
        with _Forwarded():
            yield
    finally:
        if kept is not None:
            signal.signal(quit_signal, kept)


def _act_as(handler, signum: int, frame) -> None:
    """What `handler` does with a stop signal, now: call it, or the system's default action."""
    if callable(handler):
        handler(signum, frame)  # e.g. Python's default: KeyboardInterrupt, now
    elif handler in (None, signal.SIG_DFL):
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)  # what the signal would have done (it is back at its default): that, now


def _restore(handlers: dict) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _forget_in_child() -> None:
    """A forked child's parent's scopes are not its own: the handlers that were there before any
    of them come back."""
    before: dict = {}
    for scope in reversed(_scopes):  # the outermost last: what was there first
        before.update(scope._previous)
    _scopes.clear()
    if threading.current_thread() is threading.main_thread():
        _restore(before)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


# -- named points of a run's closing sequence (tests) ------------------------------------------------
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
