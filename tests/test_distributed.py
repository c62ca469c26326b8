"""trainer.devices=N: one run trained by N processes (DistributedDataParallel through PyTorch's
elastic launcher), here as 2 CPU processes with gloo. The workers fork from dl's fork server
(dlcli.system.fork_server), which this process keeps from its first launch on, so a launch after
the first costs little more than its training; a test that starts `dl` as a program pays for a
whole interpreter (and a server) again, so those are few and short."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import read, run_cli
from forked_dl import run_dl, start_dl
from dlcli.engine.distributed import World, part_of_batch, shard

TWO = ["trainer.devices=2", "trainer.device=cpu", "trainer.progress=false", "trainer.plots=false"]
TABLE = ["data=csv", "data.path=rows.csv", "data.target=label", "trainer.epochs=2", "trainer.checkpoint_every=0",
         "trainer.batch_size=48"]  # a global batch that 2 and 3 processes split evenly
# one cache directory for the module: the environment stays put, and one fork server serves its many
# runs on several processes (conftest.own_cache_directory)
pytestmark = pytest.mark.module_cache


def write_rows(path: Path, count: int = 1010) -> None:
    """A table whose validation split has 101 rows (split.val=0.1), not a multiple of 2 or 3."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(count, 4))
    pd.DataFrame({**{f"x{i}": x[:, i] for i in range(4)}, "label": np.where(x[:, 0] + x[:, 1] > 0, "a", "b")}).to_csv(path, index=False)


def runs(workdir: Path) -> list[Path]:
    return sorted(p for p in (workdir / "runs" / "train").iterdir() if not p.name.startswith("."))


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def children_alive() -> list[int]:
    """Processes this one started for a run and left behind: its children, or those of the fork
    server it started. Multiprocessing's resource tracker, dl's fork server and the tests' own
    (forked_dl), which stay for the life of this process, are not."""
    processes = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                processes[int(entry.name)] = (int(fields[1]), fields[0], (entry / "cmdline").read_bytes())
            except OSError:
                continue
    helpers = {pid for pid, (parent, _, command) in processes.items() if parent == os.getpid()
               and any(name in command for name in (b"resource_tracker", b"multiprocessing.forkserver", b"forked_dl"))}
    return [pid for pid, (parent, state, _) in processes.items()
            if state != "Z" and pid not in helpers and (parent == os.getpid() or parent in helpers)]


def test_each_sample_is_in_exactly_one_shard_and_batches_split_evenly():
    for size in (2, 3):
        shards = [shard(101, World(rank, size)) for rank in range(size)]
        assert sorted(i for s in shards for i in s) == list(range(101))  # no padding, no duplicate
        rows = torch.arange(32)
        parts = [part_of_batch(rows, World(rank, size)) for rank in range(size)]
        assert torch.equal(torch.cat(parts), rows)
    assert part_of_batch(torch.arange(1), World(0, 2)) is None  # a batch some rank would miss is skipped by all


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    """The same run trained by one process and by two (module-wide: each launch starts interpreters)."""
    root = tmp_path_factory.mktemp("ddp")
    previous = os.getcwd()
    os.chdir(root)
    try:
        write_rows(root / "rows.csv")
        one = run_cli("train", *TABLE, "trainer.device=cpu", "trainer.progress=false", "-q")
        assert one.exit_code == 0, one.output
        two = run_cli("train", *TABLE, *TWO, "-q")
        assert two.exit_code == 0, two.output
        three = run_cli("train", *TABLE, *TWO, "trainer.devices=3", "-q")
        assert three.exit_code == 0, three.output
        assert not children_alive()
        yield root, *runs(root)
    finally:
        os.chdir(previous)


@pytest.mark.slow  # starts processes
def test_two_and_three_processes_train_the_weights_one_process_trains(one_and_two):
    root, single, double, triple = one_and_two
    assert len(runs(root)) == 3 and len(list(double.glob("config.yaml"))) == 1  # one run directory, one config
    for run, size in ((double, 2), (triple, 3)):
        summary = read(run / "summary.json")
        assert summary["status"] == "completed" and summary["world_size"] == size and summary["per_rank_batch"] == 48 // size
        # the same global batch of 48: within float32 summation order (measured: ~2e-7 after 3 epochs on digits)
        a, b = weights(single), weights(run)
        assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
        # validation counts every one of its 101 rows once: the same numbers as one process
        assert read(run / "split.json")["sizes"]["val"] == 101
        first, other = pd.read_csv(single / "metrics.csv"), pd.read_csv(run / "metrics.csv")
        for column in ("val_loss", "val_accuracy", "train_loss", "train_accuracy"):
            np.testing.assert_allclose(first[column], other[column], rtol=1e-5, atol=1e-6)
        assert summary["test"]["samples"] == read(single / "summary.json")["test"]["samples"]


