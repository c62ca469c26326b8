"""Wall time of a small sweep with --jobs 1 against --jobs 2 (and more, if given).

Each sweep is 8 small trials (the digits MLP). --jobs 1 runs them one after another in this
process with every core; --jobs N runs N at a time in worker processes with cores/N threads each,
process start-up included. Sweeps are interleaved and the minimum over repeats is taken.

    python benchmarks/sweep_parallel.py [--repeats 2] [--epochs 10] [--jobs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from dlcli.sweep import SweepSettings, run_sweep

GRID = ["optim.lr=0.3,0.1,0.03,0.01", "model.hidden=[64],[256]"]


def timed_sweep(jobs: int, epochs: int, root: str) -> float:
    settings = SweepSettings("grid", [*GRID, f"trainer.epochs={epochs}"])
    started = time.perf_counter()
    result = run_sweep(settings, jobs=jobs, runs_dir=root, log=lambda line: None)
    seconds = time.perf_counter() - started
    assert result.summary["counts"] == {"completed": 8}, result.summary
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--jobs", type=int, nargs="+", default=[2])
    args = parser.parse_args()
    times = {jobs: [] for jobs in [1, *args.jobs]}
    with tempfile.TemporaryDirectory() as root:
        for _ in range(args.repeats):
            for jobs in times:
                times[jobs].append(timed_sweep(jobs, args.epochs, root))
    base = min(times[1])
    print(f"8-trial grid sweep (digits MLP, {args.epochs} epochs per trial), min of {args.repeats}")
    for jobs, values in times.items():
        print(f"--jobs {jobs}: {min(values):6.1f} s   speed-up over --jobs 1: {base / min(values):.2f}x")


if __name__ == "__main__":
    main()
