"""The fast lane's guard (tests/slow_guard.py), on a generated test file in a pytest of its own: an
unmarked test past the limit fails with its name and time; a slow-marked one and a quick one pass;
a module's fixture is charged in shares to the tests that use it.
The generated tests keep a core busy rather than sleep: the guard counts CPU time too."""

import os
from pathlib import Path

import pytest

TESTS = """
import subprocess
import sys
import time
import pytest

def busy(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

def test_quick():
    pass

def test_busy_unmarked():
    busy(0.25)

@pytest.mark.slow
def test_busy_marked():
    busy(0.25)

@pytest.fixture
def busy_fixture():
    busy(0.25)

def test_whose_setup_is_busy(busy_fixture):
    pass

@pytest.fixture(scope="module")
def shared_by_five():
    busy(0.25)  # 0.05 s a test

@pytest.fixture(scope="module")
def for_one_test():
    busy(0.25)

@pytest.mark.parametrize("n", range(5))
def test_sharing_a_module_fixture(shared_by_five, n):
    pass

def test_alone_with_a_module_fixture(for_one_test):
    pass

def test_whose_child_is_busy():
    subprocess.run([sys.executable, "-c", "import time\\nend = time.process_time() + 0.25\\nwhile time.process_time() < end: pass"], check=True)
"""


@pytest.fixture
def generated(pytester, monkeypatch):
    """The file above with a limit of 0.1 s in its ini, run by a pytest in a process of its own that
    loads no plugin but the guard: in this test's own process (an xdist worker hundreds of tests in,
    with a large heap) a garbage collection alone once charged a quick test a whole second."""
    monkeypatch.delenv("DL_TEST_SLOW_AFTER", raising=False)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                    os.environ.get("PYTHONPATH")])))
    pytester.makeini("[pytest]\nmarkers =\n    slow: takes long\nslow_after = 0.1\n")
    pytester.makepyfile(test_generated=TESTS)
    return lambda: pytester.runpytest_subprocess("-p", "slow_guard", "-p", "no:cacheprovider", "-ra")


@pytest.mark.slow  # a pytest in a process of its own, about 2 s
def test_an_unmarked_test_past_the_limit_fails_naming_its_time(generated):
    result = generated()
    result.assert_outcomes(passed=7, failed=4)
    result.stdout.fnmatch_lines(["*_ test_busy_unmarked _*", "took * s and 0.* CPU seconds (setup * s, call * s), over "
                                 "the 0.1 s a test without @pytest.mark.slow may take: make it faster or mark it slow*"])
    result.stdout.fnmatch_lines(["*_ test_whose_setup_is_busy _*", "took * s and 0.* CPU seconds (setup * s, call *"])
    result.stdout.fnmatch_lines(["FAILED test_generated.py::test_busy_unmarked - took *",
                                 "FAILED test_generated.py::test_whose_setup_is_busy - took *",
                                 "FAILED test_generated.py::test_alone_with_a_module_fixture - took *",
                                 "FAILED test_generated.py::test_whose_child_is_busy - took *"])


@pytest.mark.slow  # two pytests in processes of their own
def test_0_in_the_environment_turns_the_guard_off_and_a_limit_not_a_number_is_refused(generated, monkeypatch):
    monkeypatch.setenv("DL_TEST_SLOW_AFTER", "0")
    generated().assert_outcomes(passed=11)
    monkeypatch.setenv("DL_TEST_SLOW_AFTER", "soon")
    refused = generated()
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*slow_after='soon' is not a number of seconds*"])