@pytest.mark.slow  # starts processes (the module's runs, made once)
def test_runs_diff_explains_one_process_against_two(one_and_two):
    """The same config on one process and on two: the diff names trainer.devices, the world size and
    each process's batch, and finds the curves agreeing within its tolerance."""
    root, single, double, _ = one_and_two
    result = run_cli("runs", "diff", str(single), str(double), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    settings = report["differ"]["config"]  # (the fixture's one-process run draws its pictures: trainer.plots)
    assert settings["trainer.devices"] == [1, 2] and set(settings) <= {"trainer.devices", "trainer.plots"}
    environment = report["differ"]["environment"]
    assert environment["processes (world size)"] == [1, 2] and environment["batch per process"] == [48, 24]
    assert {"data", "code", "seed"} <= set(report["same"])
    assert report["curves"]["runs"] == [{"run": str(double), "epochs_compared": 2, "epoch": None, "column": None, "values": None}]
    shown = run_cli("runs", "diff", str(single), str(double)).stdout
    assert "trainer.devices" in shown and "processes (world size)" in shown and "agrees over all 2 epochs" in shown


CONV = ["data=imagefolder", "data.root=pics", "model=lenet", "trainer.epochs=2", "trainer.batch_size=12",
        "trainer.checkpoint_every=0", "trainer.device=cpu", "trainer.progress=false", "trainer.plots=false"]
FROM_FILES = ["data.cache=none", "data.num_workers=0"]  # the DataLoader path (no workers: the order is what is tested)


@pytest.fixture(scope="module")
def conv_runs(tmp_path_factory):
    """LeNet on a PNG folder (36 images of 28x28, 3 classes; 2 epochs of a global batch of 12), by one
    process and by two, the folder held in memory and read from its files."""
    from image_fixtures import write_image_folder

    root = tmp_path_factory.mktemp("ddp-conv")
    previous = os.getcwd()
    os.chdir(root)
    try:
        write_image_folder(root / "pics", per_class=12, sizes=((28, 28),))
        made = {}
        for name, extra in (("one", []), ("two", TWO), ("one_files", FROM_FILES), ("two_files", [*TWO, *FROM_FILES])):
            result = run_cli("train", *CONV, *extra, "--name", name, "-q")
            assert result.exit_code == 0, result.output
            made[name], = (root / "runs" / name).iterdir()
        assert not children_alive()
        yield made
    finally:
        os.chdir(previous)


@pytest.mark.slow
def test_a_conv_net_trains_the_same_weights_on_one_and_two_processes_from_memory_or_files(conv_runs):
    """Convolutions, max-pooling and ReLU reduce in another order on half the batch, and nothing
    more: the same weights and numbers within float32 rounding. The folder read from its files
    draws its order as the one held in memory does (it drew the DataLoader's seed first, so every
    epoch's order differed from the other paths': 0.08 apart after one epoch)."""
    reference = weights(conv_runs["one"])
    for name in ("two", "one_files", "two_files"):
        other = weights(conv_runs[name])
        assert max(float((reference[k] - other[k]).abs().max()) for k in reference) < 1e-5, name
        first, then = pd.read_csv(conv_runs["one"] / "metrics.csv"), pd.read_csv(conv_runs[name] / "metrics.csv")
        for column in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(first[column], then[column], rtol=1e-5, atol=1e-6, err_msg=f"{name} {column}")
    assert read(conv_runs["two_files"] / "summary.json")["world_size"] == 2


@pytest.mark.slow
def test_dropout_draws_other_masks_on_other_ranks_so_two_processes_differ_from_one(workdir):
    """What the README says cannot agree: ranks other than 0 draw from seed + rank, so their dropout
    masks are not the ones one process draws for those rows (one stream cannot be split by rows)."""
    write_rows(workdir / "rows.csv", 400)
    for extra in ([], TWO):
        assert run_cli("train", *TABLE, "model.dropout=0.3", "trainer.device=cpu", "trainer.progress=false", *extra,
                       "-q").exit_code == 0
    one, two = runs(workdir)
    a, b = weights(one), weights(two)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) > 1e-3


