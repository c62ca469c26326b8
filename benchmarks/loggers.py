"""What watching a run costs per epoch: the benchmark MLP with the diagnostics off, with them on
(the default), and with logger=tensorboard and logger=mlflow (its local SQLite store) on top, in
one process, interleaved, minimum over repeats.

An epoch's cost is the time from one epoch's end to the next, measured by a callback placed after
every other one, so it holds the training, the validation and every callback's work for the
epoch, the loggers included. The runs' start and end (opening the MLflow run, the hparams, the
artifacts) are fixed costs of a run, reported apart.

Targets: diagnostics <= 1.05 against none; <= 1.05 for TensorBoard and <= 1.10 for MLflow
against the default run.

    python benchmarks/loggers.py [--repeats 5] [--epochs 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from whole_run import WORKLOADS, dl_overrides, dl_run  # noqa: E402  (the same MLP as the whole-run benchmark)

from dlcli.engine.callbacks import Callback  # noqa: E402
from dlcli.tracking.plots import wait_for_pictures  # noqa: E402

LOGGERS = {"no diagnostics": ["trainer.diagnostics=false"], "none": [], "tensorboard": ["logger=tensorboard"],
           "mlflow": ["logger=mlflow"]}


class EpochClock(Callback):
    def __init__(self):
        self.ends: list[float] = []

    def on_epoch_end(self, state, row, improved) -> None:
        self.ends.append(time.perf_counter())


def one_run(logger: str, epochs: int, runs_dir: Path) -> tuple[float, float]:
    """(median seconds per epoch, whole run seconds) for one run."""
    work = next(w for w in WORKLOADS if w.name == "small")
    overrides = [*dl_overrides(work, runs_dir), f"trainer.epochs={epochs}", *LOGGERS[logger]]
    clock = EpochClock()
    started = time.perf_counter()
    dl_run(overrides, callbacks=[clock])
    whole = time.perf_counter() - started
    wait_for_pictures()
    gaps = [b - a for a, b in zip(clock.ends, clock.ends[1:])]
    return statistics.median(gaps), whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    best_epoch = {name: float("inf") for name in LOGGERS}
    best_whole = dict(best_epoch)
    with tempfile.TemporaryDirectory() as tmp:
        for name in LOGGERS:  # warm-up: imports, the MLflow database's tables
            one_run(name, 3, Path(tmp))
        for _ in range(args.repeats):
            for name in LOGGERS:
                per_epoch, whole = one_run(name, args.epochs, Path(tmp))
                best_epoch[name] = min(best_epoch[name], per_epoch)
                best_whole[name] = min(best_whole[name], whole)
    print(f"MLP 16-256-256-10, 1,500 samples, batch 32, {args.epochs} epochs; minimum of {args.repeats} interleaved repeats")
    for name in LOGGERS:
        base = "no diagnostics" if name == "none" else "none"  # diagnostics against nothing; loggers against the default
        label = "diagnostics (default)" if name == "none" else name
        print(f"  {label:22s} epoch {best_epoch[name] * 1000:7.2f} ms  ratio {best_epoch[name] / best_epoch[base]:.3f}"
              f"   whole run {best_whole[name]:.2f} s  ratio {best_whole[name] / best_whole[base]:.3f}   (against {base})")


if __name__ == "__main__":
    main()
