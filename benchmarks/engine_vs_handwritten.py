"""Time one training epoch of dl's engine against a hand-written PyTorch loop.

Same MLP, same in-memory data, same batch size and optimizer; the two are run interleaved and the
minimum over repeats is taken, since shared machines are noisy. Prints the ratio engine / hand.
Target: the engine within 10% of the hand-written loop (ratio <= 1.10).

    python benchmarks/engine_vs_handwritten.py [--repeats 7] [--samples 20000]
"""

from __future__ import annotations

import argparse
import io
import time
from types import SimpleNamespace

import torch
from rich.console import Console
from torch import nn

from dlcli.engine.batches import TensorBatches
from dlcli.engine.callbacks import CallbackList
from dlcli.engine.loop import StepConfig, train_epoch
from dlcli.engine.progress import ProgressBars
from dlcli.models import MLP


def hand_written_epoch(model, optimizer, loss_fn, x, y, batch_size, generator):
    model.train()
    order = torch.randperm(len(x), generator=generator)
    for start in range(0, len(x), batch_size):
        rows = order[start : start + batch_size]
        loss = loss_fn(model(x[rows]), y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def engine_epoch(model, optimizer, loss_fn, x, y, batch_size, generator, bars=None):
    # quiet (`dl train -q`, sweeps): no callback wants batches, so the loop calls none
    hooks = CallbackList([bars] if bars is not None else [])
    hooks.on_epoch_start(1)
    batches = TensorBatches(x, y).shuffled(batch_size, generator)
    train_epoch(model, optimizer, loss_fn, batches, StepConfig(batch_size), on_batch_end=hooks.batch_end)


def engine_epoch_with_progress(model, optimizer, loss_fn, x, y, *rest):
    # Live Rich bars on a (fake) terminal, started before the epoch as `dl train` does once per run.
    bars = ProgressBars(Console(file=io.StringIO(), force_terminal=True))
    session = SimpleNamespace(epochs=1, metric="accuracy", train_data=x)
    bars.on_fit_start(session, SimpleNamespace(epoch=0))
    try:
        started = time.perf_counter()
        engine_epoch(model, optimizer, loss_fn, x, y, *rest, bars=bars)
        return time.perf_counter() - started
    finally:
        bars.on_fit_end(None, "completed")


def timed(epoch_fn, x, y, batch_size, features, classes) -> float:
    torch.manual_seed(0)
    model = MLP((features,), classes, hidden=[256, 256])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    epoch_fn(model, optimizer, nn.CrossEntropyLoss(), x[: batch_size * 4], y[: batch_size * 4], batch_size, generator)  # warm up
    started = time.perf_counter()
    inner = epoch_fn(model, optimizer, nn.CrossEntropyLoss(), x, y, batch_size, generator)
    return inner if inner is not None else time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, args.features, generator=generator)
    y = torch.randint(0, 10, (args.samples,), generator=generator)
    variants = {"hand-written loop": hand_written_epoch, "dl engine (quiet)": engine_epoch, "dl engine (progress bars)": engine_epoch_with_progress}
    times = {name: [] for name in variants}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits all alike
        for name, epoch_fn in variants.items():
            times[name].append(timed(epoch_fn, x, y, args.batch_size, args.features, 10))
    best = {name: min(values) for name, values in times.items()}
    hand = best["hand-written loop"]
    print(f"MLP {args.features}-256-256-10, {args.samples} samples, batch {args.batch_size}, {torch.get_num_threads()} threads, min of {args.repeats}")
    for name, seconds in best.items():
        print(f"{name:<27} {seconds * 1000:7.1f} ms/epoch   ratio to hand-written {seconds / hand:.3f}")
    print("target: the engine's ratio <= 1.10")


if __name__ == "__main__":
    main()
