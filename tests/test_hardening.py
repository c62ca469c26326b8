"""Interruptions, concurrency, hostile run directories and bugs in a user's code: each case was
found by trying `dl` the way a careless or hostile user would."""

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import only_run, quiet_reporter, read, run_cli
from forked_dl import start_dl
from dlcli.config.compose import compose
from dlcli.errors import UserError
from dlcli.experiment import build_experiment
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest

TESTS = Path(__file__).parent
USER_CODE_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


def dl(*args, cwd, **options):
    return start_dl(args, cwd, env=USER_CODE_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **options)


def wait_until(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- interruptions and concurrency -------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("whom", ["the terminal's process group", "the sweep process only"])
def test_ctrl_c_on_a_parallel_sweep_starts_nothing_new_and_its_files_match_its_trials(tmp_path, whom):
    sweep = dl("sweep", "grid", "optim.lr=0.3,0.1,0.03,0.01", "model.hidden=[64],[128]", "--jobs", "2", "trainer.epochs=40",
               "trainer.plots=false", cwd=tmp_path, start_new_session=True)
    results = lambda: list(tmp_path.glob("runs/sweeps/sweep/*/results.csv"))
    wait_until(lambda: results() and len(results()[0].read_text().strip().splitlines()) >= 3)  # two trials done
    finished_before = len(results()[0].read_text().strip().splitlines()) - 1
    if whom == "the sweep process only":
        sweep.send_signal(signal.SIGINT)
    else:
        os.killpg(sweep.pid, signal.SIGINT)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err
    assert "Traceback" not in err
    sweep_dir = results()[0].parent
    rows = {int(r["number"]): r["status"] for r in csv.DictReader(results()[0].open())}
    trials = {int(p.name): read(p / "summary.json")["status"] for p in (sweep_dir / "trials").iterdir()}
    assert rows == trials  # every trial directory is in results.csv, with the same status, and no other
    assert len(trials) <= finished_before + 2  # at most the two that were running: nothing new started
    assert set(trials.values()) <= {"completed", "interrupted"}
    summary = read(sweep_dir / "summary.json")
    assert summary["status"] == "interrupted" and sum(summary["counts"].values()) == len(trials)


@pytest.mark.slow  # starts processes
def test_ctrl_c_from_the_terminal_with_dataloader_workers_keeps_the_epoch_and_no_traceback(tmp_path):
    """A terminal's Ctrl-C reaches the DataLoader's workers too; killed, they would fail the batch
    the run waits for (a traceback, a failed run). They ignore it: the run finishes the epoch under
    way, keeps it, and stops, interrupted."""
    from image_fixtures import write_image_folder

    folder = write_image_folder(tmp_path / "photos", per_class=300, sizes=((48, 48),))  # epochs long enough to be cut
    run = dl("train", "data=imagefolder", f"data.root={folder}", "data.cache=none", "data.num_workers=2",
             "data.augment.color_jitter=0.3", "model=lenet", "trainer.epochs=200", "trainer.checkpoint_every=3600",
             "trainer.plots=false", cwd=tmp_path, start_new_session=True)
    metrics = lambda: list(tmp_path.glob("runs/train/*/metrics.csv"))  # noqa: E731
    wait_until(lambda: metrics() and len(metrics()[0].read_text().strip().splitlines()) >= 2)  # an epoch done
    time.sleep(0.2)  # into the next one
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "Traceback" not in err
    summary = read(metrics()[0].parent / "summary.json")
    # an epoch ended and is not saved yet: the first Ctrl-C finishes the one under way (its batches
    # still to come from the workers) and keeps both
    assert summary["status"] == "interrupted" and summary["epochs_completed"] >= 2


def test_ctrl_c_during_the_test_look_is_an_interrupt_and_resume_finishes_it(workdir, monkeypatch):
    import dlcli.run.single

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dlcli.run.single, "evaluate_checkpoint", interrupted)
    result = run_cli("train", "trainer.epochs=2")
    assert result.exit_code == 130 and "Traceback" not in result.output
    run = only_run(workdir)
    summary = read(run / "summary.json")
    assert summary["status"] == "interrupted" and summary["epochs_completed"] == 2 and "resume=" in summary["message"]
    monkeypatch.undo()
    resumed = run_cli("train", f"resume={run}", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["test"]["accuracy"] > 0.5


def test_an_import_broken_by_ctrl_c_counts_as_ctrl_c(workdir, monkeypatch):
    import dlcli.run.single

    def import_interrupted(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("cannot import name 'metrics' (partially initialized module)")

    monkeypatch.setattr(dlcli.run.single, "evaluate_checkpoint", import_interrupted)
    result = train(RunRequest(compose(["trainer.epochs=1", "trainer.progress=false"]), [], quiet_reporter()))
    assert result.status == "interrupted"


def test_an_interrupt_while_the_run_directory_is_made_leaves_nothing(workdir, monkeypatch):
    import dlcli.run.single

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dlcli.run.single, "save_checkpoint", interrupted)  # the last of the run's first files
    result = run_cli("train", "trainer.epochs=1")
    assert result.exit_code == 130
    assert not (workdir / "runs").exists()


@pytest.mark.slow
def test_a_killed_run_shows_as_killed_and_a_live_one_cannot_be_resumed_twice(tmp_path, monkeypatch):
    # the run holds still for a minute after epoch 4 (alive, its lock held) until it is killed
    marker = tmp_path / "paused-once"
    training = dl("train", "data=iris", "trainer.epochs=20", "trainer.plots=false", "+callbacks.hold._target_=user_code.KillAt", "+callbacks.hold.epoch=999",
                  f"+callbacks.hold.marker={marker}", "+callbacks.hold.pause_at=4", "+callbacks.hold.pause=60", "--quiet", cwd=tmp_path)
    metrics = lambda: list(tmp_path.glob("runs/train/*/metrics.csv"))
    wait_until(lambda: metrics() and len(metrics()[0].read_text().splitlines()) > 3)
    run = metrics()[0].parent
    monkeypatch.chdir(tmp_path)  # the other commands run in this process: the training process holds the lock
    second = run_cli("train", f"resume={run}")
    assert second.exit_code == 2 and "is still being trained by pid" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    assert json.loads(run_cli("runs", "--json").stdout)[0]["status"] == "running"
    training.kill()
    training.wait()
    listed = json.loads(run_cli("runs", "--json").stdout)
    rows = len(metrics()[0].read_text().strip().splitlines()) - 1
    assert listed[0]["status"] == "killed" and listed[0]["epochs"] == rows >= 3
    marker.write_text("held once")  # the resumed run does not hold again
    resumed = run_cli("train", f"resume={run}", "--json", "--trust", "user_code")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["epochs_completed"] == 20


def test_a_read_only_runs_dir_is_a_one_line_error(workdir, monkeypatch):
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)  # as on a read-only mount: creating anything fails
    result = run_cli("train", "trainer.epochs=1", "runs_dir=mounted")
    assert result.exit_code == 2 and "runs_dir=mounted cannot hold runs: Read-only file system" in result.stderr
    assert not (workdir / "mounted").exists()


