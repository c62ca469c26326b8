import atexit
import contextlib
import csv
import functools
import importlib
import io
import json
import os
import shutil
import signal
import tempfile
import uuid
from collections import Counter
from pathlib import Path

import pytest
import typer.main
import typer.testing
from rich.console import Console
from typer.testing import CliRunner

import dlcli.tracking.plots
from dlcli.cli import app
from dlcli.cli.completion import with_shell_named
from dlcli.config.compose import compose
from dlcli.errors import first_line
from dlcli.system.collector import collect_less_often

# slow_guard: a test without the slow marker fails past a few seconds (the fast lane stays fast);
# pytester: the guard's own test runs pytest on a generated file
pytest_plugins = ["slow_guard", "pytester"]


# `.ci/conditions` runs the suite under several thread counts and CPU kernels to find tests that
# encode the machine they were written on; this one sets torch's intra-op threads in this process
# (the dl processes that tests start follow OMP_NUM_THREADS, which that script sets separately).
# A pytest-xdist worker (PYTEST_XDIST_WORKER set: `-n auto` gives one per core) keeps to one thread
# unless told otherwise: two workers with a pool of two threads each on two cores would spin for
# each other's cores, and the slow guard would count that spinning as the tests' CPU time.
if os.environ.get("DL_TEST_TORCH_THREADS") or os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(int(os.environ.get("DL_TEST_TORCH_THREADS") or 1))
    # and so do the dl processes its tests start (torch reads OMP_NUM_THREADS as it loads): beside the
    # other worker, a child with two threads spins for a core it does not have (an LSTM epoch took
    # 16.7 s with two threads and 0.42 s with one while 20 processes shared the 2 cores)
    os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("DL_TEST_TORCH_THREADS") or "1")

# A test process holds millions of objects (torch, its compiler stack, scikit-learn, the runs of
# module fixtures), and Python's default thresholds ran a full collection over all of them every few
# hundred thousand allocations: 18 of them, 5.4 CPU seconds, in test_received_runs.py and
# test_config.py (59 CPU s). With dl's own thresholds (the dl processes the tests start set them
# themselves): 2 full ones, 1.2 s.
collect_less_often()

# Tests press Ctrl-C (a real SIGINT) in this process and in the dl processes they start. A shell
# that starts pytest in the background sets SIGINT to "ignored", which dl rightly respects and
# children inherit; take it back, so those tests test dl rather than how pytest was launched.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# likewise SIGHUP, which `nohup pytest` ignores: the rows that close the terminal on a run would see it train on
if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


# dl keeps decoded image folders in the user's cache directory ($XDG_CACHE_HOME/dl): no test writes
# into the real one, not even a fixture shared by a module (each test then gets its own, below)
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="dl-tests-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject's addopts): a worker per core, but no more workers than the test files
    named (--dist loadfile gives a file to one worker whole), and none for one file: its tests run
    in this process, as `pytest tests/test_x.py -k name` always did, without a worker's start-up.
    PYTEST_XDIST_AUTO_NUM_WORKERS, when set, decides as pytest-xdist documents."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    from xdist.plugin import pytest_xdist_auto_num_workers as one_per_core  # here: called by pytest-xdist only

    files = set()
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0])
        files.update(path.rglob("test_*.py") if path.is_dir() else [path])
    workers = min(one_per_core(config), len(files))
    return workers if workers > 1 else 0


# What a training run imports on first use (~4 CPU seconds: pandas, scikit-learn, torch's compiler
# stack, the engine), imported once before the first test: the slow guard (slow_guard.py) counts
# each test's time, and would otherwise charge these imports to whichever test trains first.
WARM_IMPORTS = ("dlcli.run.dispatch", "dlcli.experiment", "dlcli.trained.evaluate", "dlcli.diagnostics", "sklearn.datasets",
                "pandas", "torch._dynamo")


