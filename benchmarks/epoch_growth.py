"""Does an epoch cost more late in a run than early? The marginal cost of an epoch, from whole runs.

A whole run of N epochs costs a fixed part (config, run directory, the test look, the diagnosis)
plus N epochs. Timing whole runs of 100, 400 and 1,600 epochs through the library API
(`compose()` + `train()`, as whole_run.py does) gives the cost of an added epoch early in a run,
(t(400) - t(100)) / 300, and late in it, (t(1600) - t(400)) / 1200. Anything done after each
epoch that is O(epochs so far) -- rewriting metrics.csv or summary.json whole, scanning a history
in a callback, the progress display, a logger -- makes the late cost larger; per-epoch bookkeeping
that is O(1) keeps the two equal. Each run is timed by the wall clock and by this process's CPU
time (steadier on a shared machine, where other people's work stretches the wall clock but not
the CPU time a run takes); the runs are interleaved and the minimum over repeats is taken. The
same marginal costs of a hand-written PyTorch loop (whole_run.py's iris loop) are printed beside
them: what the numerics alone do as the loss shrinks, with no bookkeeping at all. Last, the same
question inside one 1,600-epoch run: the CPU time of a late epoch against an early one, each
epoch's bookkeeping included (free of the noise of the runs' fixed part).

Target: dl's late/early <= 1.10 (CPU time; the wall clock is printed too).

    python benchmarks/epoch_growth.py [--repeats 3] [--threads 1] [--quick]

`--quick` runs 5, 20 and 80 epochs once, without the pictures (the suite checks that the benchmark
runs; such short runs are too small to judge the target, and a drawing process per run would cost
the check more than its runs do). One torch thread by default: the per-epoch bookkeeping
is Python's, and a single thread's CPU time is not inflated by other threads spinning while they
wait for a core of a busy machine.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path

import torch

from whole_run import dl_run, hand_written_long_run
from dlcli.engine.callbacks import Callback
from dlcli.tracking.plots import wait_for_pictures

FULL = (100, 400, 1600)
QUICK = (5, 20, 80)
TARGET = 1.10


class EpochCpuClock(Callback):
    """This thread's CPU time at the end of each epoch, bookkeeping included (on_epoch_end runs
    after metrics.csv, the checkpoints and the printed line have taken the epoch)."""

    def __init__(self):
        self.ends: list[float] = []

    def on_epoch_end(self, state, row, improved) -> None:
        self.ends.append(time.thread_time())


def within_run(ends: list[float]) -> float:
    """Median CPU time of the last 200 epochs / of epochs 51-250: the same question inside one run,
    free of the fixed part's noise (the whole runs also catch what a run's end does)."""
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    return statistics.median(gaps[-200:]) / statistics.median(gaps[50:250])


def dl_iris(epochs: int, root: Path, clock: EpochCpuClock | None = None, plots: bool = True) -> None:
    dl_run(["data=iris", f"trainer.epochs={epochs}", "trainer.device=cpu", "trainer.progress=false", f"runs_dir={root}",
            f"trainer.plots={str(plots).lower()}"], [clock] if clock is not None else [])


def hand_iris(epochs: int, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)  # where its best.pt goes
    hand_written_long_run(epochs, [], root)


def measured(run, epochs: int, root: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one whole run; its pictures are drawn outside the timing."""
    wall, cpu = time.perf_counter(), time.process_time()
    run(epochs, root)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    wait_for_pictures()  # drawn by another process after a run: never let it overlap the next timing
    return wall, cpu


def marginal_costs(times: dict[int, float], sizes: tuple[int, int, int]) -> tuple[float, float]:
    """Seconds per added epoch early ((t(b) - t(a)) / (b - a)) and late ((t(c) - t(b)) / (c - b))."""
    a, b, c = sizes
    return (times[b] - times[a]) / (b - a), (times[c] - times[b]) / (c - b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steady CPU times)")
    parser.add_argument("--quick", action="store_true", help="5/20/80 epochs, once: checks the benchmark runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes, repeats = (QUICK, 1) if args.quick else (FULL, args.repeats)
    sides = {"dl": functools.partial(dl_iris, plots=not args.quick), "hand-written": hand_iris}
    times = {(side, clock, n): [] for side in sides for clock in ("wall", "cpu") for n in sizes}
    with tempfile.TemporaryDirectory(prefix="dl-epoch-growth-") as tmp:
        root = Path(tmp)
        for run in sides.values():  # warm up: imports and first-call costs are not what an epoch costs
            measured(run, sizes[0], root / "warmup")
        for repeat in range(repeats):  # interleaved, so drift in the machine's load hits every size alike
            for n in sizes:
                for side, run in sides.items():
                    wall, cpu = measured(run, n, root / f"{side}-{repeat}-{n}")
                    times[(side, "wall", n)].append(wall)
                    times[(side, "cpu", n)].append(cpu)
    a, b, c = sizes
    print(f"iris, whole runs of {a}, {b} and {c} epochs through the library API, {args.threads} torch thread(s), "
          f"min of {repeats} interleaved repeat(s); marginal cost of an epoch, early = ({b} - {a}), late = ({c} - {b})")
    for side in sides:
        for clock in ("cpu", "wall"):
            early, late = marginal_costs({n: min(times[(side, clock, n)]) for n in sizes}, sizes)
            print(f"{side:<13} {clock:<4} early {1000 * early:7.3f} ms/epoch  late {1000 * late:7.3f} ms/epoch  "
                  f"late/early {late / early:.3f}")
    note = "  (--quick: too short to judge)" if args.quick else ""
    print(f"target: dl cpu late/early <= {TARGET:.2f}{note}")
    if not args.quick:
        clocks = [EpochCpuClock() for _ in range(repeats)]
        with tempfile.TemporaryDirectory(prefix="dl-epoch-growth-") as tmp:
            for repeat, clock in enumerate(clocks):
                dl_iris(sizes[-1], Path(tmp) / str(repeat), clock)
                wait_for_pictures()
        ratio = statistics.median(within_run(clock.ends) for clock in clocks)
        print(f"dl within one {sizes[-1]}-epoch run: CPU time of a late epoch / an early one (median of {repeats}) "
              f"{ratio:.3f}  (target <= {TARGET:.2f})")


if __name__ == "__main__":
    main()
