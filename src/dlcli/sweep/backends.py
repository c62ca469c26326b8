"""Where trials run: this process (--jobs 1), a local process pool (--jobs N, spread over the GPUs
when there are several, K per GPU with --trials-per-gpu K), or Ray tasks on a cluster (--backend
ray, fractional GPUs for K per GPU). Each reports trials as they finish, so failures show at once
and results are saved trial by trial, and each takes the next trial only when a slot is free: the
sweep asks its study for a trial at that moment, so the sampler has seen every finished one."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Iterable, Iterator

import torch

from dlcli.errors import UserError, first_line
from dlcli.system import fork_server
from dlcli.system.interrupts import StopRecord, ctrl_c_deferred, pool_worker_stance, signal_children
from dlcli.system.machine import usable_cores
from dlcli.system.processes import die_with_parent
from dlcli.sweep.trial import TrialSpec, run_trial

OnResult = Callable[[dict], bool]  # returns False to stop the sweep (fail-fast)
# what the fork server imports once for all the pool's workers (dlcli.system.fork_server): a trial
# and all it imports, and torch._dynamo, which every torch.optim optimizer imports as it is built
# (~1.3 s of CPU per worker otherwise)
TRIAL_IMPORTS = ("dlcli.sweep.backends", "torch._dynamo")


def run_in_process(specs: Iterable[TrialSpec], on_result: OnResult) -> None:
    threads = torch.get_num_threads()
    try:
        for spec in specs:
            if not on_result(run_trial(spec)):
                return
    finally:
        torch.set_num_threads(threads)


def plan_slots(jobs: int | None, trials_per_gpu: int | None, gpus: int, backend: str = "local") -> tuple[int, float, str | None]:
    """(jobs, GPUs per Ray trial, a note) for --jobs and --trials-per-gpu K on `gpus` visible GPUs.

    K trials share each GPU: locally jobs = gpus * K (slot k trains on cuda:(k mod gpus), see
    slot_device), on Ray each trial asks for 1/K of a GPU. Without CUDA the option does nothing
    but say so: CPU trials share the cores through --jobs."""
    if trials_per_gpu is None:
        return jobs or 1, 0.0, None
    if backend == "ray":  # the cluster's GPUs, not this machine's: each trial asks Ray for 1/K of one
        return jobs or max(gpus, 1) * trials_per_gpu, 1.0 / trials_per_gpu, None
    if gpus == 0:
        return jobs or 1, 0.0, "--trials-per-gpu: no CUDA GPU here, so it does nothing; CPU trials share the cores through --jobs"
    most = gpus * trials_per_gpu
    if jobs is not None and jobs > most:
        raise UserError(f"--jobs {jobs} would put more than {trials_per_gpu} trials on a GPU ({gpus} visible): "
                        f"give --jobs {most} or less, or raise --trials-per-gpu")
    return jobs or most, 0.0, None


def slot_device(slot: int, gpus: int) -> str | None:
    """The device of pool slot `slot`: round-robin over several GPUs, so with jobs = gpus * K each
    GPU gets K trials at once; None (the auto device) with one GPU or none."""
    return f"cuda:{slot % gpus}" if gpus > 1 else None


_worker_device: str | None = None
_worker_stops: StopRecord | None = None  # a Ctrl-C recorded there: this worker starts no more trials


def gpu_group(slot: int, gpus: int, devices: int) -> str | None:
    """The GPUs of pool slot `slot` when each trial trains on `devices` of them (trainer.devices):
    slot k gets GPUs k*devices .. (k+1)*devices - 1, as CUDA_VISIBLE_DEVICES; None without GPUs."""
    if devices <= 1 or gpus == 0:
        return None
    return ",".join(str(g) for g in range(slot * devices, (slot + 1) * devices))


def _init_worker(slots, gpus: int, devices: int = 1, parent_pid: int | None = None) -> None:
    """Each pool worker takes a slot; with several GPUs, slot k trains on cuda:(k mod GPUs).
    Ctrl-C (which reaches every process of the terminal's group) makes an idle worker refuse the
    trials queued for it; a running trial's own stop (dlcli.engine.checkpoint) passes it on to the
    worker's record, so the trial stops as interrupted and the worker then refuses the rest too
    (dlcli.system.interrupts.pool_worker_stance).

    A worker ends with its parent (the sweep process, or the fork server that ends with it): killed
    (SIGKILL), the sweep cannot tell it to stop, and a worker left waiting for its next trial would
    wait forever. Its trial in progress is lost, as a killed trial is: `--resume` runs it again
    from scratch."""
    global _worker_device, _worker_stops
    if parent_pid is not None:
        die_with_parent(parent_pid)
    slot = slots.get()
    group = gpu_group(slot, gpus, devices)
    if group is not None:  # the trial's launcher gives its workers the slot's GPUs, and only those
        os.environ["CUDA_VISIBLE_DEVICES"] = group
    _worker_device = slot_device(slot, gpus) if devices <= 1 else None
    _worker_stops = pool_worker_stance()


def _run_in_worker(spec: TrialSpec) -> dict:
    if _worker_stops is not None and _worker_stops.requested:
        return {"number": spec.number, "status": "not started", "params": spec.params}
    if _worker_device is not None and spec.device is None:
        spec.device = _worker_device
    return run_trial(spec)


def pool_context(threads: int, fork: bool = True):
    """Fork when it is safe, else fork from dl's fork server, else spawn.

    A forked worker starts at once with torch already imported, which is what makes --jobs pay off
    for small trials. Forking this process is safe only on Linux, without CUDA (a CUDA context
    does not survive fork), and with one thread per trial: a worker that starts an OpenMP pool of
    its own after the parent's was running can deadlock. Otherwise the workers fork from the fork
    server, which has imported a trial's modules once and started neither threads nor CUDA
    (dlcli.system.fork_server); where there is none, each is a fresh (spawned) interpreter.
    """
    if fork and sys.platform == "linux" and threads == 1 and not torch.cuda.is_available():
        return multiprocessing.get_context("fork")
    if fork_server.start_method() == "forkserver":
        fork_server.ready_server(TRIAL_IMPORTS)
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


class Slots:
    """Where trials run, `jobs` at a time: a process pool or Ray. Each backend says how to start a
    trial, wait for one, read its record and stop the rest; `fill_wait_drain` is the one loop."""

    def submit(self, spec: TrialSpec): ...
    def wait_any(self, pending: set): ...  # a handle of a finished trial
    def record(self, handle) -> dict | None: ...  # None: the trial never started
    def stop(self, pending: set) -> list[dict]: ...  # cancel what is queued, interrupt what runs, their records


def fill_wait_drain(specs: Iterable[TrialSpec], jobs: int, slots: Slots, on_result: OnResult) -> None:
    """Keep `jobs` trials running, each taken only when a slot is free (the sweep asks its study for
    it then), each reported as it finishes. When `on_result` stops the sweep, or on Ctrl-C (re-raised
    here, wherever it lands), no further trial is taken and running ones are interrupted and still
    reported, so the sweep's files match its trial directories."""
    queue: Iterator[TrialSpec] = iter(specs)
    pending: set = set()

    # A Ctrl-C lands between two bytecodes; the bookkeeping below is held whole (ctrl_c_deferred), so
    # that one arriving there still finds every trial it took in `pending` and none reported twice:
    # a trial submitted but not yet added would run, be interrupted, and be missing from the files.
    def fill() -> None:
        while len(pending) < jobs:
            with ctrl_c_deferred():
                spec = next(queue, None)
                if spec is None:
                    return
                pending.add(slots.submit(spec))

    def report(handle) -> bool:
        with ctrl_c_deferred():
            record = slots.record(handle)
            go_on = record is None or on_result(record)
            pending.discard(handle)  # reported: a Ctrl-C from here on does not report it twice
            return go_on

    def drain() -> None:
        for record in slots.stop(pending):
            on_result(record)

    try:
        fill()
        while pending:
            if not report(slots.wait_any(pending)):
                drain()
                return
            fill()
    except KeyboardInterrupt:
        drain()
        raise


class PoolSlots(Slots):
    def __init__(self, pool):
        self.pool = pool

    def submit(self, spec: TrialSpec):
        return self.pool.submit(_run_in_worker, spec)

    def wait_any(self, pending: set):
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        return next(iter(done))

    def record(self, future) -> dict | None:
        if future.cancelled():
            return None
        record = future.result()
        return None if record["status"] == "not started" else record

    def stop(self, pending: set) -> list[dict]:
        for future in pending:
            future.cancel()  # those still queued in this process
        signal_children(signal.SIGINT)  # those running (the terminal's Ctrl-C may not have reached them)
        records = []
        for future in wait(pending).done:
            try:
                record = self.record(future)
            except Exception:  # a worker that died while stopping has nothing to report
                continue
            if record is not None:
                records.append(record)
        return records


def run_in_pool(specs: Iterable[TrialSpec], jobs: int, gpus: int, threads: int, on_result: OnResult, devices: int = 1,
                fork: bool = True) -> None:
    """Trials in `jobs` worker processes (slot k on cuda:(k mod GPUs) when there are several; with
    trainer.devices=N, slot k's trial launches its N processes on its own N GPUs). `fork`: False
    when this process holds what a fork must not copy (a database connection)."""
    context = pool_context(threads, fork)
    slots = context.Queue()
    for slot in range(jobs):
        slots.put(slot)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                               initargs=(slots, gpus, devices, fork_server.parent_of_workers(context.get_start_method())))
    try:
        fill_wait_drain(specs, jobs, PoolSlots(pool), on_result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class RaySlots(Slots):
    def __init__(self, ray, remote):
        self.ray, self.remote = ray, remote

    def submit(self, spec: TrialSpec):
        return self.remote.remote(spec)

    def wait_any(self, pending: set):
        done, _ = self.ray.wait(list(pending), num_returns=1)
        return done[0]

    def record(self, ref) -> dict | None:
        return self.ray.get(ref)

    def stop(self, pending: set) -> list[dict]:
        """Cancel every pending task (running ones get a KeyboardInterrupt and stop as interrupted);
        those that still return a record are reported."""
        for ref in pending:
            self.ray.cancel(ref)
        records = []
        for ref in pending:
            try:
                records.append(self.ray.get(ref))
            except Exception:  # cancelled before it started: nothing ran, nothing to report
                continue
        return records


def run_on_ray(specs: Iterable[TrialSpec], jobs: int, address: str | None, gpus_per_trial: float, on_result: OnResult,
               devices: int = 1) -> None:
    """Trials as Ray tasks; a trial on trainer.devices=N processes asks Ray for N CPUs (and the
    GPUs --gpus-per-trial names: Ray makes them the task's CUDA_VISIBLE_DEVICES)."""
    try:
        import ray  # noqa: PLC0415  (optional extra: pip install dlcli[ray])
    except ImportError:
        raise UserError("--backend ray needs Ray, which is an optional extra: pip install -e \".[ray]\"") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            else:  # a local instance sized for --jobs trials at once
                ray.init(num_cpus=jobs * devices, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                         object_store_memory=100 * 1024**2)
        except Exception as exc:
            raise UserError(f"--backend ray could not {'reach ' + address if address else 'start a local instance'}: {first_line(exc)}") from None
    try:
        remote = ray.remote(num_cpus=devices, num_gpus=gpus_per_trial, max_retries=0)(run_trial)
        fill_wait_drain(specs, jobs, RaySlots(ray, remote), on_result)
    finally:
        if started_here:
            ray.shutdown()


def default_threads(jobs: int) -> int:
    """Each concurrent trial's share of the CPU cores this process may use."""
    return max(1, usable_cores() // jobs)