# The files that take longest on 2 cores (wall seconds in a whole run, measured: `pytest --durations`
# summed per file), started first: pytest-xdist hands whole files to whichever worker is free
# (--dist loadfile, --no-loadscope-reorder in pyproject), and a long file handed out last kept one
# core busy alone for the last ~15 s of the run. The rest follow, those with more tests first.
LONGEST_FIRST = ("test_distributed.py", "test_sweep.py", "test_examples.py", "test_received_runs.py", "test_interrupt.py",
                 "test_fuzz_config.py", "test_sweep_storage.py", "test_hardening.py", "test_sequence_models.py",
                 "test_gpu_benchmark.py", "test_predict.py")


def pytest_collection_modifyitems(items):
    tests_in = Counter(item.path.name for item in items)

    def rank(item) -> tuple[int, int]:  # the rest by their number of tests, as pytest-xdist's own reordering would
        name = item.path.name
        return (LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST), -tests_in[name])

    items.sort(key=rank)  # (stable: each file's tests keep their order)


def pytest_collection_finish(session):
    if session.items:
        for name in WARM_IMPORTS:
            importlib.import_module(name)


@pytest.fixture(scope="module")
def module_cache_directory(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("xdg-cache-module"))


@pytest.fixture(scope="module", autouse=True)
def module_cache_for_module_fixtures(request):
    """A `module_cache` module's own module fixtures (the runs they train) see its cache directory
    too (a module-scoped autouse fixture comes before them): the fork server one of them starts then
    serves the module's tests, where it was started again at the first test."""
    if request.node.get_closest_marker("module_cache") is None:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", request.getfixturevalue("module_cache_directory"))
        yield


@pytest.fixture(autouse=True)
def own_cache_directory(request, tmp_path_factory, monkeypatch):
    """Each test its own cache directory (the dl processes it starts inherit it): a folder decoded
    by one test is never read from another's cache. A module marked `module_cache` has one for all
    its tests: the environment then stays as it was, and dl's fork server (which starts again when
    the environment changes: dlcli.system.fork_server) serves every run of the module on several
    processes instead of importing torch again for each test's (~6 CPU seconds each)."""
    if request.node.get_closest_marker("module_cache") is not None:
        monkeypatch.setenv("XDG_CACHE_HOME", request.getfixturevalue("module_cache_directory"))
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


@pytest.fixture(autouse=True)
def environment_as_it_was():
    """Whatever a test (or the dl code it runs in this process) sets in os.environ is undone when
    it ends: a variable left behind reached every later test of the worker and every process they
    started, so a test passed or failed by the order xdist gave it (PYTHONSAFEPATH, left set, made
    `python benchmarks/epoch_growth.py` lose the modules beside it)."""
    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


# Each run's pictures are drawn by a process of its own (~1 s of CPU each); only the tests that look at
# pictures (the `pictures` marker) pay for that on these 2-core machines. Off from the start, so
# that the runs a module's fixture trains before any test (the examples' finished runs) draw none either.
dlcli.tracking.plots.drawing_enabled = False


@pytest.fixture(autouse=True)
def background_pictures_where_looked_at(request, monkeypatch):
    if request.node.get_closest_marker("pictures") is not None:
        monkeypatch.setattr(dlcli.tracking.plots, "drawing_enabled", True)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in an empty directory, as a user would, so runs/ lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def quiet_reporter():
    from dlcli.engine.progress import Reporter  # (here: the pytest that hands files to xdist's workers never imports torch)

    return Reporter(Console(file=io.StringIO()), show_progress=False)


