"""A whole run of `dl` against a hand-written PyTorch script doing the same work.

"A whole run" is what a user waits for: make the data, split it, build the model, train, validate
every epoch, keep the best weights on disk, and look at the test split once with them. The
hand-written side does exactly that in plain PyTorch; the `dl` side is `compose()` + `train()`
through the library API (the fixed cost of a run -- config, run directory, metrics.csv,
checkpoints, the test look and the pictures -- counts). Both run in this process, interleaved, and
the minimum over repeats is taken, since shared machines are noisy. Prints ratios dl / hand.

Targets: each workload's ratio <= 1.15, and in a 1,600-epoch iris run the cost of a late epoch
within 10% of an early one (bookkeeping that grows with the epoch count shows up there; the same
ratio of a hand-written loop is printed beside it, as the size of the machine's own drift).

    python benchmarks/whole_run.py [--repeats 9] [--only tiny,small,large,growth]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dlcli.engine.callbacks import Callback
from dlcli.tracking.plots import wait_for_pictures

CLASSES = 10
HIDDEN = 256


@dataclass(frozen=True)
class Workload:
    name: str
    features: int
    samples: int
    epochs: int
    batch_size: int

    def describe(self) -> str:
        return (f"MLP {self.features}-{HIDDEN}-{HIDDEN}-{CLASSES}, {self.samples:,} samples, "
                f"{self.epochs} epochs, batch {self.batch_size}")


WORKLOADS = (
    Workload("tiny", features=4, samples=150, epochs=400, batch_size=32),
    Workload("small", features=16, samples=1_500, epochs=100, batch_size=32),
    Workload("large", features=64, samples=20_000, epochs=5, batch_size=128),
)


def hand_written_run(work: Workload, out_dir: Path) -> float:
    """The same experiment as plain PyTorch: 80/10/10 split, standardized with train statistics,
    SGD with momentum, validation every epoch, best weights saved when validation improves, one
    test look with them. Returns the test accuracy."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=work.samples, n_features=work.features, n_informative=work.features,
                               n_redundant=0, n_repeated=0, n_classes=CLASSES, n_clusters_per_class=1, random_state=0)
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=generator)
    cut = len(y) // 10
    test, val, train = order[:cut], order[cut:2 * cut], order[2 * cut:]
    mean, std = x[train].mean(0), x[train].std(0)
    x = (x - mean) / std
    x_train, y_train, x_val, y_val = x[train], y[train], x[val], y[val]

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(work.features, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                          nn.Linear(HIDDEN, CLASSES))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    best_path, best = out_dir / "best.pt", -1.0
    for _ in range(work.epochs):
        model.train()
        shuffled = torch.randperm(len(y_train), generator=generator)
        loss_sum = torch.zeros(())
        for start in range(0, len(y_train), work.batch_size):
            rows = shuffled[start:start + work.batch_size]
            loss = loss_fn(model(x_train[rows]), y_train[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(rows)
        model.eval()
        with torch.no_grad():
            outputs = model(x_val)
            val_loss = float(loss_fn(outputs, y_val))  # noqa: F841 (a hand loop prints or logs it)
            accuracy = float((outputs.argmax(1) == y_val).float().mean())
        train_loss = float(loss_sum) / len(y_train)  # noqa: F841
        if accuracy > best:
            best = accuracy
            torch.save(model.state_dict(), best_path)
    model.load_state_dict(torch.load(best_path, weights_only=True))
    with torch.no_grad():
        return float((model(x[test]).argmax(1) == y[test]).float().mean())


def dl_overrides(work: Workload, runs_dir: Path) -> list[str]:
    return [
        "data=classification_synthetic", f"data.num_samples={work.samples}", f"data.num_features={work.features}",
        f"data.num_classes={CLASSES}", f"model.hidden=[{HIDDEN},{HIDDEN}]", f"trainer.epochs={work.epochs}",
        f"trainer.batch_size={work.batch_size}", "trainer.device=cpu", "trainer.progress=false", f"runs_dir={runs_dir}",
    ]


def quiet_reporter():
    from rich.console import Console

    from dlcli.engine.progress import Reporter

    return Reporter(Console(quiet=True), show_progress=False)  # as `dl train --quiet` and sweep trials


def dl_run(overrides: list[str], callbacks=()) -> dict:
    from dlcli.config.compose import compose
    from dlcli.run.dispatch import train
    from dlcli.run.request import RunRequest

    result = train(RunRequest(compose(overrides), overrides, quiet_reporter(), callbacks=list(callbacks)))
    assert result.status == "completed", result.summary
    return result.summary


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    seconds = time.perf_counter() - started
    wait_for_pictures()  # drawn in the background after a run: never let them overlap the next timing
    return seconds


class EpochClock(Callback):
    """Records when each epoch ends, bookkeeping included."""

    def __init__(self):
        self.ends: list[float] = []

    def on_epoch_end(self, state, row, improved) -> None:
        self.ends.append(time.perf_counter())


def hand_written_long_run(epochs: int, ends: list[float], out_dir: Path) -> None:
    """The growth baseline: iris, the same model, validation and keep-best, as plain PyTorch."""
    from sklearn.datasets import load_iris

    data = load_iris()
    x, y = torch.as_tensor(data.data, dtype=torch.float32), torch.as_tensor(data.target)
    x = (x - x.mean(0)) / x.std(0)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=generator)
    train, val = order[30:], order[15:30]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn, best = nn.CrossEntropyLoss(), -1.0
    for _ in range(epochs):
        model.train()
        shuffled = train[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(shuffled), 32):
            rows = shuffled[start:start + 32]
            loss = loss_fn(model(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(x[val]).argmax(1) == y[val]).float().mean())
        if accuracy > best:
            best = accuracy
            torch.save(model.state_dict(), out_dir / "best.pt")
        ends.append(time.perf_counter())


def late_over_early(ends: list[float]) -> float:
    """Median epoch time over the last 200 epochs / over epochs 51-250."""
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    return statistics.median(gaps[-200:]) / statistics.median(gaps[50:250])


def epoch_growth(epochs: int, repeats: int, root: Path) -> tuple[float, float]:
    """Late/early epoch-time ratio of a long iris run, for dl and for a hand-written loop (whose
    ratio shows what the machine's drift and the numerics alone do), median over repeats."""
    ours, hand = [], []
    for repeat in range(repeats):
        ends: list[float] = []
        hand_written_long_run(epochs, ends, root)
        hand.append(late_over_early(ends))
        clock = EpochClock()
        dl_run(["data=iris", f"model.hidden=[{HIDDEN},{HIDDEN}]", f"trainer.epochs={epochs}", "trainer.device=cpu",
                "trainer.progress=false", f"runs_dir={root / f'growth-{repeat}'}"], [clock])
        wait_for_pictures()
        ours.append(late_over_early(clock.ends))
    return statistics.median(ours), statistics.median(hand)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--only", default="tiny,small,large,growth", help="comma-separated: tiny, small, large, growth")
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    workloads = [w for w in WORKLOADS if w.name in chosen]
    times: dict[tuple[str, str], list[float]] = {(w.name, side): [] for w in workloads for side in ("hand", "dl")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for work in workloads:  # warm up: imports and first-call costs are not what a run costs
            hand_written_run(work, root)
            dl_run(dl_overrides(work, root / "warmup"))
        for repeat in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            for work in workloads:
                times[(work.name, "hand")].append(timed(hand_written_run, work, root))
                times[(work.name, "dl")].append(timed(dl_run, dl_overrides(work, root / f"runs-{repeat}")))
        print(f"whole runs, {torch.get_num_threads()} threads, min of {args.repeats} interleaved repeats")
        for work in workloads:
            hand, ours = min(times[(work.name, "hand")]), min(times[(work.name, "dl")])
            print(f"{work.name:<6} {work.describe():<52} hand {hand:6.2f}s  dl {ours:6.2f}s  ratio {ours / hand:.3f}")
        print("target: each ratio <= 1.15")
        if "growth" in chosen:
            ours, hand = epoch_growth(1600, max(3, args.repeats // 2), root)
            print(f"growth iris, 1600 epochs: a late epoch / an early one (median of repeats): dl {ours:.3f}, "
                  f"hand-written {hand:.3f}  (target: dl <= 1.10)")


if __name__ == "__main__":
    main()
