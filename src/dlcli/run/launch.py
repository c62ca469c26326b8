"""`trainer.devices=N`: one run trained by N processes with DistributedDataParallel, started by
PyTorch's elastic launcher (the engine behind `torchrun`), never by a launcher of dl's own.

The parent process composes and checks the config and creates the run directory once (config.yaml,
split.json, an untrained last.pt), holds the run's lock, and starts the workers with
`torch.distributed.launcher.api.elastic_launch` (c10d rendezvous on localhost:0, so concurrent runs
never collide on a port), forked from dl's fork server, which imported what they need once
(dlcli.system.fork_server; a fresh interpreter each costs ~7 s of CPU here). Every worker reads the resolved config and last.pt from the run
directory (it never parses the command line) and restores from it, so a new run, a resumed one and
a launcher restart (trainer.max_restarts) all start the same way. Rank 0 writes everything: the
lines, metrics.csv, checkpoints, the summary, the test look. Under `torchrun ... -m dlcli train`
the processes are already started: rank 0 creates the run directory and tells the others where.
"""

from __future__ import annotations

import datetime
import faulthandler
import gc
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch.nn.parallel import DistributedDataParallel

from dlcli.config.build import resolve_target
from dlcli.engine.checkpoint import load_checkpoint, restore, saved_state
from dlcli.engine.compiled import compile_session
from dlcli.engine.distributed import current_world, launched_by_torchrun
from dlcli.engine.fit import NonFiniteLoss, StoppedWithRankZero, fit
from dlcli.engine.progress import Reporter
from dlcli.errors import TrialPruned, UserError, first_line
from dlcli.experiment import build_experiment
from dlcli.system import fork_server
from dlcli.system.interrupts import (StopRecord, forwarded_to_workers, ignored_stop_signals, stop_signals_act_as_ctrl_c,
                                       stop_signals_as_launched)
from dlcli.rundir.directory import load_saved_config, read_summary, update_summary
from dlcli.run.request import RunRequest
from dlcli.run.single import (TrainResult, checked_experiment, now, open_new_run, progress_fields, run_in, start_new_run,
                              with_config_callbacks)
from dlcli.system.machine import usable_cores
from dlcli.system.processes import die_with_parent
from dlcli.trust.targets import targets_in

# how a run runs, not what it computes: the command's values reach the workers
HOW_IT_RUNS = ("trainer.device", "trainer.progress", "trainer.checkpoint_every", "trainer.plots")
# what the fork server imports once for all the workers it forks (dlcli.system.fork_server): this module and
# what a worker of a run on the bundled datasets imported besides (~0.5 s of CPU each; torch._dynamo, which every
# optimizer imports as it is built, ~1.3 s). Not torchvision: a table's run never loads it.
WORKER_IMPORTS = ("dlcli.run.launch", "dlcli.data.images", "sklearn.datasets", "sklearn.model_selection",
                  "torch.utils.serialization", "torch._dynamo")
MONITOR_SECONDS = 0.1  # how often the launcher looks at its workers: it names the first it finds ended, so a
FAILED_WORKER_WAITS = 5 * MONITOR_SECONDS  # rank failing on the connection a killed one broke waits to be found second


def devices_of(cfg: DictConfig) -> int:
    return int(cfg.trainer.get("devices", 1) or 1)


