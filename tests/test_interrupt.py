"""Stopping a real `dl` process by a signal, however it arrives: metrics flushed, last.pt kept,
status interrupted with a whole summary, resumable, and no process of it left behind.

The table `STOPS` is every way a stop reaches a run (Ctrl-C, SIGTERM, SIGHUP; to the process the
user started, to one worker of a multi-process run, twice); `SWEEP_KILLS` the ways a sweep with a
pool of workers dies. Each row starts real processes, so the runs are tiny (data=wine); what only reads the stopped run
afterwards (the resume, `dl runs`) runs in this process: a process of its own is not what it tests."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli, wait_for_file
from forked_dl import start_dl

TWO = ["trainer.devices=2", "trainer.device=cpu"]


def session_processes(session: int) -> list[int]:
    """Live processes of a session (what a test started with start_new_session, and all they started)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":  # Z: ended, not yet reaped
                alive.append(int(entry.name))
    return alive


def children_of(pid: int) -> list[int]:
    """The processes `pid` started to work for it: its children, or the children of the fork server
    it started (dlcli.system.fork_server); multiprocessing's resource tracker and the server are not."""
    children = [p for p in session_processes(pid) if _parent(p) == pid and b"resource_tracker" not in _cmdline(p)]
    servers = [p for p in children if b"multiprocessing.forkserver" in _cmdline(p)]
    forked = [p for p in session_processes(pid) if _parent(p) in servers]
    return sorted([p for p in children if p not in servers] + forked)


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def gone_within(session: int, seconds: float) -> list[int]:
    """The session's processes still alive after `seconds` (none, when everything ended)."""
    deadline = time.monotonic() + seconds
    while session_processes(session) and time.monotonic() < deadline:
        time.sleep(0.1)
    return session_processes(session)


