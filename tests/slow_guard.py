"""The fast lane's guard (`pytest -m "not slow"` is the lane to run while working): a test without
the `slow` marker that takes longer than a few seconds fails, naming its time, so that a slow test
is marked (or made faster) when it is written rather than found later in a lane grown slow.

A test's time is its setup and its call (a fixture that trains is part of what the lane waits
for), counted twice: on the clock, and in CPU seconds of this process and of the processes it
started and waited for. It fails only when both pass the limit: on a machine shared with other work
the clock runs on while the test waits for a core, the CPU count does not, so a loaded machine does
not fail a quick test; a test that only sleeps is not caught (none should sleep for seconds).
The limit is the ini option `slow_after` (seconds), or the environment variable DL_TEST_SLOW_AFTER
when set; 0 turns the guard off. Loaded as a plugin by conftest.py (and by the guard's own test, in
a pytest it runs on a generated file)."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

import pytest

SLOW_AFTER_DEFAULT = "3"


@dataclass(frozen=True)
class Clocks:
    wall: float
    cpu: float  # this process (all its threads) and its children that ended and were waited for

    @classmethod
    def now(cls) -> Clocks:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(time.perf_counter(), time.process_time() + children.ru_utime + children.ru_stime)

    def since(self, start: Clocks) -> Clocks:
        return Clocks(self.wall - start.wall, self.cpu - start.cpu)


started = pytest.StashKey[Clocks]()
setup_took = pytest.StashKey[Clocks]()
limit_seconds = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("slow_after", "seconds a test without the slow marker may take, setup and call, on the clock and "
                  "in CPU time (0: no limit)", default=SLOW_AFTER_DEFAULT)


def slow_after(config: pytest.Config) -> float:
    """The limit in seconds: DL_TEST_SLOW_AFTER if set, else the ini option."""
    value = os.environ.get("DL_TEST_SLOW_AFTER") or config.getini("slow_after")
    try:
        return float(value)
    except ValueError:
        raise pytest.UsageError(f"slow_after={value!r} is not a number of seconds (e.g. 3, or 0 for no limit)") from None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[limit_seconds] = slow_after(config)  # read once: a limit that is not a number is refused at start


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    item.stash[started] = Clocks.now()
    yield
    item.stash[setup_took] = Clocks.now().since(item.stash[started])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    limit = item.config.stash[limit_seconds]
    if call.when != "call" or not report.passed or limit <= 0 or item.get_closest_marker("slow") is not None:
        return
    took, setup = Clocks.now().since(item.stash[started]), item.stash[setup_took]
    if min(took.wall, took.cpu) > limit:
        report.outcome = "failed"
        report.longrepr = (f"took {took.wall:.1f} s and {took.cpu:.1f} CPU seconds (setup {setup.wall:.1f} s, call "
                           f"{took.wall - setup.wall:.1f} s), over the {limit:g} s a test without @pytest.mark.slow may "
                           f"take: make it faster or mark it slow (DL_TEST_SLOW_AFTER=SECONDS moves the limit, 0 turns it off)")
