"""Training throughput of one process against several (trainer.devices=N, DistributedDataParallel)
on this machine's CPUs, and what launching the workers costs.

The model is one where compute dominates (LeNet on the digits enlarged to 32x32, batch 256: many
multiply-adds per sample for 62k parameters, so each step's gradient exchange is small), so the
comparison is about sharing the work, not about Python overhead or communication. (The MLP with
two hidden layers of 1024, 1.1M parameters for little compute per sample, measured 0.43x at 2
processes: there the exchange of 4.5 MB of gradients per step over loopback TCP dominates.) Each setting
runs `dl train` end to end as a fresh process, interleaved, minimum over repeats:
  - samples/s: the median over epochs 2..E of the run's own samples_per_second (metrics.csv),
    counted over every rank's samples;
  - launch overhead: the whole command's wall time, less the epochs' own seconds, less the same
    for the one-process run (the extra the workers' start, rendezvous and exit cost).
With N processes on C cores each process gets C/N threads: on a 2-core machine two processes have
the same two cores one process has, so a ratio near 1 is the expected, honest answer there; the
gain comes with more cores per process or one GPU each.

    python benchmarks/distributed.py [--repeats 3] [--devices 2] [--epochs 6]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

MODEL = ["model=lenet", "data.resize=32", "trainer.batch_size=256", "trainer.device=cpu", "trainer.progress=false",
         "trainer.plots=false", "trainer.diagnostics=false"]


def one_run(devices: int, epochs: int, root: Path) -> tuple[float, float, float]:
    """(samples/s, whole command seconds, training seconds)."""
    command = [sys.executable, "-m", "dlcli", "train", *MODEL, f"trainer.epochs={epochs}", f"trainer.devices={devices}", "-q",
               f"runs_dir={root}", f"name=d{devices}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    run = sorted((root / f"d{devices}").iterdir())[-1]
    metrics = pd.read_csv(run / "metrics.csv")
    return float(statistics.median(metrics["samples_per_second"][1:])), wall, float(metrics["seconds"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    results = {1: [], args.devices: []}
    with tempfile.TemporaryDirectory() as root:
        for _ in range(args.repeats):
            for devices in results:
                results[devices].append(one_run(devices, args.epochs, Path(root)))
    best = {d: (max(r[0] for r in rs), min(r[1] for r in rs), min(r[1] - r[2] for r in rs)) for d, rs in results.items()}
    print(f"LeNet on digits at 32x32, batch 256, {args.epochs} epochs, CPU; best of {args.repeats} interleaved runs")
    for devices, (rate, wall, outside) in best.items():
        print(f"  devices={devices}: {rate:10,.0f} samples/s   whole command {wall:5.2f} s   outside the epochs {outside:5.2f} s")
    n = args.devices
    print(f"  throughput ratio {n} processes / 1: {best[n][0] / best[1][0]:.2f}   "
          f"launch overhead: {best[n][2] - best[1][2]:.2f} s")


if __name__ == "__main__":
    main()