def assert_resumes_exactly(overrides: list[str], columns: tuple[str, ...] = ("epoch", "lr", "train_loss", "val_loss")) -> None:
    """A run stopped by Ctrl-C after epoch 2 and resumed ends with the metrics.csv `columns` and the
    test numbers of the same run trained without a stop."""
    from user_code import CtrlCAt  # a test module of callbacks, importable once tests/ is on the path

    from dlcli.run.dispatch import train  # (here: the pytest that hands files to xdist's workers never imports torch)
    from dlcli.run.request import RunRequest

    def rows(run_dir: Path) -> list[list[str]]:
        return [[row[k] for k in columns] for row in csv.DictReader((run_dir / "metrics.csv").open())]

    reference = train(RunRequest(compose([*overrides, "name=reference"]), [], quiet_reporter()))
    stopped = train(RunRequest(compose(overrides), [], quiet_reporter(), callbacks=[CtrlCAt(epoch=2)]))
    assert stopped.status == "interrupted"
    resumed = train(RunRequest(compose([f"resume={stopped.run_dir}"]), [f"resume={stopped.run_dir}"], quiet_reporter()))
    assert resumed.status == "completed"
    assert rows(resumed.run_dir) == rows(reference.run_dir)
    assert resumed.summary["test"] == reference.summary["test"]


class DlRunner(CliRunner):
    """Typer's CliRunner, with dl's Click command built once per test process: Typer's own builds
    the whole command tree again (every command's signature read) at each invoke, ~8 ms of CPU,
    and the suite runs dl in this process a few thousand times. A Click command is made to be
    invoked many times (a long-lived program's is)."""

    def invoke(self, typer_app, args=None, **extra):
        with _built_once():
            return super().invoke(typer_app, args, **extra)


@functools.cache
def _command_of(typer_app):
    return typer.main.get_command(typer_app)


@contextlib.contextmanager
def _built_once():
    building = typer.testing._get_command  # what Typer's CliRunner.invoke calls to build the command
    typer.testing._get_command = _command_of
    try:
        yield
    finally:
        typer.testing._get_command = building


def run_cli(*args: str):
    """`dl ARGS` in this process, its arguments read as `dl`'s entry point reads them (a bare
    --install-completion means $SHELL's)."""
    return DlRunner().invoke(app, with_shell_named(args))


def assert_cli_runs_without_torch(*args: str, exit_code: int = 0) -> None:
    """Run `dl ARGS` in a fresh interpreter and check torch was never imported (instant answers)."""
    import subprocess
    import sys

    code = (
        "import sys; from dlcli.cli import app; from typer.testing import CliRunner; "
        f"r = CliRunner().invoke(app, {list(args)!r}); assert r.exit_code == {exit_code}, r.output; "
        "assert 'torch' not in sys.modules, 'torch was imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def only_run(root: Path, name: str = "train") -> Path:
    runs = sorted((root / "runs" / name).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def fast():
    """A few epochs on digits: enough to exercise everything, quick on 2 cores."""

    def make(*overrides: str):
        return compose(["trainer.epochs=3", "trainer.progress=false", *overrides])

    return make


def wait_for_file(path: Path, timeout: float = 60.0) -> bool:
    """True once `path` exists (written by another process, such as the picture drawer)."""
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the whole session (pgserver ships its binaries in a wheel). Its
    folder is one the server's own user can reach: run as root, pgserver starts PostgreSQL as
    another user, who cannot enter pytest's private temporary folders."""
    pgserver = pytest.importorskip("pgserver", reason="pgserver (dev extra) is not installed: no PostgreSQL server to test against")
    folder = Path(tempfile.mkdtemp(prefix="dl-pg-"))
    folder.chmod(0o755)
    try:
        server = pgserver.get_server(folder / "data", cleanup_mode="stop")
    except Exception as exc:  # a platform where its binaries cannot run
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"no PostgreSQL server can run here: {first_line(exc)}")
    yield server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


def new_database(server, password: str = "") -> str:
    """A fresh database in `server` (the postgres fixture's); the URL that reaches it over the
    server's Unix socket (pgserver trusts local connections: any password logs in)."""
    name = f"t{uuid.uuid4().hex[:12]}"
    server.psql(f"CREATE DATABASE {name};")
    socket_dir = server.get_uri().split("host=")[1]
    return f"postgresql://postgres{':' + password if password else ''}@/{name}?host={socket_dir}"
