"""dl's fork server (dlcli.system.fork_server): the workers of a multi-process run fork from one
interpreter that has imported what they need. What a worker must still see as a spawned one would
(the environment of now, the stop signals its launcher ignores), and that the server ends with the
process that started it. The runs themselves are in test_distributed.py and test_interrupt.py."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_cli
from forked_dl import start_dl
from dlcli.system import fork_server, interrupts

LIGHT = ("json",)  # a server that imports next to nothing: these tests are about the server, not dl's imports


def forked_value(name: str) -> str | None:
    """The environment variable's value in a process forked from the server now."""
    with multiprocessing.get_context("forkserver").Pool(1) as pool:
        return pool.apply(os.getenv, (name,))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"


def test_the_start_method_is_the_fork_server_on_linux_unless_spawn_is_asked_for(monkeypatch):
    monkeypatch.delenv("DL_START_METHOD", raising=False)
    assert fork_server.start_method() == ("forkserver" if sys.platform.startswith("linux") else "spawn")
    monkeypatch.setenv("DL_START_METHOD", "spawn")
    assert fork_server.start_method() == "spawn"


def test_a_start_method_dl_does_not_know_is_one_line_before_anything_is_written(workdir, monkeypatch):
    monkeypatch.setenv("DL_START_METHOD", "fork")
    result = run_cli("train", "trainer.devices=2", "trainer.device=cpu")
    assert result.exit_code == 2 and result.stderr.strip() == (
        "error: DL_START_METHOD=fork: give spawn or forkserver (or leave it unset: forkserver where it can run)"), result.output
    assert not (workdir / "runs").exists()


def test_a_worker_takes_the_stop_signals_its_launcher_had_not_the_servers():
    before = {signum: signal.getsignal(signum) for signum in interrupts.STOP_SIGNALS}
    try:
        for signum in interrupts.STOP_SIGNALS:  # a launcher's handlers, or the server's stance
            signal.signal(signum, signal.SIG_IGN)
        interrupts.stop_signals_as_launched([signal.SIGHUP])  # its launcher ran under nohup
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL and signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


@pytest.mark.slow  # starts processes
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server runs on Linux")
def test_a_server_started_before_the_environment_changed_is_started_again(monkeypatch):
    monkeypatch.setenv("DL_FORK_SERVER_TEST", "before")
    fork_server.ready_server(LIGHT)
    first = fork_server.server_pid()
    assert forked_value("DL_FORK_SERVER_TEST") == "before"
    fork_server.ready_server(LIGHT)
    assert fork_server.server_pid() == first  # nothing changed: the same server, its imports done
    monkeypatch.setenv("DL_FORK_SERVER_TEST", "after")
    fork_server.ready_server(LIGHT)
    assert fork_server.server_pid() != first and not alive(first)  # the old one ended
    assert forked_value("DL_FORK_SERVER_TEST") == "after"  # as a spawned worker would see it


@pytest.mark.slow  # starts processes
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server runs on Linux")
def test_a_forked_child_starts_a_server_of_its_own():
    """A sweep's pool worker forked from a process with a server must not use (or keep alive) its
    parent's: it would wait on a process that is not its child."""
    fork_server.ready_server(LIGHT)
    parents = fork_server.server_pid()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            fork_server.ready_server(LIGHT)
            code = 0 if fork_server.server_pid() not in (None, parents) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert fork_server.server_pid() == parents and alive(parents)


# a process that starts a server, waits until it has forked one process (its guard and imports are
# done: it forks only then), says the server's pid and waits to be killed
SERVER = """
import multiprocessing, os, time
from dlcli.system import fork_server
fork_server.ready_server(("json",))
forked = multiprocessing.get_context("forkserver").Process(target=os.getpid)
forked.start()
forked.join()
print(fork_server.server_pid(), flush=True)
time.sleep(60)
"""


@pytest.mark.slow  # starts processes
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server runs on Linux")
def test_the_server_starts_under_a_temporary_folder_too_long_for_its_socket(tmp_path):
    """The server listens on a Unix socket under TMPDIR (108 bytes at most for its path): a cluster
    job's long scratch folder made every multi-process run fail with `AF_UNIX path too long`."""
    long = tmp_path / ("x" * (100 - len(str(tmp_path))))
    long.mkdir()
    script = SERVER.replace("time.sleep(60)", "")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TMPDIR": str(long)})
    assert done.returncode == 0 and "AF_UNIX" not in done.stderr, done.stderr
    assert int(done.stdout)  # the server's pid: it started and forked a process


@pytest.mark.slow  # starts processes
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server runs on Linux")
def test_the_server_ignores_stop_signals_and_ends_with_the_process_that_started_it():
    starter = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        server = int(starter.stdout.readline())
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # a stop to the whole group is the starter's to act on
            os.kill(server, getattr(signal, name))
        time.sleep(0.5)
        assert alive(server)
        starter.kill()  # SIGKILL: no clean-up in the starter at all
        starter.wait()
        deadline = time.monotonic() + 10
        while alive(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(server)
    finally:
        starter.kill()


@pytest.mark.slow  # starts processes
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server runs on Linux")
def test_a_sweep_with_several_threads_per_trial_forks_its_workers_from_the_server_and_they_die_with_it(tmp_path):
    """--threads 2: forking the sweep itself is not safe (OpenMP), so the pool's workers fork from
    the fork server. SIGKILL to the sweep: the server and every worker end with it."""
    command = ["sweep", "grid", "data=wine", "optim.lr=0.1,0.01,0.001", "trainer.epochs=400", "trainer.plots=false", "--jobs", "2",
               "--threads", "2", "-q"]
    sweep = start_dl(command, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while len(list(tmp_path.glob("runs/sweeps/sweep/*/trials/*/metrics.csv"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        servers = [pid for pid in session(sweep.pid) if parent(pid) == sweep.pid and b"forkserver" in command_of(pid)]
        assert len(servers) == 1 and len([pid for pid in session(sweep.pid) if parent(pid) == servers[0]]) == 2
        sweep.kill()
        sweep.wait()
        deadline = time.monotonic() + 10
        while session(sweep.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not session(sweep.pid), "a process of the sweep outlived it"
    finally:
        sweep.kill()


def session(leader: int) -> list[int]:
    """The live processes of the session `leader` started."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == leader and fields[0] != "Z":
                found.append(int(entry))
    return found


def parent(pid: int) -> int | None:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def command_of(pid: int) -> bytes:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return b""