@pytest.mark.slow  # starts processes
def test_rank_0_failing_mid_epoch_does_not_leave_the_others_waiting(workdir):
    """Rank 0 stops alone (its callback fails inside an epoch): the others are in a collective it
    will never join, so it exits non-zero and the launcher stops them; its own message stays."""
    write_rows(workdir / "rows.csv", 200)
    started = time.monotonic()
    result = run_cli("train", *TABLE, *TWO, "+callbacks.boom._target_=user_code.RaiseOnBatch", "--trust", "user_code", "-q")
    assert time.monotonic() - started < 120
    assert result.exit_code == 1, result.output
    summary = read(runs(workdir)[0] / "summary.json")
    assert summary["status"] == "failed" and "the callback broke mid-epoch" in summary["message"]
    assert not children_alive()


@pytest.mark.slow  # starts processes
def test_a_nan_on_one_rank_stops_every_rank_with_a_failed_run(workdir):
    write_rows(workdir / "rows.csv", 400)
    started = time.monotonic()
    result = run_cli("train", *TABLE, *TWO, "model._target_=user_code.NanOnRankOne", "~model.hidden", "~model.activation",
                     "~model.dropout", "~model.batch_norm", "+model.after=4", "--trust", "user_code", "-q")
    assert time.monotonic() - started < 120
    assert result.exit_code == 1, result.output
    summary = read(runs(workdir)[0] / "summary.json")
    assert summary["status"] == "failed" and "loss became nan" in summary["message"]
    assert not children_alive()


@pytest.mark.slow  # starts processes
def test_a_killed_worker_ends_the_others_and_the_run_resumes_to_the_uninterrupted_numbers(one_and_two, workdir):
    _, _, reference, _ = one_and_two
    write_rows(workdir / "rows.csv")
    killed = run_cli("train", *TABLE, *TWO, "+callbacks.kill._target_=user_code.KillAt", "+callbacks.kill.epoch=2",
                     f"+callbacks.kill.marker={workdir / 'killed'}", "--trust", "user_code", "-q")
    assert killed.exit_code != 0
    assert not children_alive()  # the other worker was stopped, not left behind
    run, = runs(workdir)
    summary = read(run / "summary.json")
    assert summary["status"] == "failed" and "worker rank 0 ended (signal SIGKILL)" in summary["message"]
    resumed = run_cli("train", f"resume={run}", "--trust", "user_code", "-q")
    assert resumed.exit_code == 0, resumed.output
    pd.testing.assert_frame_equal(pd.read_csv(reference / "metrics.csv").drop(columns=["seconds", "samples_per_second"]),
                                  pd.read_csv(run / "metrics.csv").drop(columns=["seconds", "samples_per_second"]),
                                  rtol=1e-6, atol=1e-7)
    a, b = weights(reference), weights(run)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6


@pytest.mark.slow  # starts processes
def test_max_restarts_lets_the_launcher_restart_the_workers_from_the_last_checkpoint(one_and_two, workdir):
    _, _, reference, _ = one_and_two
    write_rows(workdir / "rows.csv")
    result = run_cli("train", *TABLE, *TWO, "trainer.max_restarts=1", "+callbacks.kill._target_=user_code.KillAt",
                     "+callbacks.kill.epoch=1", f"+callbacks.kill.marker={workdir / 'killed'}", "--trust", "user_code", "-q")
    assert result.exit_code == 0, result.output
    assert (workdir / "killed").exists()  # it was killed once, and the restart finished it
    run, = runs(workdir)
    assert read(run / "summary.json")["status"] == "completed"
    a, b = weights(reference), weights(run)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6


@pytest.mark.slow  # starts processes
def test_under_torchrun_dl_is_a_worker_and_rank_0_makes_the_one_run_directory(tmp_path):
    """Every rank runs the command; rank 0 speaks for the run, and only as --json promises (the JSON
    alone on stdout: a word from any other rank would break it; -q's one line is the same rule);
    every rank ends cleanly (no native abort at exit: torchrun would exit 1)."""
    import subprocess
    import sys

    write_rows(tmp_path / "rows.csv", 200)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", "localhost:0", "-m", "dlcli", "train", *TABLE, "trainer.device=cpu", "--json"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "terminate called" not in done.stderr and "Fatal Python error" not in done.stderr
    made = list((tmp_path / "runs" / "train").iterdir())
    assert len(made) == 1  # one directory: rank 0's
    assert (tmp_path / json.loads(done.stdout)["run_dir"]).resolve() == made[0].resolve()  # stdout is the JSON alone
    summary = read(made[0] / "summary.json")
    assert summary["status"] == "completed" and summary["world_size"] == 2