@pytest.mark.slow  # trains a sweep twice: 3.4 s in the fast lane
def test_a_resumed_sweep_keeps_its_jobs_and_threads(workdir):
    from dlcli.sweep import SweepSettings, run_sweep

    lines = []
    settings = lambda: SweepSettings("grid", ["optim.lr=0.1,1e12", "trainer.epochs=1", "data=iris"])  # what is kept, not what is learned
    first = run_sweep(settings(), jobs=2, threads=1, fail_fast=True, log=lines.append)  # lr=1e12 diverges: failed
    assert first.summary["status"] == "failed"
    lines.clear()
    run_sweep(SweepSettings("grid", []), resume=first.sweep_dir, log=lines.append)
    assert any("2 at a time" in line and "1 thread(s) each" in line for line in lines), lines
    lines.clear()
    run_sweep(SweepSettings("grid", []), resume=first.sweep_dir, jobs=1, log=lines.append)
    assert any("1 at a time" in line for line in lines), lines


# -- values given as options are values, not grammar --------------------------------------------------

@pytest.mark.slow  # trains: over half a second in the fast lane
def test_a_name_with_spaces_and_accents_is_just_a_name(workdir):
    result = run_cli("train", "trainer.epochs=1", "--name", "my rün ü", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert Path(json.loads(result.stdout)["run_dir"]).parent.name == "my rün ü"
    lr_find = run_cli("lr-find", "--name", "ladder 'one'", "--steps", "20", "--json")
    assert lr_find.exit_code == 0, lr_find.output
    assert Path(json.loads(lr_find.stdout)["run_dir"]).parent.name == "ladder 'one'"


def test_dl_runs_lists_the_others_when_one_summary_is_torn(workdir):
    for _ in range(2):
        assert run_cli("train", "trainer.epochs=1", "trainer.plots=false").exit_code == 0
    torn = sorted((workdir / "runs" / "train").iterdir())[0]
    (torn / "summary.json").write_text('{"status": "compl')
    result = run_cli("runs", "--json")
    assert result.exit_code == 0
    statuses = sorted(row["status"] for row in json.loads(result.stdout))
    assert statuses == ["completed", "unreadable summary.json"]


# -- every hint that names an override is one that works ----------------------------------------------

@pytest.mark.slow  # trains: over half a second in the fast lane
@pytest.mark.parametrize(
    "overrides, suggestion, applied",
    [
        (["optim.lrr=0.1"], "did you mean optim.lr?", ["optim.lr=0.1"]),
        (["+epochs=3"], "did you mean trainer.epochs?", ["trainer.epochs=3"]),
        (["model.hiden=[8]"], "did you mean model.hidden?", ["model.hidden=[8]"]),
        (["+trainer.patience=3"], "did you mean trainer.early_stopping.patience?", ["trainer.early_stopping.patience=3"]),
        (["+lr=0.05"], "did you mean optim.lr?", ["optim.lr=0.05"]),
        (["sched=onecycle", "sched.pct_star=0.2"], "did you mean sched.pct_start?", ["sched=onecycle", "sched.pct_start=0.2"]),
        (["optim=adam", "optim.amsgrad=true"], "add it with +optim.amsgrad=VALUE", ["optim=adam", "+optim.amsgrad=true"]),
        (["model=vgg"], "set data.resize=32", ["model=vgg", "data.resize=32"]),
        (["model=lenet"], "set data.resize=12", ["model=lenet", "data.resize=12"]),
        (["model=alexnet"], "set data.resize=65", ["model=alexnet", "data.resize=65"]),
        (["model=lenet", "data=iris"], "use model=mlp", ["model=mlp", "data=iris"]),
        (["data=csv"], "add data.path=... to the command", None),  # a value only the user knows
    ],
)
def test_every_suggested_override_works_when_applied(workdir, overrides, suggestion, applied):
    with pytest.raises(UserError) as info:
        build_experiment(compose(overrides))
    assert suggestion in str(info.value)
    if applied is not None:
        assert build_experiment(compose(applied)).session.model is not None


# -- a run directory someone sent must be safe to open ------------------------------------------------

def test_a_run_naming_a_users_class_opens_only_when_that_module_is_trusted(workdir):
    result = run_cli("train", "trainer.epochs=1", "trainer.plots=false", "+callbacks.rec._target_=user_code.Recorder",
                     f"+callbacks.rec.path={workdir / 'calls.json'}")
    assert result.exit_code == 0, result.output
    run = only_run(workdir)
    refused = run_cli("eval", str(run))
    assert refused.exit_code == 2 and "callbacks.rec._target_=user_code.Recorder" in refused.stderr and "--trust user_code" in refused.stderr
    assert run_cli("eval", str(run), "--trust", "user_code").exit_code == 0
    (workdir / "conf").mkdir()
    (workdir / "conf" / "trust.yaml").write_text("trust: [user_code]\n")
    assert run_cli("eval", str(run)).exit_code == 0


def test_the_working_directorys_own_configs_vouch_for_its_classes_but_a_run_never_for_itself(workdir, monkeypatch):
    """model=mynet from ./conf/model/mynet.yaml (class mypkg.MyNet in ./mypkg/) trains, and eval,
    predict and export open the run from the same directory without --trust; from a directory
    without those configs, or with the configs inside the run directory, it is refused."""
    import shutil

    package = workdir / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import torch\n"
        "class MyNet(torch.nn.Module):\n"
        "    def __init__(self, input_shape, num_outputs, width=16):\n"
        "        super().__init__()\n"
        "        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(width), torch.nn.ReLU(),\n"
        "                                       torch.nn.Linear(width, num_outputs))\n"
        "    def forward(self, x):\n"
        "        return self.net(x)\n")
    (workdir / "conf" / "model").mkdir(parents=True)
    (workdir / "conf" / "model" / "mynet.yaml").write_text("_target_: mypkg.MyNet\nwidth: 16\n")
    monkeypatch.syspath_prepend(str(workdir))
    trained = run_cli("train", "model=mynet", "data=iris", "trainer.epochs=1", "trainer.plots=false")
    assert trained.exit_code == 0, trained.output
    run = only_run(workdir)
    assert run_cli("eval", str(run)).exit_code == 0
    rows = workdir / "rows.csv"
    rows.write_text("sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.1,3.5,1.4,0.2\n")
    predicted = run_cli("predict", str(run), str(rows), "--output", str(workdir / "out.csv"))
    assert predicted.exit_code == 0, predicted.output
    assert run_cli("export", str(run), "--format", "torchscript").exit_code == 0

    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    copy = elsewhere / "received"
    shutil.copytree(run, copy)
    (copy / "conf" / "model").mkdir(parents=True)  # a run directory that brings configs of its own vouches for nothing
    (copy / "conf" / "model" / "mynet.yaml").write_text("_target_: mypkg.MyNet\n")
    monkeypatch.chdir(elsewhere)
    refused = run_cli("eval", str(copy))
    assert refused.exit_code == 2 and "model._target_=mypkg.MyNet" in refused.stderr and "--trust mypkg" in refused.stderr
    monkeypatch.chdir(copy)  # not even from inside it: the classes are not this directory's own
    assert run_cli("eval", str(copy)).exit_code == 2


