"""Where trials run: this process (--jobs 1), a local process pool (--jobs N, one GPU per worker
when there are several), or Ray tasks on a cluster (--backend ray). Each reports trials as they
finish, so failures show at once and results are saved trial by trial."""

from __future__ import annotations

import logging
import multiprocessing
import os
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


def _init_worker(slots, gpus: int) -> None:
    """Each pool worker takes a slot; with several GPUs, slot k trains on cuda:(k mod GPUs)."""
    global _worker_device
    slot = slots.get()
    _worker_device = f"cuda:{slot % gpus}" if gpus > 1 else None


def _run_in_worker(spec: TrialSpec) -> dict:
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
    context = pool_context(specs[0].threads if specs else 1)
    slots = context.Queue()
    for slot in range(jobs):
        slots.put(slot)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(slots, gpus))
    pending = {pool.submit(_run_in_worker, spec) for spec in specs}
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if not on_result(future.result()):
                    for other in pending:
                        other.cancel()
                    return
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
            done, rest = ray.wait(list(pending), num_returns=1)
            pending = set(rest)
            if not on_result(ray.get(done[0])):
                for ref in pending:
                    ray.cancel(ref)
                return
    finally:
        if started_here:
            ray.shutdown()


def default_threads(jobs: int) -> int:
    """Each concurrent trial's share of the CPU cores this process may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)
