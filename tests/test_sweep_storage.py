"""Sweeps whose study is in a database server (`--storage URL`, `dl sweep join`, `dl sweep report`,
`dl runs URL --study`), against a real PostgreSQL server the suite starts itself (pgserver, a
package of the dev extra), one database per test. The worker processes are few: each scenario
starts one or two `dl sweep join` processes, runs one more worker in this process, and checks
everything it promises on the one outcome."""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from conftest import new_database, run_cli
from forked_dl import start_dl
from dlcli.errors import UserError
from dlcli.sweep import SweepPlan, SweepSettings, sweep
from dlcli.sweep.run import plan_space
from dlcli.sweep.shared import WHERE_ATTR, start_study
from dlcli.sweep.storage import PASSWORD_VARIABLE, masked, open_storage, without_password

PASSWORD = "pw-never-shown-1234"  # pgserver trusts local connections: any password logs in, and none may be shown
IRIS = ["data=iris", "trainer.epochs=1"]


@pytest.fixture
def database(postgres, monkeypatch, tmp_path):
    """A fresh database in the session's server; the URL (with a password) to reach it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(PASSWORD_VARIABLE, "")  # restored when the test ends: a URL's password moves there
    return new_database(postgres, PASSWORD)


def _start(url: str, name: str, kind: str, overrides: list[str], trials=None, heartbeat: int = 1, **settings):
    """The study and its budget, as `dl sweep KIND --storage` makes them before its own worker starts."""
    chosen = SweepSettings(kind, overrides, trials=trials, metric="val_accuracy", mode="max", **settings)
    space, planned = plan_space(chosen, [])
    start_study(without_password(url), name, chosen, space, planned, None, heartbeat)
    return planned


def _join(url: str, name: str, cwd: Path) -> subprocess.Popen:
    """The worker command of the cluster recipe (a SLURM array task, an ssh loop)."""
    return start_dl(["sweep", "join", url, "--study", name, "--quiet"], cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    text=True)


def _worker_here(url: str, name: str):
    """One more worker, in this process."""
    return sweep(SweepSettings("grid", []), SweepPlan(storage=url, name=name, joining=True), log=lambda line: None)


def _trials(url: str, name: str):
    return optuna.load_study(study_name=name, storage=open_storage(without_password(url), None)).get_trials(deepcopy=False)


def _pid(trial) -> int | None:
    """The worker process that took the trial (its last try's)."""
    return (trial.user_attrs.get(WHERE_ATTR) or {}).get("pid")


def _wait_for(check, seconds: float = 90.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


def _no_password_under(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_urls_are_shown_and_kept_without_their_password(monkeypatch):
    monkeypatch.setenv(PASSWORD_VARIABLE, "")  # restored when the test ends: a URL's password moves there
    url = "postgresql://me:secret@db.example:5432/sweeps"
    assert masked(url) == "postgresql://me:***@db.example:5432/sweeps"
    assert without_password(url) == "postgresql+psycopg://me@db.example:5432/sweeps"
    assert os.environ[PASSWORD_VARIABLE] == "secret"  # where the workers this process starts find it
    with pytest.raises(UserError, match="not a database URL"):
        without_password("postgresql://me:secret@db:notaport/x")


def test_refusals_say_one_line_and_create_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(PASSWORD_VARIABLE, "")
    sqlite = run_cli("sweep", "grid", *IRIS, "optim.lr=0.1,0.01", "--storage", "sqlite:///study.db", "--jobs", "2")
    assert sqlite.exit_code == 2
    assert "SQLite allows one writer at a time" in sqlite.output and "PostgreSQL" in sqlite.output
    unreachable = run_cli("sweep", "grid", *IRIS, "optim.lr=0.1,0.01", "--storage", f"postgresql://me:{PASSWORD}@127.0.0.1:9/x")
    assert unreachable.exit_code == 2, unreachable.output
    assert unreachable.output.startswith("error: could not reach the study's database postgresql+psycopg://me@127.0.0.1:9/x")
    assert len(unreachable.output.strip().splitlines()) == 1 and PASSWORD not in unreachable.output
    ray = run_cli("sweep", "grid", *IRIS, "optim.lr=0.1,0.01", "--storage", "postgresql://me@h/x", "--backend", "ray")
    assert ray.exit_code == 2 and "dl sweep join" in ray.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "study.db").exists()


def test_a_password_with_an_unescaped_at_sign_is_refused_without_showing_any_of_it(tmp_path, monkeypatch):
    """SQLAlchemy splits user:pass@word@host at the first '@' and takes the rest of the password
    for the user name, which the error then printed: such a URL is refused, its credentials hidden."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(PASSWORD_VARIABLE, "")
    url = "postgresql://dl:p@ssSECRETw0rd@127.0.0.1:9/x"
    assert masked(url) == "postgresql://***@127.0.0.1:9/x"
    for command in (("sweep", "grid", *IRIS, "optim.lr=0.1,0.01", "--storage", url), ("runs", url, "--study", "s"),
                    ("sweep", "join", url, "--study", "s")):
        result = run_cli(*command)
        assert result.exit_code == 2 and "%40" in result.output and "SECRET" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # trains a sweep to resume
def test_commands_that_read_a_study_create_no_database_and_a_resume_keeps_its_storage(tmp_path, monkeypatch):
    """join, report and dl runs --study only read: pointed at a database without the study (a
    relative sqlite:/// path from another folder), they create no file. A journal sweep resumed
    with --storage is refused: it was copied into the database and its finished trials ran again."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(PASSWORD_VARIABLE, "")
    for command in (("sweep", "join", "sqlite:///study.db", "--study", "s"), ("sweep", "report", "sqlite:///study.db", "--study", "s"),
                    ("runs", "sqlite:///study.db", "--study", "s")):
        result = run_cli(*command)
        assert result.exit_code == 2 and "no such study in sqlite:///study.db" in result.output, (command, result.output)
    assert list(tmp_path.iterdir()) == []
    done = run_cli("sweep", "grid", *IRIS, "optim.lr=0.1,0.01", "trainer.plots=false", "-q")
    assert done.exit_code == 0, done.output
    sweep_dir, = (tmp_path / "runs" / "sweeps" / "sweep").iterdir()
    before = {path: path.stat().st_mtime_ns for path in sweep_dir.rglob("*")}
    resumed = run_cli("sweep", "grid", "--resume", str(sweep_dir), "--storage", f"sqlite:///{tmp_path}/moved.db")
    assert resumed.exit_code == 2 and "keeps its study in" in resumed.output and "resume without --storage" in resumed.output
    assert {path: path.stat().st_mtime_ns for path in sweep_dir.rglob("*")} == before and not (tmp_path / "moved.db").exists()


@pytest.mark.slow
def test_three_workers_share_a_grid_and_a_killed_workers_trial_runs_once_more(database, tmp_path):
    planned = _start(database, "grid", "grid", [*IRIS, "optim.lr=0.3,0.1,0.03", "model.hidden=[8],[16]"])
    killed, other = _join(database, "grid", tmp_path), _join(database, "grid", tmp_path)
    try:
        def running_in_killed():
            return next((t for t in _trials(database, "grid") if t.state.name == "RUNNING" and _pid(t) == killed.pid), None)
        victim = _wait_for(running_in_killed)
        killed.send_signal(signal.SIGKILL)  # mid-trial
        # (the other takes what is left, or the killed trial's retry once it goes stale)
        _wait_for(lambda: any(_pid(t) == other.pid for t in _trials(database, "grid")))
        here = _worker_here(database, "grid")  # a third worker: it waits while a trial runs (it may be retried), then reports
        output = other.communicate(timeout=120)[0]
    finally:
        for process in (killed, other):
            process.kill()
    assert killed.wait() == -signal.SIGKILL and other.returncode == 0, output
    trials = _trials(database, "grid")
    numbers = [t.user_attrs["dl_number"] for t in trials if t.state.name == "COMPLETE"]
    assert sorted(numbers) == list(range(planned))  # every grid point ran to completion exactly once
    victim_tries = [t for t in trials if t.user_attrs["dl_number"] == victim.user_attrs["dl_number"]]
    assert [t.state.name for t in victim_tries] == ["FAIL", "COMPLETE"]  # failed by its heartbeat, retried once
    assert victim_tries[1].system_attrs["failed_trial"] == victim.number and victim_tries[1].params == victim.params
    assert not [t for t in trials if t.state.name in ("WAITING", "RUNNING")]
    assert {killed.pid, other.pid} <= {_pid(t) for t in trials}
    for trial in trials:  # the study says where each trial ran; the completed ones' directories are whole
        where = trial.user_attrs[WHERE_ATTR]
        assert where["host"] and where["run_dir"].startswith(str(tmp_path / "runs" / "sweeps" / "grid"))
        if trial.state.name == "COMPLETE":
            assert '"status": "completed"' in (Path(where["run_dir"]) / "summary.json").read_text()
    assert len(here.table) == planned and set(here.table["status"]) == {"completed"}  # the worker's report is the whole study
    assert PASSWORD not in output

    sweeps = sorted((tmp_path / "runs" / "sweeps" / "grid").iterdir())
    again = run_cli("sweep", "join", database, "--study", "grid", "--json")  # after completion: nothing runs, nothing is made
    assert again.exit_code == 0 and "has no trial left to run" in again.output, again.output
    assert len(_trials(database, "grid")) == len(trials) and sorted((tmp_path / "runs" / "sweeps" / "grid").iterdir()) == sweeps
    report = run_cli("sweep", "report", database, "--study", "grid", "--quiet")
    assert report.exit_code == 0, report.output
    results = pd.read_csv(tmp_path / "runs" / "sweeps" / "grid" / "report" / "results.csv")
    assert sorted(results["number"]) == list(range(planned)) and set(results["status"]) == {"completed"}
    assert (tmp_path / "runs" / "sweeps" / "grid" / "report" / "best.yaml").is_file()
    listed = run_cli("runs", database, "--study", "grid", "--json")
    assert listed.exit_code == 0 and len(json.loads(listed.output)) == planned
    shown = run_cli("runs", database, "--study", "grid")
    assert "postgres:***@" in shown.output
    for said in (again.output, report.output, listed.output, shown.output):
        assert PASSWORD not in said
    _no_password_under(tmp_path / "runs")


@pytest.mark.slow
def test_tpe_workers_learn_from_each_others_trials_and_prune_across_them(database, tmp_path):
    # trials of 30 epochs: the other worker must not have run the whole budget before this one starts
    _start(database, "tpe", "tpe", ["data=iris", "trainer.epochs=30", "optim.lr=tag(log,interval(1e-3,1))"], trials=4,
           prune="median", prune_startup=1)
    other = _join(database, "tpe", tmp_path)
    try:  # this process's worker starts once the other has finished a trial: it must draw from a study that holds it
        _wait_for(lambda: any(_pid(t) == other.pid and t.state.name == "COMPLETE" for t in _trials(database, "tpe")))
        _worker_here(database, "tpe")
        output = other.communicate(timeout=120)[0]
    finally:
        other.kill()
    assert other.returncode == 0, output
    trials = sorted(_trials(database, "tpe"), key=lambda t: t.datetime_start)
    assert len(trials) == 4 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    workers = {_pid(t) for t in trials}
    assert workers == {other.pid, os.getpid()}
    # this worker's trials were drawn after the other's first had finished, by a sampler reading the study that holds it
    first_done = min(t.datetime_complete for t in trials if _pid(t) == other.pid)
    here = [t for t in trials if _pid(t) == os.getpid()]
    assert here and all(t.datetime_start > first_done for t in here)
    assert all(t.intermediate_values for t in trials)  # each worker's epochs reached the study the pruner reads


@pytest.mark.slow
def test_a_worker_that_loses_the_database_says_so_and_running_it_again_carries_on(database, postgres, tmp_path):
    planned = _start(database, "lost", "grid", [*IRIS, "optim.lr=0.3,0.1"])
    name = database.split("/")[3].split("?")[0]

    def cut_off():  # once the worker runs a trial, the server lets no one into its database
        _wait_for(lambda: any(t.state.name == "RUNNING" for t in _trials(database, "lost")), seconds=60)
        postgres.psql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false; "
                      f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';")
    cutter = threading.Thread(target=cut_off)
    cutter.start()
    lost = run_cli("sweep", "join", database, "--study", "lost")
    cutter.join()
    assert lost.exit_code == 2, lost.output
    said = lost.output.strip().splitlines()[-1]
    assert said.startswith("error: could not keep in touch with the study's database postgresql+psycopg://postgres@/"), said
    assert "run the same command again" in said
    assert PASSWORD not in lost.output

    postgres.psql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true;")
    again = run_cli("sweep", "join", database, "--study", "lost", "--quiet")  # the same command: the trial it lost runs again
    assert again.exit_code == 0, again.output
    trials = _trials(database, "lost")
    assert sorted(t.user_attrs["dl_number"] for t in trials if t.state.name == "COMPLETE") == list(range(planned))
    assert not [t for t in trials if t.state.name in ("WAITING", "RUNNING")]
