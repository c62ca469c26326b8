"""Where a sweep's time goes beyond training, with --jobs 1 and --jobs 2, on short and longer trials.

For each setting it runs a 2-trial and an 8-trial grid sweep of the digits MLP (the same trials,
interleaved, minimum over repeats) and reports:
  - the whole sweep's wall time (8 trials), what the user waits for;
  - the cost per trial beyond training: the wall time each extra trial adds, less the training
    time it adds (the epochs' own seconds from metrics.csv, divided by the trials running at once);
  - the fixed cost: what a sweep costs besides its trials (start, checks, study, workers, the test
    look), the 2-trial sweep's wall time less two trials' share.
Then, end to end, `dl sweep grid optim.lr=0.3,0.1,0.03,0.01 -q` as a fresh process (what a user
types), against a fresh process that only imports the libraries every sweep needs (torch, its
compiler stack, which torch.optim loads on first use, scikit-learn, pandas, Optuna, Hydra).

    python benchmarks/sweep_parallel.py [--repeats 3] [--epochs 1 10] [--jobs 1 2]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dlcli.sweep import SweepSettings, run_sweep

RATES = ["0.3", "0.2", "0.1", "0.05", "0.03", "0.02", "0.01", "0.005"]


def timed_sweep(trials: int, jobs: int, epochs: int, root: str) -> tuple[float, float]:
    """(wall seconds, training seconds summed over the trials' epochs)."""
    settings = SweepSettings("grid", [f"optim.lr={','.join(RATES[:trials])}", f"trainer.epochs={epochs}"])
    started = time.perf_counter()
    result = run_sweep(settings, jobs=jobs, runs_dir=root, log=lambda line: None)
    wall = time.perf_counter() - started
    assert result.summary["counts"] == {"completed": trials}, result.summary
    training = 0.0
    for metrics in Path(result.sweep_dir).glob("trials/*/metrics.csv"):
        with metrics.open() as file:
            training += sum(float(row["seconds"]) for row in csv.DictReader(file))
    return wall, training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    settings = [(epochs, jobs) for epochs in args.epochs for jobs in args.jobs]
    walls = {(s, n): [] for s in settings for n in (2, 8)}
    training = {(s, n): [] for s in settings for n in (2, 8)}
    with tempfile.TemporaryDirectory() as root:
        timed_sweep(2, 1, 1, root)  # imports and first compositions: not what a sweep in a fresh process pays twice
        for _ in range(args.repeats):
            for setting in settings:
                for trials in (2, 8):
                    wall, trained = timed_sweep(trials, setting[1], setting[0], root)
                    walls[setting, trials].append(wall)
                    training[setting, trials].append(trained)
    print(f"grid sweeps of the digits MLP, min of {args.repeats} interleaved repeats (seconds)")
    print(f"{'epochs':>6} {'jobs':>4} {'8 trials':>9} {'per trial':>10} {'of it training':>15} {'beyond':>7} {'fixed':>6}")
    for epochs, jobs in settings:
        w2, w8 = min(walls[(epochs, jobs), 2]), min(walls[(epochs, jobs), 8])
        t2, t8 = min(training[(epochs, jobs), 2]), min(training[(epochs, jobs), 8])
        per_trial = (w8 - w2) / 6
        trained = (t8 - t2) / 6 / jobs  # trials train side by side: each adds its training / jobs to the wall time
        fixed = w2 - 2 * per_trial
        print(f"{epochs:>6} {jobs:>4} {w8:>9.2f} {per_trial:>10.3f} {trained:>15.3f} {per_trial - trained:>7.3f} {fixed:>6.2f}")
    end_to_end(args.repeats)


IMPORTS = "import torch, torch._dynamo, sklearn.datasets, pandas, optuna, hydra, dlcli.cli"


def end_to_end(repeats: int) -> None:
    command = [sys.executable, "-m", "dlcli", "sweep", "grid", "optim.lr=0.3,0.1,0.03,0.01", "-q"]
    sweep_walls, import_walls, trials = [], [], []
    with tempfile.TemporaryDirectory() as root:
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", IMPORTS], check=True)
            import_walls.append(time.perf_counter() - started)
            started = time.perf_counter()
            subprocess.run(command, cwd=root, check=True, stdout=subprocess.DEVNULL)
            sweep_walls.append(time.perf_counter() - started)
            newest = sorted(Path(root).glob("runs/sweeps/sweep/*"))[-1]
            with (newest / "results.csv").open() as file:
                trials.append(sum(float(row["seconds"]) for row in csv.DictReader(file)))
    print(f"\nend to end, min of {repeats}: {' '.join(command[3:])} (4 trials, 20 epochs each)")
    print(f"  whole command {min(sweep_walls):.2f} s = trials {min(trials):.2f} s + the rest "
          f"{min(sweep_walls) - min(trials):.2f} s, of which importing the libraries {min(import_walls):.2f} s")


if __name__ == "__main__":
    main()