# -- a bug in a user's own code keeps its traceback ---------------------------------------------------

def test_a_bug_in_a_users_model_shows_its_traceback_not_a_one_line_error(workdir):
    result = run_cli("train", "model._target_=user_code.BuggyNet", "~model.hidden", "~model.activation", "~model.dropout",
                     "~model.batch_norm")
    assert result.exit_code == 1
    assert isinstance(result.exception, TypeError)  # the CLI re-raises it: Python prints the traceback


def test_a_failed_sweep_trial_keeps_its_traceback_in_its_train_log(workdir):
    from dlcli.sweep import SweepSettings, run_sweep

    model = ["model._target_=user_code.NetThatBreaksInForward", "~model.hidden", "~model.activation", "~model.dropout",
             "~model.batch_norm", "trainer.epochs=1"]
    result = run_sweep(SweepSettings("grid", ["optim.lr=0.1,0.01", *model]), log=lambda line: None)
    trials = sorted((result.sweep_dir / "trials").iterdir())
    assert [read(t / "summary.json")["status"] for t in trials] == ["failed", "failed"]
    log = (trials[0] / "train.log").read_text()
    assert "Traceback (most recent call last)" in log and "the user's forward pass has a bug" in log
    assert "train.log" in read(trials[0] / "summary.json")["message"]