def train_distributed(request: RunRequest, *, quiet: bool | None = None, rank_zero_callbacks: Sequence[dict] = (),
                      threads: int | None = None) -> TrainResult:
    """A new run trained by trainer.devices processes (in request.run_dir when a sweep made one for
    its trial; `quiet`: rank 0 prints nothing, as a trial does not; `rank_zero_callbacks`:
    {_target_, arguments} of callbacks rank 0 builds besides the config's, such as a trial's pruner;
    `threads`: the CPU threads all the processes share, a sweep trial's part of the cores)."""
    _no_python_callbacks(request.callbacks)

    if launched_by_torchrun():
        return _as_torchrun_worker(request)
    experiment = checked_experiment(request)
    ready_workers()  # the fork server imports while this process writes the first files and starts the rendezvous
    run_dir, lock = open_new_run(request, experiment)
    del experiment  # the workers build their own; this one only checked the config and wrote the first files
    release_device_memory()
    try:
        # the workers read back the config this command composed: what it builds is trusted as typed
        launch_workers(replace(request, run_dir=run_dir, trust=targets_of(request.config)), quiet=quiet,
                       rank_zero_callbacks=rank_zero_callbacks, threads=threads)
    finally:
        lock.release()
    return TrainResult(run_dir, read_summary(run_dir))


def resume_distributed(request: RunRequest) -> TrainResult:
    """A resumed run whose config (request.config, the saved one) trains on several processes in
    request.run_dir (the run's lock is held by the caller)."""
    _no_python_callbacks(request.callbacks)
    launch_workers(request)
    return TrainResult(request.run_dir, read_summary(request.run_dir))


def ready_workers() -> str:
    """How the workers will start ("forkserver" or "spawn"), with the fork server started now."""
    method = fork_server.start_method()
    if method == "forkserver":
        fork_server.ready_server(WORKER_IMPORTS)
    return method


def targets_of(cfg: DictConfig) -> list[str]:
    """Every class or function the config builds (its `_target_`s)."""
    return sorted({target for _, target in targets_in(OmegaConf.to_container(cfg, resolve=True)) if isinstance(target, str)})


def release_device_memory() -> None:
    """What the launching process built to check the run goes back to the GPU before the workers
    (rank 0 shares that GPU) need it."""
    gc.collect()
    if _cuda():
        torch.cuda.empty_cache()


def _no_python_callbacks(callbacks: Sequence) -> None:
    if callbacks:
        raise UserError("callbacks given from Python cannot reach the worker processes of trainer.devices>1: "
                        "name them in the config (callbacks.NAME._target_=module.Class) so every run builds them")