@pytest.mark.slow  # starts processes
def test_ctrl_c_stops_every_worker_and_leaves_a_resumable_run(tmp_path):
    """The terminal's Ctrl-C reaches the launcher and every worker: rank 0 keeps the epoch it is
    in, the run says interrupted, nothing is left running, and resume finishes it."""
    import signal
    import subprocess

    command = ["train", "trainer.epochs=200", "trainer.devices=2", "trainer.device=cpu", "trainer.plots=false", "-q"]
    process = start_dl(command, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = metrics_after_two_epochs(tmp_path)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
    _, err = process.communicate(timeout=90)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "death signal" not in err
    summary = json.loads((metrics.parent / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "resume=" in summary["message"]
    assert len(metrics.read_text().splitlines()) == summary["epochs_completed"] + 1
    time.sleep(1)  # multiprocessing's resource tracker leaves once it sees its parent gone
    listed = subprocess.run(["ps", "-o", "stat=,pid=,args=", "-s", str(process.pid)], capture_output=True, text=True).stdout
    running = [line for line in listed.splitlines() if line.strip() and not line.strip().startswith("Z")]  # Z: ended, unreaped
    assert not running, listed  # no worker of that session still running


def metrics_after_two_epochs(root: Path, seconds: float = 120) -> Path:
    """The metrics.csv of the run training under `root`, once it holds two epochs."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = list(root.glob("runs/train/*/metrics.csv"))
        if found and len(found[0].read_text().splitlines()) > 2:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no run under {root} finished two epochs in {seconds:g} s")


@pytest.mark.slow  # starts processes
def test_a_killed_launcher_leaves_no_worker_training_on(tmp_path):
    """SIGKILL to the process the user started (no clean-up at all): its workers (and the fork
    server they came from) end with it, instead of training on for nobody, and `dl runs` says the
    run was killed."""
    import signal
    import subprocess

    command = ["train", "data=wine", "trainer.epochs=2000", "trainer.plots=false", *TWO, "-q"]
    process = start_dl(command, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    metrics_after_two_epochs(tmp_path)  # the workers are training: the kill lands mid-run
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.time() + 10
    while time.time() < deadline and session_alive(process.pid):
        time.sleep(0.1)
    assert not session_alive(process.pid)  # no worker, no fork server
    listed = run_dl(["runs", "runs/train", "--json"], tmp_path, timeout=60)
    assert json.loads(listed.stdout)[0]["status"] == "killed", listed.stdout


def session_alive(session: int) -> list[str]:
    """The commands of the session's live processes (what a test started with start_new_session)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":
                alive.append(command.decode(errors="replace"))
    return alive


@pytest.mark.parametrize("args, says", [
    (["trainer.devices=2", "trainer.device=cpu", "trainer.batch_size=33"], "trainer.batch_size=33 is the global batch"),
    (["trainer.sync_batchnorm=true", "trainer.device=cpu"], "trainer.sync_batchnorm=true needs CUDA"),
    (["trainer.devices=2", "trainer.device=cpu", "split.kfold=3"], "split.kfold with trainer.devices=2"),
    (["trainer.devices=0"], "trainer.devices=0"),
])
def test_what_cannot_run_on_several_processes_is_one_line(workdir, args, says):
    result = run_cli("train", *args)
    assert result.exit_code == 2 and says in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not (workdir / "runs").exists()


def trials_in_study(sweep: Path) -> list:
    import optuna

    from dlcli.sweep.study import storage

    name = optuna.get_all_study_names(storage(sweep))[0]
    return optuna.load_study(study_name=name, storage=storage(sweep)).get_trials(deepcopy=False)


@pytest.mark.slow  # starts processes
def test_a_sweep_trial_on_two_processes_is_one_run_directory(workdir):
    write_rows(workdir / "rows.csv", 200)
    result = run_cli("sweep", "grid", "optim.lr=0.1,0.05", *TABLE, *TWO, "--prune", "median", "--jobs", "2", "-q")
    assert result.exit_code == 0, result.output
    sweep = next((workdir / "runs" / "sweeps" / "sweep").iterdir())
    for trial in sorted((sweep / "trials").iterdir()):
        summary = read(trial / "summary.json")
        assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["test"] is None
        assert [p.name for p in trial.iterdir() if p.name == "config.yaml"] == ["config.yaml"]
        assert not any(p.is_dir() and p.name.startswith("20") for p in trial.iterdir())  # no run directory inside
    assert read(sweep / "summary.json")["test"]["samples"] == 20  # the one test look, after the sweep
    # the trial's pruner reached rank 0 from the sweep, not through config.yaml (a refit must not report to the study)
    assert "StudyReporting" not in (sweep / "trials" / "000" / "config.yaml").read_text()
    assert len(trials_in_study(sweep)) == 2 and all(t.intermediate_values for t in trials_in_study(sweep))
    both = run_cli("sweep", "grid", "optim.lr=0.1,0.2", *TWO, "--trials-per-gpu", "2")
    assert both.exit_code == 2 and "--trials-per-gpu 2 with trainer.devices=2" in both.stderr


@pytest.mark.slow  # starts processes
def test_a_callback_that_stops_the_run_on_rank_0_stops_every_rank(workdir):
    """Callbacks run on rank 0; when one ends the run there, the others must not wait for it."""
    write_rows(workdir / "rows.csv", 200)
    result = run_cli("train", *TABLE, *TWO, "trainer.epochs=5", "+callbacks.stop._target_=user_code.RaiseAt",
                     "+callbacks.stop.epoch=2", "--trust", "user_code", "-q")
    assert result.exit_code == 1, result.output
    summary = read(runs(workdir)[0] / "summary.json")
    assert summary["status"] == "failed" and summary["epochs_completed"] == 2 and "worker" not in summary["message"]
    assert not children_alive()


def test_pool_slots_get_disjoint_gpu_groups_for_multi_gpu_trials():
    from dlcli.sweep.backends import gpu_group
    from dlcli.sweep.plan import SweepPlan
    from dlcli.sweep.run import check_devices_per_trial
    from dlcli.errors import UserError

    assert [gpu_group(slot, 8, 4) for slot in (0, 1)] == ["0,1,2,3", "4,5,6,7"]
    assert gpu_group(0, 0, 2) is None and gpu_group(1, 8, 1) is None
    check_devices_per_trial(4, SweepPlan(jobs=2), gpus=8)
    with pytest.raises(UserError, match="--jobs 3 trials of trainer.devices=4 GPUs need 12 GPUs"):
        check_devices_per_trial(4, SweepPlan(jobs=3), gpus=8)
    check_devices_per_trial(2, SweepPlan(jobs=2, backend="ray"), gpus=0)  # Ray places them: N CPUs (and GPUs) per trial
    with pytest.raises(UserError, match="give --gpus-per-trial 2"):
        check_devices_per_trial(2, SweepPlan(jobs=1, backend="ray", gpus_per_trial=1), gpus=0)


def test_more_gpus_than_the_machine_has_and_mps_are_one_line(monkeypatch):
    from dlcli.engine.distributed import check_devices
    from dlcli.errors import UserError

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserError, match="trainer.devices=4: this machine has 2 CUDA GPUs"):
        check_devices(4, torch.device("cuda", 0), False, 32)
    check_devices(2, torch.device("cuda", 0), True, 32)  # two GPUs, synced batch norm: fine
    with pytest.raises(UserError, match="with MPS"):
        check_devices(2, torch.device("mps"), False, 32)


class RandomDraws(torch.utils.data.Dataset):
    """Each item is a random draw, as an augmentation's is (from the worker's seeded generator)."""

    def __len__(self):
        return 16

    def __getitem__(self, index):
        return torch.rand(1), torch.tensor(0)


@pytest.mark.slow  # starts DataLoader worker processes
def test_dataloader_draws_differ_between_ranks_and_repeat_from_the_seed_and_the_rank():
    from dlcli.engine.batches import LoaderBatches

    def draws(rank: int) -> torch.Tensor:
        batches = LoaderBatches(RandomDraws(), torch.zeros(16, dtype=torch.long), torch.device("cpu"), num_workers=1)
        generator = torch.Generator().manual_seed(7)  # the run's: the same on every rank
        return torch.cat([x for x, _ in batches.shuffled(8, generator, World(rank, 2))])

    assert len(draws(0)) == 8 and not torch.equal(draws(0), draws(1))
    assert torch.equal(draws(1), draws(1))