def start(args: list[str], cwd: Path):
    """`dl ARGS` as a program would start it: SIGINT left at its default, in a session of its own
    (so that every process it starts can be found, and a signal to it is not a terminal's)."""
    err = open(cwd / "stderr.txt", "w")  # a file, not a pipe: a process left behind would hold a pipe open
    return start_dl(args, cwd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def wait_for_rows(pattern: str, cwd: Path, rows: int, timeout: float = 180) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = sorted(cwd.glob(pattern))
        if len(found) >= 1 and all(len(f.read_text().splitlines()) > rows for f in found):
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no {pattern} with {rows} rows within {timeout} s: {(cwd / 'stderr.txt').read_text()}")


@pytest.mark.slow
def test_sigint_marks_the_run_interrupted_and_resume_finishes_it(tmp_path, monkeypatch):
    process = start_dl(["train", "trainer.epochs=60", "--quiet"], tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    metrics = None
    while time.time() < deadline:  # wait until a few epochs are on disk
        found = list(tmp_path.glob("runs/train/*/metrics.csv"))
        if found and len(found[0].read_text().splitlines()) > 3:
            metrics = found[0]
            break
        time.sleep(0.2)
    assert metrics is not None, "training never wrote metrics"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    run = metrics.parent
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "resume=" in summary["message"]
    completed = summary["epochs_completed"]
    assert len((run / "metrics.csv").read_text().splitlines()) == completed + 1
    assert (run / "checkpoints" / "last.pt").exists() and wait_for_file(run / "curves.png")
    monkeypatch.chdir(tmp_path)  # the resume runs in this process: only the Ctrl-C needs a process of its own
    resumed = run_cli("train", f"resume={run}", "--json")
    assert resumed.exit_code == 0, resumed.output
    final = json.loads(resumed.stdout)
    assert final["status"] == "completed" and final["epochs_completed"] == 60
    assert len(Path(tmp_path, run, "metrics.csv").read_text().splitlines()) == 61


# (processes, who gets the signal, the signals in order, every finished epoch kept?)
# A first stop signal finishes the epoch in progress (on every rank) and keeps it; a second stops at
# once, keeping what last.pt holds (trainer.checkpoint_every=0 below: every epoch).
STOPS = [
    pytest.param([], "parent", ["SIGTERM"], id="one process, SIGTERM (kill PID, a supervisor, preemption)"),
    pytest.param([], "parent", ["SIGHUP"], id="one process, SIGHUP (the terminal closed)"),
    pytest.param(TWO, "parent", ["SIGINT"], id="two processes, SIGINT to the launching process only"),
    pytest.param(TWO, "parent", ["SIGTERM"], id="two processes, SIGTERM to the launching process"),
    pytest.param(TWO, "worker", ["SIGHUP"], id="two processes, SIGHUP to one worker"),
    pytest.param(TWO, "parent", ["SIGINT", "SIGINT"], id="two processes, SIGINT twice to the launching process"),
]


@pytest.mark.slow
@pytest.mark.parametrize("devices, whom, signals", STOPS)
def test_a_stop_signal_however_it_arrives_stops_the_run_as_ctrl_c_does(tmp_path, monkeypatch, devices, whom, signals):
    process = start(["train", "data=wine", "trainer.epochs=2000", "trainer.plots=false", "trainer.checkpoint_every=0",
                     *devices, "-q"], tmp_path)
    metrics = wait_for_rows("runs/train/*/metrics.csv", tmp_path, 3)
    seen = len(metrics.read_text().splitlines()) - 1
    target = process.pid if whom == "parent" else children_of(process.pid)[-1]
    for name in signals:
        os.kill(target, getattr(signal, name))
        time.sleep(0.2)
    process.wait(timeout=120)
    err = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Fatal Python error" not in err
    assert not gone_within(process.pid, 10), "a process of the run was left running"
    summary = json.loads((metrics.parent / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "resume=" in summary["message"]
    rows = len(metrics.read_text().splitlines()) - 1
    assert summary["epochs_completed"] == rows >= seen  # every epoch that had finished is kept
    assert summary["wall_seconds"] > 0 and summary["finished_at"]
    monkeypatch.chdir(tmp_path)  # `dl runs` reads the stopped run from this process
    listed = run_cli("runs", "runs/train", "--json")
    assert json.loads(listed.stdout)[0]["epochs"] == rows, listed.output


@pytest.mark.slow
def test_a_killed_worker_is_one_failed_line_that_names_it(tmp_path):
    """SIGKILL to rank 1: rank 0 and the launcher stop, stderr is the one `failed:` line naming the
    rank that ended and how (not the broken connection rank 0 saw, nor a native crash dump from a
    process being torn down), and the run is resumable."""
    process = start(["train", "data=wine", "trainer.epochs=2000", "trainer.plots=false", *TWO, "-q"], tmp_path)
    metrics = wait_for_rows("runs/train/*/metrics.csv", tmp_path, 3)
    rank_1 = sorted(children_of(process.pid))[-1]  # the launcher starts rank 0 first
    os.kill(rank_1, signal.SIGKILL)
    process.wait(timeout=120)
    err = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == 1, err
    assert not gone_within(process.pid, 10), "a process of the run was left running"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("failed: worker rank 1 ended (signal SIGKILL)"), err
    summary = json.loads((metrics.parent / "summary.json").read_text())
    assert summary["status"] == "failed" and "resume=" in summary["message"] and summary["epochs_completed"] >= 1


SWEEP_KILLS = [
    pytest.param("SIGKILL", id="SIGKILL: the workers die with the sweep"),
    pytest.param("SIGTERM", id="SIGTERM: the sweep stops its workers, as on Ctrl-C"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name", SWEEP_KILLS)
def test_a_killed_sweep_leaves_no_worker_and_resumes(tmp_path, monkeypatch, name):
    """Killed under --jobs 2, a sweep's pool workers end with it (no orphan training on, holding the
    sweep's lock), and --resume then finishes the sweep without waiting for any lock."""
    # 150 wine epochs: a trial trains for about a second, long after the kill (checked below),
    # and the resume that trains the trials again stays short
    process = start(["sweep", "grid", "data=wine", "optim.lr=0.1,0.01,0.001", "trainer.epochs=150", "trainer.plots=false",
                     "--jobs", "2", "-q"], tmp_path)
    wait_for_rows("runs/sweeps/sweep/*/trials/*/metrics.csv", tmp_path, 2)
    assert len(children_of(process.pid)) == 2  # the pool's two workers
    os.kill(process.pid, getattr(signal, name))
    process.wait(timeout=120)
    assert not gone_within(process.pid, 5), "a sweep worker outlived the sweep"
    sweep_dir, = (tmp_path / "runs" / "sweeps" / "sweep").iterdir()
    summaries = [trial / "summary.json" for trial in (sweep_dir / "trials").iterdir()]
    cut = [s for s in summaries if not s.exists() or json.loads(s.read_text())["status"] != "completed"]
    assert cut, "every trial had finished before the kill: no worker was training when the sweep died"
    monkeypatch.chdir(tmp_path)  # the resume runs in this process (its pool's workers are forked from it)
    resumed = run_cli("sweep", "grid", "--resume", str(sweep_dir), "-q")
    assert resumed.exit_code == 0, resumed.output
    assert "lock" not in resumed.stderr  # neither dl's (the sweep's) nor Optuna's (its journal's)
    assert json.loads((sweep_dir / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_sigterm_to_a_parallel_sweeps_whole_group_keeps_each_running_trials_epochs(tmp_path):
    """A scheduler's preemption or a supervisor sends SIGTERM to every process of the group: each
    pool worker's running trial then finishes its epoch and ends interrupted with its checkpoints,
    as on Ctrl-C (it used to die at once, its summary left at "running", best.pt never written)."""
    process = start(["sweep", "grid", "data=wine", "optim.lr=0.1,0.01,0.001", "trainer.epochs=2000", "trainer.plots=false",
                     "trainer.checkpoint_every=0", "--jobs", "2", "-q"], tmp_path)
    deadline = time.time() + 180
    while time.time() < deadline:  # both trials training, each past its second epoch
        found = list(tmp_path.glob("runs/sweeps/sweep/*/trials/*/metrics.csv"))
        if len(found) == 2 and all(len(f.read_text().splitlines()) > 2 for f in found):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"two trials never trained two epochs: {(tmp_path / 'stderr.txt').read_text()}")
    os.killpg(process.pid, signal.SIGTERM)  # the sweep and both workers (start() gave it a session, so a group, of its own)
    process.wait(timeout=120)
    err = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == 130 and "Traceback" not in err, err
    assert not gone_within(process.pid, 10), "a sweep worker outlived the sweep"
    for metrics in tmp_path.glob("runs/sweeps/sweep/*/trials/*/metrics.csv"):
        summary = json.loads((metrics.parent / "summary.json").read_text())
        rows = len(metrics.read_text().splitlines()) - 1
        assert summary["status"] == "interrupted" and summary["epochs_completed"] == rows >= 2, (metrics, summary, err)
        assert (metrics.parent / "checkpoints" / "best.pt").is_file()


def test_a_run_lock_is_not_held_by_the_children_a_process_forks(tmp_path):
    """A lock belongs to the open file, which a forked child shares: a child that outlived its
    killed parent kept the lock, and a resume was refused in the dead parent's name. The child's
    copy is closed at once, and the parent's lock holds for as long as the parent does."""
    from dlcli.rundir.lock import RunLock, is_training

    lock = RunLock(tmp_path).acquire()
    started, ready = os.pipe()
    child = os.fork()
    if child == 0:  # the child: lives on after the parent lets go, as an orphaned worker did
        os.write(ready, b"1")  # (fork has returned here: what happens to the lock at fork is done)
        time.sleep(5)
        os._exit(0)
    os.read(started, 1)
    try:
        assert is_training(tmp_path)  # the parent still holds it, whatever the child did with its copy
        lock.release()  # the parent ends (its lock goes with it); the child lives on
        assert not is_training(tmp_path)
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


@pytest.mark.slow  # starts a process
def test_a_worker_asked_to_die_with_a_parent_that_is_already_gone_dies(tmp_path):
    """The parent may end before the child asks to be told: the child looks once more after asking."""
    code = "import os, sys, time; from dlcli.system.processes import die_with_parent; die_with_parent(int(sys.argv[1])); time.sleep(30)"
    done = subprocess.run([sys.executable, "-c", code, str(os.getpid() + 10**6)], timeout=20)  # not its parent
    assert done.returncode == -signal.SIGKILL