def launch_workers(request: RunRequest, quiet: bool | None = None, rank_zero_callbacks: Sequence[dict] = (),
                   threads: int | None = None) -> None:
    """Start trainer.devices workers training request.config in request.run_dir, and wait for them. A
    worker that dies ends the others (the launcher stops them); the run is then left interrupted and resumable."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # noqa: PLC0415  (torch's launcher loads for a run on several devices only)
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch  # noqa: PLC0415  (torch's launcher loads for a run on several devices only)

    run_dir, cfg, reporter = request.run_dir, request.config, request.reporter

    # the launcher logs a worker's end (and Ctrl-C) as a page of tracebacks; the run's summary says it in a line
    quieted = ("torch.distributed.elastic", "torch.multiprocessing")
    for name in [*quieted, *(n for n in logging.root.manager.loggerDict if n.startswith(quieted))]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    devices = devices_of(cfg)
    how = {key: OmegaConf.select(cfg, key) for key in HOW_IT_RUNS}
    how["quiet"] = bool(reporter.console.quiet) if quiet is None else quiet  # -q / --json: rank 0 prints nothing either
    how["rank_zero_callbacks"] = [dict(spec) for spec in rank_zero_callbacks]
    how["threads"] = threads
    how["trainer.progress"] = bool(how["trainer.progress"]) and reporter.show_progress
    start_method = ready_workers()
    how["parent"] = fork_server.parent_of_workers(start_method)
    how["ignored_signals"] = ignored_stop_signals()
    options = {}
    if "signals_to_handle" in LaunchConfig.__dataclass_fields__:  # torch >= 2.9
        # Ctrl-C, SIGTERM and SIGHUP are this process's to pass on (forwarded_to_workers): the
        # launcher's own handling ends the workers before rank 0 can keep its epoch and close the run
        options["signals_to_handle"] = "SIGQUIT"
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=devices, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=int(cfg.trainer.get("max_restarts", 0)),
                          monitor_interval=MONITOR_SECONDS, start_method=start_method, **options)
    backend = backend_for(cfg.trainer.device)
    reporter.log(f"training on {devices} processes (DistributedDataParallel, {backend} on {'CUDA' if backend == 'nccl' else 'CPU'}); "
                 f"batch {int(cfg.trainer.batch_size)} = {devices} x {int(cfg.trainer.batch_size) // devices} per process")
    update_summary(run_dir, world_size=devices, per_rank_batch=int(cfg.trainer.batch_size) // devices)
    saved_env = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")
    started = time.perf_counter()
    try:
        with forwarded_to_workers():  # puts back the handlers the launcher leaves behind too
            elastic_launch(config, worker)(str(run_dir), how, list(request.trust), request.evaluate_test)
    except ChildFailedError as exc:
        _ended_by_a_worker(run_dir, exc, time.perf_counter() - started)
    except KeyboardInterrupt:  # a stop signal before any worker had started: nothing trained
        _left_resumable(run_dir, "interrupted", seconds=time.perf_counter() - started)
        raise
    except Exception as exc:  # the launcher's own signal exception (SIGQUIT; older torch: any) and rendezvous failures
        if type(exc).__name__ == "SignalException":
            _left_resumable(run_dir, "interrupted", seconds=time.perf_counter() - started)
            raise KeyboardInterrupt from None
        raise
    finally:
        if saved_env is None:
            os.environ.pop("TORCHELASTIC_SIGNALS_TO_HANDLE", None)
        else:
            os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = saved_env


def backend_for(device: str) -> str:
    """nccl for CUDA GPUs, gloo for CPU processes (trainer.device=cpu, or no CUDA)."""
    return "nccl" if _cuda() and str(device) != "cpu" else "gloo"


def _cuda() -> bool:
    return torch.cuda.is_available()


def _ended_by_a_worker(run_dir: Path, exc, seconds: float) -> None:
    rank, failure = _cause(getattr(exc, "failures", {}) or {})
    what = f"worker rank {rank} ended ({_exit_text(failure)})" if failure is not None else f"a worker failed ({first_line(exc)})"
    said = _worker_message(failure)
    if said:
        what += f": {said}"
    message = f"{what}; the others were stopped; continue with: dl train resume={run_dir}"
    if rank not in (None, 0) and read_summary(run_dir).get("status") == "failed":
        # rank 0 closed the run on the connection the ended rank broke ("Connection reset by peer"):
        # the rank that ended is what the user must hear of; the rest of rank 0's summary stands
        update_summary(run_dir, message=message)
    _left_resumable(run_dir, "failed", message, seconds)


def _cause(failures: dict) -> tuple:
    """(rank, failure) that ended the run: a rank killed by a signal, else the first to fail (the
    others fail after it, often within the second the launcher's timestamps count in)."""
    if not failures:
        return None, None
    killed = [(rank, failure) for rank, failure in sorted(failures.items()) if (getattr(failure, "exitcode", 0) or 0) < 0]
    return killed[0] if killed else min(failures.items(), key=lambda item: (getattr(item[1], "timestamp", 0), item[0]))


def _worker_message(failure) -> str | None:
    """The one line of the exception a worker ended with, when it raised one."""
    message = getattr(failure, "message", None)
    if isinstance(message, dict):
        message = message.get("message")
    if not isinstance(message, str) or not message or message.startswith(("To enable traceback", "Signal ")):
        return None  # (torch's "Signal 9 (SIGKILL) received by PID ...": the exit text says it)
    return first_line(message.removeprefix("UserError: "))


def _exit_text(failure) -> str:
    code = getattr(failure, "exitcode", None)
    if isinstance(code, int) and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _left_resumable(run_dir: Path, status: str, message: str | None = None, seconds: float = 0.0) -> None:
    """A run rank 0 could not close (it was killed too) says how it ended, never `running`, and
    what a resume continues from: the progress last.pt holds, as a closed run's summary does."""
    summary = read_summary(run_dir)
    if summary.get("status") != "running":  # rank 0 closed the run: it said everything
        return
    try:
        progress = progress_fields(saved_state(load_checkpoint(run_dir / "checkpoints" / "last.pt")), summary.get("monitor", "val_loss"))
    except (UserError, KeyError, TypeError):  # no whole last.pt: the status alone
        progress = {}
    update_summary(run_dir, status=status, message=message or f"continue with: dl train resume={run_dir}", **progress,
                   wall_seconds=float(summary.get("wall_seconds") or 0.0) + seconds, finished_at=now())


def worker(run_dir: str, how: dict, trust: list, evaluate_test: bool) -> None:
    """One process of the group: join it, train, leave it. It leaves the launching process's
    process group first: stop signals reach it through the launching process, once
    (forwarded_to_workers); until it can stop with the others it records them (StopRecord, for
    the life of the process: fit's GracefulStop counts those that came before it)."""
    how = dict(how)
    die_with_parent(how.pop("parent"))  # the launching process, or the fork server that dies with it
    if hasattr(os, "setpgid"):
        os.setpgid(0, 0)
    stop_signals_as_launched(how.pop("ignored_signals"))  # a forked worker starts with the fork server's
    stop_signals_act_as_ctrl_c()
    StopRecord().begin()
    join_group(backend_for(how.get("trainer.device")))
    trained = False
    try:
        train_as_rank(Path(run_dir), how, trust, evaluate_test)
        trained = True
    except Exception:
        time.sleep(FAILED_WORKER_WAITS)
        raise
    finally:
        leave_group(together=trained)


def leave_group(together: bool) -> None:
    """The end of a rank, in order: the ranks that trained to the end wait for each other (rank 0
    still closes the run; connections torn down meanwhile would break its), the DDP objects that
    hold the group are freed now, not in the interpreter's teardown (a native thread still running
    there aborts the process), then the group goes. A failed rank leaves at once (the launcher
    ends the others) without the crash dump PyTorch's launcher enabled (faulthandler): a dead
    peer's connections may abort it on the way out, and the run's one line says how it ended."""
    if together:
        try:
            dist.barrier()
        except RuntimeError:  # a peer ended meanwhile (rank 0 stopped at once): leave as a failed rank does
            together = False
    if not together:
        faulthandler.disable()
    gc.collect()
    dist.destroy_process_group()


def join_group(backend: str) -> None:
    """init_process_group from the launcher's environment. After a restart (trainer.max_restarts)
    the launcher's store still holds the first attempt's addresses under the same keys, and a new
    rank would connect to a process that is gone: each attempt gets keys of its own."""
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    if attempt == 0:
        dist.init_process_group(backend)
        return
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    hosts = rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), size, is_master=hosts,
                          timeout=datetime.timedelta(minutes=10))
    dist.init_process_group(backend, store=dist.PrefixStore(f"dl_attempt_{attempt}", store), rank=rank, world_size=size)


