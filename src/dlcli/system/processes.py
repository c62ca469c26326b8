"""Processes dl starts end with the process that started them, however it ends (SIGKILL included):
a worker left behind would train on for nobody, hold what its parent held, and keep the machine busy.

`die_with_parent` is called in the child as soon as it starts. On Linux the kernel sends the child
a signal when its parent ends (prctl PR_SET_PDEATHSIG); elsewhere a watchdog thread notices the
parent is gone. Torch-free and import-light: a pool worker calls it before anything else.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_SECONDS = 0.5  # how often the watchdog looks, where the kernel cannot be asked


def die_with_parent(parent_pid: int, death_signal: int = signal.SIGKILL) -> None:
    """Have `death_signal` sent to this process when `parent_pid` (its parent) ends. The parent may
    have ended already, before the request was made: nobody would send the signal then, so the
    parent is looked at once more after asking."""
    if not _ask_the_kernel(death_signal):
        _watch_parent(parent_pid, death_signal)
    if os.getppid() != parent_pid:  # adopted already: the parent died before the request counted
        os.kill(os.getpid(), death_signal)


def _ask_the_kernel(death_signal: int) -> bool:
    """prctl(PR_SET_PDEATHSIG) on Linux. The kernel sends the signal when the thread that started
    this process ends; the pools that call this start their workers from the thread that waits
    for them, which outlives them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, death_signal: int) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCH_SECONDS)
        os.kill(os.getpid(), death_signal)

    threading.Thread(target=watch, name="dl-parent-watch", daemon=True).start()
