"""What starting a run's worker processes costs: forked from dl's fork server (the default on Linux)
against spawned as fresh interpreters (DL_START_METHOD=spawn), measured in the same run.

Each setting runs `dl train data=wine trainer.epochs=1 trainer.devices=N trainer.device=cpu` (a run
whose time is almost all start-up) as a fresh process, interleaved, repeated; reported is the
minimum of each setting's wall seconds and of its CPU seconds (user + system) over every process
of the run: the command, the fork server, the workers, multiprocessing's resource tracker. This
process is a child subreaper (Linux), so a process of the run whose parent ended before it (the
fork server outlives the command by a moment) is reaped here and its CPU counted. CPU seconds are
the robust number on a shared machine; wall seconds depend on what else runs.

    python benchmarks/worker_start.py [--repeats 3] [--devices 2]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def become_subreaper() -> None:
    if not sys.platform.startswith("linux") or ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit("this benchmark counts every process of a run, which needs Linux's child subreaper")


def one_run(method: str, devices: int, root: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run and every process it started."""
    environment = {**os.environ, "DL_START_METHOD": method}
    command = [sys.executable, "-m", "dlcli", "train", "data=wine", "trainer.epochs=1", f"trainer.devices={devices}",
               "trainer.device=cpu", "trainer.plots=false", "trainer.progress=false", f"runs_dir={root}", "-q"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{method}: exit {done.returncode}\n{done.stderr}")
    reap_orphans()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def reap_orphans() -> None:
    """Wait for every process of the run that is still ending (adopted here as their parent ended)."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", type=int, default=2)
    args = parser.parse_args()
    become_subreaper()
    results: dict[str, list[tuple[float, float]]] = {"spawn": [], "forkserver": []}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for method in results:
                results[method].append(one_run(method, args.devices, Path(folder) / f"{method}{repeat}"))
    best = {method: (min(w for w, _ in runs), min(c for _, c in runs)) for method, runs in results.items()}
    print(f"dl train data=wine trainer.epochs=1 trainer.devices={args.devices} trainer.device=cpu, min of {args.repeats}:")
    for method, (wall, cpu) in best.items():
        print(f"  {method:10s} {wall:6.1f} s wall  {cpu:6.1f} s CPU")
    (spawn_wall, spawn_cpu), (fork_wall, fork_cpu) = best["spawn"], best["forkserver"]
    print(f"  forkserver / spawn: {fork_wall / spawn_wall:.2f}x wall, {fork_cpu / spawn_cpu:.2f}x CPU")


if __name__ == "__main__":
    main()