def train_as_rank(run_dir: Path, how: dict, trust: Sequence[str], evaluate_test: bool) -> None:
    """Restore the run from its last.pt and train this rank's part; rank 0 writes the run."""
    world = current_world()
    cfg = load_saved_config(run_dir, trust)
    how = dict(how)
    quiet = bool(how.pop("quiet", False))
    extra = how.pop("rank_zero_callbacks", [])
    threads = how.pop("threads", None)
    for key, value in how.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    on_gpu = backend_for(cfg.trainer.device) == "nccl"
    if on_gpu:
        torch.cuda.set_device(world.local_rank)
    cfg.trainer.device = f"cuda:{world.local_rank}" if on_gpu else "cpu"
    cfg.trainer.devices = 1  # this process trains one device's share
    if not on_gpu:  # the machine's cores (or the sweep trial's share of them), shared by the processes on it
        cores = threads or usable_cores()
        torch.set_num_threads(max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", world.size))))
    sync_batchnorm = bool(cfg.trainer.get("sync_batchnorm", False))
    cfg.trainer.sync_batchnorm = False  # checked by the parent; converted below
    experiment = build_experiment(cfg, restoring=True)
    session = experiment.session
    state = restore(session, load_checkpoint(run_dir / "checkpoints" / "last.pt"), run_dir / "config.yaml")
    if world.rank:  # random draws (dropout, augmentation) differ between ranks, reproducibly from the seed and the rank
        torch.manual_seed((int(cfg.seed) * 1_000_003 + world.rank * 7919 + state.epoch) % 2**63)
    if sync_batchnorm:
        session.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(session.model)  # the same parameters, synced statistics
    session.world = world
    session.train_model = DistributedDataParallel(session.model, device_ids=[world.local_rank] if on_gpu else None)
    if world.main:
        reporter = Reporter(Console(quiet=quiet), show_progress=bool(cfg.trainer.progress) and not quiet)
        request = RunRequest(cfg, reporter=reporter, callbacks=[*map(_built, extra)], evaluate_test=evaluate_test, run_dir=run_dir)
        request = with_config_callbacks(request)
        if state.epoch:
            reporter.log(f"resuming {run_dir} after epoch {state.epoch}")
        update_summary(run_dir, status="running", message=None)
        result = run_in(experiment, state, request, resumed=state.epoch > 0)
        if result.status != "completed" and not session.stopped_together:
            # rank 0 stopped on its own (an image it could not read, a second Ctrl-C): the others wait in
            # a collective. The run is closed; a non-zero exit makes the launcher stop them.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        return
    if cfg.trainer.get("compile"):
        compile_session(session)  # rank 0 says how it went
    try:
        fit(session, state, [])
    except (NonFiniteLoss, TrialPruned, KeyboardInterrupt, StoppedWithRankZero):
        pass  # every rank stops alike; rank 0 records how the run ended


def _built(spec: dict):
    """A callback from {_target_, arguments} the launching process handed over (never read from a file)."""
    arguments = dict(spec)
    return resolve_target(arguments.pop("_target_"), "callbacks")(**arguments)


def _as_torchrun_worker(request: RunRequest) -> TrainResult:
    """Started by torchrun: the process group exists (or is made from torchrun's environment); rank 0
    creates the run directory and sends its path to the others, then every rank trains."""
    cfg, reporter = request.config, request.reporter
    if not dist.is_initialized():
        dist.init_process_group(backend_for(cfg.trainer.device))
    world_size, trained = dist.get_world_size(), False
    if world_size != devices_of(cfg):
        cfg.trainer.devices = world_size  # torchrun decides how many processes there are
    try:
        where: list = [None]
        lock = None
        if dist.get_rank() == 0:
            try:
                _, run_dir, lock = start_new_run(replace(request, run_dir=None))
                update_summary(run_dir, world_size=world_size, per_rank_batch=int(cfg.trainer.batch_size) // world_size)
                where = [str(run_dir)]
            except UserError as exc:  # every rank must hear it, or the others wait for a path forever
                where = [exc]
        dist.broadcast_object_list(where, src=0)
        if isinstance(where[0], UserError):
            raise where[0]
        how = {key: OmegaConf.select(cfg, key) for key in HOW_IT_RUNS}
        # rank 0 speaks for the run, as the command was told to (-q, --json: only the final line or the JSON)
        how["quiet"] = dist.get_rank() != 0 or bool(reporter.console.quiet)
        how["trainer.progress"] = bool(how["trainer.progress"]) and reporter.show_progress
        try:
            train_as_rank(Path(where[0]), how, targets_of(cfg), request.evaluate_test)
        finally:
            if lock is not None:
                lock.release()
        trained = True
        return TrainResult(Path(where[0]), read_summary(Path(where[0])))
    finally:
        leave_group(together=trained)
