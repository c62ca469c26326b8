"""The fast lane's guard (`pytest -m "not slow"` is the lane to run while working): a test without
the `slow` marker that takes longer than a few seconds fails, naming its time, so that a slow test
is marked (or made faster) when it is written rather than found later in a lane grown slow.

A test's time is its setup and its call (a fixture that trains is part of what the lane waits
for), counted twice: on the clock, and in CPU seconds of this process and of the processes it
started and waited for. It fails only when both pass the limit: on a machine shared with other work
the clock runs on while the test waits for a core, the CPU count does not, so a loaded machine does
not fail a quick test; a test that only sleeps is not caught (none should sleep for seconds).
A fixture shared by a module, class or session is made once for the tests that use it: each of
them is charged its share (its time over the number of selected tests that use it), whichever test
happened to make it, so that a verdict does not depend on the order or on `-k`.
The limit is the ini option `slow_after` (seconds), or the environment variable DL_TEST_SLOW_AFTER
when set; 0 turns the guard off. Loaded as a plugin by conftest.py (and by the guard's own test, in
a pytest it runs on a generated file)."""

from __future__ import annotations

import os
import resource
import time
from collections import Counter
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

    def plus(self, other: Clocks) -> Clocks:
        return Clocks(self.wall + other.wall, self.cpu + other.cpu)

    def share(self, users: int) -> Clocks:
        return Clocks(self.wall / users, self.cpu / users)


NOTHING = Clocks(0.0, 0.0)
started = pytest.StashKey[Clocks]()
setup_took = pytest.StashKey[Clocks]()
made_here = pytest.StashKey[Clocks]()  # shared fixtures this test's setup happened to make
shared_used = pytest.StashKey[list]()  # the keys of the shared fixtures this test uses
limit_seconds = pytest.StashKey[float]()
current_test = pytest.StashKey[pytest.Item]()
shared_users = pytest.StashKey[Counter]()
shared_share = pytest.StashKey[dict]()


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
    config.stash[shared_users] = Counter()
    config.stash[shared_share] = {}


def shared_key(argname: str, scope: str, node: pytest.Item | pytest.Collector) -> tuple[str, str]:
    """A shared fixture's instance: its name and the module or class it is made for ("" for the session)."""
    kind = {"module": pytest.Module, "class": pytest.Class}.get(scope)
    anchor = node if kind is None or isinstance(node, kind) else node.getparent(kind)
    return argname, anchor.nodeid if kind is not None and anchor is not None else ""


def pytest_collection_finish(session: pytest.Session) -> None:
    users = session.config.stash[shared_users]
    for item in session.items:
        definitions = getattr(item, "_fixtureinfo", None)
        keys = []
        for name, defs in (definitions.name2fixturedefs.items() if definitions else ()):
            if defs and defs[-1].scope != "function":
                keys.append(shared_key(name, defs[-1].scope, item))
        item.stash[shared_used] = keys
        users.update(keys)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest):
    if fixturedef.scope == "function":
        yield
        return
    before = Clocks.now()
    yield
    took = Clocks.now().since(before)
    item = request.config.stash[current_test]
    item.stash[made_here] = item.stash.get(made_here, NOTHING).plus(took)
    key = shared_key(fixturedef.argname, fixturedef.scope, item)
    request.config.stash[shared_share][key] = took.share(max(1, request.config.stash[shared_users][key]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    item.config.stash[current_test] = item
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
    shares = item.config.stash[shared_share]
    shared = NOTHING
    for key in item.stash.get(shared_used, []):
        shared = shared.plus(shares.get(key, NOTHING))
    made = item.stash.get(made_here, NOTHING)
    took = Clocks.now().since(item.stash[started]).since(made).plus(shared)
    setup = item.stash[setup_took].since(made).plus(shared)
    if min(took.wall, took.cpu) > limit:
        report.outcome = "failed"
        report.longrepr = (f"took {took.wall:.1f} s and {took.cpu:.1f} CPU seconds (setup {setup.wall:.1f} s, call "
                           f"{took.wall - setup.wall:.1f} s), over the {limit:g} s a test without @pytest.mark.slow may "
                           f"take: make it faster or mark it slow (DL_TEST_SLOW_AFTER=SECONDS moves the limit, 0 turns it off)")
