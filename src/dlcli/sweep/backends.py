"""Where trials run: this process (--jobs 1), a local process pool (--jobs N, one GPU per worker
when there are several), or Ray tasks on a cluster (--backend ray). Each reports trials as they
finish, so failures show at once and results are saved trial by trial."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable

from dlcli.errors import UserError
from dlcli.sweep.trial import TrialSpec, run_trial

OnResult = Callable[[dict], bool]  # returns False to stop the sweep (fail-fast)


def run_in_process(specs: list[TrialSpec], on_result: OnResult) -> None:
    import torch

    threads = torch.get_num_threads()
    try:
        for spec in specs:
            if not on_result(run_trial(spec)):
                return
    finally:
        torch.set_num_threads(threads)


_worker_device: str | None = None
_worker_stopping = False  # set by Ctrl-C: this worker starts no more trials


def _init_worker(slots, gpus: int) -> None:
    """Each pool worker takes a slot; with several GPUs, slot k trains on cuda:(k mod GPUs).
    Ctrl-C (which reaches every process of the terminal's group) makes an idle worker refuse the
    trials queued for it; a running trial's own handler (dlcli.engine.checkpoint) chains to this
    one, so the trial stops as interrupted and the worker then refuses the rest too."""
    global _worker_device
    slot = slots.get()
    _worker_device = f"cuda:{slot % gpus}" if gpus > 1 else None
    signal.signal(signal.SIGINT, _stop_taking_trials)


def _stop_taking_trials(signum, frame) -> None:
    global _worker_stopping
    _worker_stopping = True


def _run_in_worker(spec: TrialSpec) -> dict:
    if _worker_stopping:
        return {"number": spec.number, "status": "not started", "params": spec.params}
    if _worker_device is not None and spec.device is None:
        spec.device = _worker_device
    return run_trial(spec)


def pool_context(threads: int):
    """Fork when it is safe, spawn otherwise.

    A forked worker starts at once with torch already imported, which is what makes --jobs pay off
    for small trials. It is safe only on Linux, without CUDA (a CUDA context does not survive
    fork), and with one thread per trial: a worker that starts an OpenMP pool of its own after
    the parent's was running can deadlock. Anything else gets fresh (spawned) interpreters.
    """
    import sys

    import torch

    if sys.platform == "linux" and threads == 1 and not torch.cuda.is_available():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def run_in_pool(specs: list[TrialSpec], jobs: int, gpus: int, on_result: OnResult) -> None:
    """Trials in `jobs` worker processes, reported as they finish. On Ctrl-C (KeyboardInterrupt
    here, re-raised) or when `on_result` stops the sweep, queued trials never start and running
    ones are interrupted and still reported, so the sweep's files match its trial directories."""
    context = pool_context(specs[0].threads if specs else 1)
    slots = context.Queue()
    for slot in range(jobs):
        slots.put(slot)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(slots, gpus))
    pending = {pool.submit(_run_in_worker, spec) for spec in specs}
    try:
        while pending:
            try:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                _drain(pending, on_result)
                raise
            for future in done:
                record = _record_of(future)
                if record is not None and not on_result(record):
                    _drain(pending, on_result)
                    return
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _record_of(future) -> dict | None:
    """The trial's record, or None for a trial that never started."""
    if future.cancelled():
        return None
    record = future.result()
    return None if record["status"] == "not started" else record


def _drain(pending: set, on_result: OnResult) -> None:
    """Stop: queued trials are cancelled, running ones interrupted, waited for and reported."""
    for future in pending:
        future.cancel()  # those still queued in this process
    _interrupt_workers()  # those running (the terminal's Ctrl-C may not have reached them)
    for future in wait(pending).done:
        try:
            record = _record_of(future)
        except Exception:  # a worker that died while stopping has nothing to report
            continue
        if record is not None:
            on_result(record)


def _interrupt_workers() -> None:
    """Ctrl-C to this process's worker processes."""
    for child in multiprocessing.active_children():
        try:
            os.kill(child.pid, signal.SIGINT)
        except (ProcessLookupError, PermissionError):
            pass


def run_on_ray(specs: list[TrialSpec], jobs: int, address: str | None, gpus_per_trial: float, on_result: OnResult) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray, which is an optional extra: pip install -e \".[ray]\"") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            else:  # a local instance sized for --jobs trials at once
                ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                         object_store_memory=100 * 1024**2)
        except Exception as exc:
            raise UserError(f"--backend ray could not {'reach ' + address if address else 'start a local instance'}: {str(exc).splitlines()[0]}") from None
    try:
        remote = ray.remote(num_cpus=1, num_gpus=gpus_per_trial, max_retries=0)(run_trial)
        pending = {remote.remote(spec) for spec in specs}
        while pending:
            try:
                done, rest = ray.wait(list(pending), num_returns=1)
            except KeyboardInterrupt:
                _drain_ray(ray, pending, on_result)
                raise
            pending = set(rest)
            if not on_result(ray.get(done[0])):
                _drain_ray(ray, pending, on_result)
                return
    finally:
        if started_here:
            ray.shutdown()


def _drain_ray(ray, pending: set, on_result: OnResult) -> None:
    """Stop: cancel every pending task (running ones get a KeyboardInterrupt and stop as
    interrupted) and report those that still return a record."""
    for ref in pending:
        ray.cancel(ref)
    for ref in pending:
        try:
            record = ray.get(ref)
        except Exception:  # cancelled before it started: nothing ran, nothing to report
            continue
        on_result(record)


def default_threads(jobs: int) -> int:
    """Each concurrent trial's share of the CPU cores this process may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)
