"""Does TPE find better settings than random search for the same budget? Measured, not assumed.

The same space and budget for `dl sweep random` and `dl sweep tpe`: the default MLP on the bundled
digits for a few epochs (so the settings matter), over the learning rate (log scale), weight
decay, dropout and width, 30 trials per sweep, several seeds. Prints, per kind, the mean (and each
seed's) best validation accuracy, how many trials each sweep needed to first reach the target,
and Optuna's cost per trial (ask + tell + journal, from summary.json).

    python benchmarks/sweep_search.py [--trials 30] [--seeds 0 1 2 3 4] [--target 0.93] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import pandas as pd

SPACE = [
    "optim.lr=tag(log,interval(1e-4,1))",
    "optim.weight_decay=interval(0,0.01)",
    "model.dropout=interval(0,0.6)",
    "model.hidden=choice([16],[64],[256])",
]


def run(kind: str, seed: int, trials: int, epochs: int, root: Path) -> tuple[pd.DataFrame, dict]:
    from dlcli.sweep import SweepSettings, run_sweep

    settings = SweepSettings(kind, [*SPACE, f"trainer.epochs={epochs}", "optim.momentum=0"], trials=trials, seed=seed)
    result = run_sweep(settings, jobs=1, threads=1, name=f"{kind}-{seed}", runs_dir=str(root), log=lambda line: None)
    frame = pd.read_csv(result.sweep_dir / "results.csv").sort_values("number")
    return frame, result.summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--target", type=float, default=0.93)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        found = {"random": [], "tpe": []}
        needed = {"random": [], "tpe": []}
        costs = {"random": [], "tpe": []}
        for seed in args.seeds:
            for kind in ("random", "tpe"):  # interleaved, seed by seed
                frame, summary = run(kind, seed, args.trials, args.epochs, Path(folder) / "runs")
                accuracy = frame["val_accuracy"]
                found[kind].append(float(accuracy.max()))
                reached = frame.index[accuracy.cummax() >= args.target]
                needed[kind].append(int(frame.loc[reached[0], "number"]) + 1 if len(reached) else None)
                costs[kind].append(summary.get("study_ms_per_trial"))
        print(f"{args.trials} trials per sweep, seeds {args.seeds}, digits MLP {args.epochs} epochs, target val_accuracy {args.target}")
        for kind in ("random", "tpe"):
            reach = [n for n in needed[kind] if n is not None]
            print(f"{kind:>6}: mean best val_accuracy {statistics.fmean(found[kind]):.4f} (per seed "
                  f"{', '.join(f'{v:.4f}' for v in found[kind])}); trials to reach {args.target}: "
                  f"{', '.join(str(n) if n else 'never' for n in needed[kind])}"
                  + (f" (mean {statistics.fmean(reach):.1f} where reached)" if reach else "")
                  + f"; Optuna ms per trial {', '.join(f'{c:.1f}' for c in costs[kind])}")


if __name__ == "__main__":
    main()
