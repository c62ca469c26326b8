"""Speed where deep learning runs: dl's engine against a hand-written loop, the data paths, and a
folder of PNG files against the same images held in memory. Runs on a GPU (the sizes the goals
name) and on the CPU (small sizes, so that it is tested everywhere). Every number is a ratio
against a baseline measured in the same run: the minimum time over interleaved repeats.

1. Training images/s, resnet18 (small-input stem) and cifar_cnn on CIFAR-shaped synthetic data
   (N x 3x32x32 uint8), precision 32 / bf16 / 16 (CUDA) x compile off/on x channels-last off/on.
   The hand loop does exactly dl's work: the same model class, the same uint8 tensor on the device,
   float + normalize per batch, autocast (+ GradScaler for 16), SGD with momentum, a seeded order.
   dl: the session `build_experiment` makes from `data=cifar10` (a CIFAR-format copy of the same
   images), one epoch of `engine.loop.train_epoch` as `fit` runs it. Goal: dl >= 0.95x the hand loop.
2. The data path, cifar_cnn and LeNet: no augmentation, dl's on-device crop+flip, and per-sample
   crop+flip in 2 DataLoader workers (what dl did before). Goals: on-device within 15% of no
   augmentation (10% on a GPU), and >= 3x the DataLoader path.
3. A folder of 28x28 PNG files (LeNet) against the same images in MNIST's format (in memory):
   samples/s of the second epoch, and of a second run's first epoch (from the disk cache); and the
   time from building the experiment to its first batch. Goal: within 10% of in memory.

    python benchmarks/gpu.py                 # the full table (GPU: 50,000 images; CPU: 4,096)
    python benchmarks/gpu.py --quick         # a small table in about a minute on 2 CPU cores
    python benchmarks/gpu.py --sections 2,3  # some of it
"""

from __future__ import annotations

import argparse
import csv
import functools
import itertools
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dlcli.config.compose import compose
from dlcli.data.image_data import TransformedSamples
from dlcli.data.transforms import sample_transform
from dlcli.engine.batches import LoaderBatches
from dlcli.engine.compiled import compile_session
from dlcli.engine.loop import autocast, train_epoch
from dlcli.experiment import build_experiment

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
MODELS = {"resnet18": ["model=resnet", "model.depth=18", "model.small_input=true"], "cifar_cnn": ["model=cifar_cnn"]}


# ---------------------------------------------------------------------------------------------
# data on disk in the real formats
def synthetic_images(count: int, size: int, channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each of 10 classes a bright square at its own place on noise, a quarter of the labels then
    drawn at random: learnable, but never learnt to a loss of zero, whose tiny gradients (denormal
    floats) would slow the CPU down and time numerics instead of the data path."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    images = rng.integers(0, 90, size=(count, size, size, channels), dtype=np.uint8)
    block = size // 4
    for label in range(10):
        row, col = divmod(label, 4)
        images[labels == label, row * block : (row + 1) * block, col * block : (col + 1) * block] = 230
    noisy = rng.random(count) < 0.25
    labels[noisy] = rng.integers(0, 10, int(noisy.sum()))
    return images, labels.astype(np.int64)


def write_cifar(root: Path, count: int) -> Path:
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images, labels = synthetic_images(count + 100, 32, 3)
    parts = np.array_split(np.arange(count), 5)
    for index, rows in enumerate([*parts, np.arange(count, count + 100)]):
        name = f"data_batch_{index + 1}" if index < 5 else "test_batch"
        with (folder / name).open("wb") as file:
            pickle.dump({"data": images[rows].transpose(0, 3, 1, 2).reshape(len(rows), -1), "labels": labels[rows].tolist()}, file)
    with (folder / "batches.meta").open("wb") as file:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, file)
    return root


def write_mnist_and_pngs(root: Path, count: int) -> tuple[Path, Path]:
    """The same 28x28 grey images as MNIST IDX files (in memory for dl) and as a PNG folder."""
    import struct

    from PIL import Image

    images, labels = synthetic_images(count + 100, 28, 1)
    raw = root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, rows in (("train", np.arange(count)), ("t10k", np.arange(count, count + 100))):
        for kind, array in (("images-idx3", images[rows, ..., 0]), ("labels-idx1", labels[rows].astype(np.uint8))):
            header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())
    folder = root / "pngs"
    for index in range(count):  # the train images only: the folder's split carves its own test part
        target = folder / f"c{labels[index]}"
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index, ..., 0]).save(target / f"{index:06d}.png")
    return root / "mnist", folder


# ---------------------------------------------------------------------------------------------
# 1. engine against the hand loop
def session_for(root: Path, device: str, model: str, precision: str, channels_last: bool, compiled: bool, batch_size: int,
                extra: tuple = ()):
    cfg = compose(["data=cifar10", f"data.root={root}", "data.download=false", "data.verify=false", *MODELS[model],
                   f"trainer.device={device}", f"trainer.precision={precision}", f"trainer.channels_last={channels_last}",
                   f"trainer.batch_size={batch_size}", "trainer.progress=false", "optim=sgd", *extra])
    experiment = build_experiment(cfg)
    if compiled:
        print("  ", compile_session(experiment.session))
    return experiment


def dl_epoch(experiment) -> None:
    session = experiment.session
    result = train_epoch(session.training_module, session.optimizer, session.loss_fn,
                         session.train_data.shuffled(session.step.batch_size, session.generator), session.step, session.scaler)
    float(result.loss_sum)  # fit reads the epoch's loss back once


class HandLoop:
    """The same work written out by hand, on a model of the same class and the session's images."""

    def __init__(self, experiment, compiled: bool):
        session = experiment.session
        torch.manual_seed(0)
        self.model = type(session.model)(experiment.data.input_shape, 10, **_build_args(session.model)).to(session.device)
        if experiment.cfg.trainer.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.step_model = torch.compile(self.model, dynamic=False) if compiled else self.model
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.03, momentum=0.9)
        self.scaler = torch.amp.GradScaler("cuda") if session.step.precision == "16" else None
        self.images, self.labels = session.train_data.features, session.train_data.targets
        self.precision, self.batch_size, self.device = session.step.precision, session.step.batch_size, session.device
        self.mean = torch.tensor(CIFAR_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(CIFAR_STD, device=self.device).view(1, 3, 1, 1)
        self.generator = torch.Generator().manual_seed(0)
        self.loss_fn = nn.CrossEntropyLoss()

    def epoch(self) -> None:
        self.model.train()
        order = torch.randperm(len(self.labels), generator=self.generator).to(self.device)
        total = torch.zeros((), device=self.device)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            if len(rows) == 1:
                break
            x = (self.images[rows].float().div_(255) - self.mean) / self.std
            with autocast(self.device, self.precision):
                loss = self.loss_fn(self.step_model(x), self.labels[rows])
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            total += loss.detach() * len(rows)
        float(total)


def _build_args(model: nn.Module) -> dict:
    from dlcli.models.resnet import ResNet

    if isinstance(model, ResNet):
        return {"depth": 18, "small_input": True}
    return {}


def timed(epoch, device: torch.device) -> float:
    _sync(device)
    started = time.perf_counter()
    epoch()
    _sync(device)
    return time.perf_counter() - started


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine_against_hand(root: Path, device: str, args) -> list[dict]:
    rows = []
    precisions = [p for p in args.precisions if p != "16" or torch.device(device).type == "cuda"]
    for model, precision, compiled, channels_last in itertools.product(args.models, precisions, args.compile, (False, True)):
        experiment = session_for(root, device, model, precision, channels_last, compiled, args.batch_size)
        hand = HandLoop(experiment, compiled)
        on = experiment.session.device
        count = len(experiment.session.train_data)
        hand.epoch(), dl_epoch(experiment)  # warm-up: kernels chosen, compiled shapes seen
        times = {"hand": [], "dl": []}
        for _ in range(args.repeats):  # interleaved, so drift in the machine's load hits both alike
            times["hand"].append(timed(hand.epoch, on))
            times["dl"].append(timed(functools.partial(dl_epoch, experiment), on))
        hand_rate, dl_rate = count / min(times["hand"]), count / min(times["dl"])
        row = {"model": model, "precision": precision, "compile": compiled, "channels_last": channels_last,
               "hand_images_s": hand_rate, "dl_images_s": dl_rate, "dl_over_hand": dl_rate / hand_rate}
        print(f"  {model:<9} precision={precision:<4} compile={str(compiled):<5} channels_last={str(channels_last):<5} "
              f"hand {hand_rate:9,.0f}/s  dl {dl_rate:9,.0f}/s  dl/hand {row['dl_over_hand']:.3f}"
              f"{verdict(row['dl_over_hand'] >= 0.95)}")
        rows.append(row)
        del experiment, hand
    base = {r["model"]: r["dl_images_s"] for r in rows if r["precision"] == "32" and not r["compile"] and not r["channels_last"]}
    for r in rows:
        r["speedup_over_fp32_eager"] = r["dl_images_s"] / base[r["model"]] if r["model"] in base else float("nan")
    return rows


# ---------------------------------------------------------------------------------------------
# 2. the data path
def data_paths(cifar_root: Path, mnist_root: Path, device: str, args) -> list[dict]:
    rows = []
    for model, data in (("cifar_cnn", ["data=cifar10", f"data.root={cifar_root}", "data.verify=false", "model=cifar_cnn"]),
                        ("lenet", ["data=mnist", f"data.root={mnist_root}", "model=lenet"])):
        def built(*augment):
            return build_experiment(compose([*data, "data.download=false", f"trainer.device={device}", "trainer.progress=false",
                                             f"trainer.batch_size={args.batch_size}", "optim=sgd", *augment]))

        plain = built()
        on_device = built("data.augment.crop_padding=4" if model == "cifar_cnn" else "data.augment.crop_padding=2",
                          "data.augment.hflip=true")
        loader = built("data.augment.crop_padding=4" if model == "cifar_cnn" else "data.augment.crop_padding=2",
                       "data.augment.hflip=true")
        images = loader.data  # the per-sample path dl takes for transforms that need it: crop + flip in 2 workers
        transform = sample_transform(images.input_shape[1:], images.resize, images.normalization, images.augment)
        train_rows = images.split.part("train")
        loader.session.train_data = LoaderBatches(TransformedSamples(images.source, train_rows, transform),
                                                  torch.as_tensor(images.source.targets[train_rows]), loader.session.device, 2)
        variants = {"no augmentation": plain, "on-device crop+flip": on_device, "DataLoader crop+flip (2 workers)": loader}
        on = plain.session.device
        for experiment in variants.values():
            dl_epoch(experiment)  # warm-up (the loader's workers start)
        times = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, experiment in variants.items():
                times[name].append(timed(functools.partial(dl_epoch, experiment), on))
        count = len(plain.session.train_data)
        rates = {name: count / min(values) for name, values in times.items()}
        for name, rate in rates.items():
            row = {"model": model, "path": name, "images_s": rate, "over_no_augmentation": rate / rates["no augmentation"],
                   "over_dataloader": rate / rates["DataLoader crop+flip (2 workers)"]}
            on_device = name == "on-device crop+flip"
            met = row["over_no_augmentation"] >= (0.90 if on.type == "cuda" else 0.85) and row["over_dataloader"] >= 3
            print(f"  {model:<9} {name:<33} {rate:9,.0f}/s  x{row['over_no_augmentation']:.3f} of no augmentation  "
                  f"x{row['over_dataloader']:.2f} of the DataLoader path{verdict(met) if on_device else ''}")
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# 3. a PNG folder against the same images in memory, and the time to the first batch
def folder_against_memory(mnist_root: Path, pngs: Path, device: str, args, workdir: Path) -> list[dict]:
    """Whole `dl train` runs (in this process): each path's samples/s as the run measured it."""
    from rich.console import Console

    from dlcli.engine.progress import Reporter
    from dlcli.run.dispatch import train
    from dlcli.run.request import RunRequest

    base = ["model=lenet", "model.activation=relu", "optim=sgd", f"trainer.device={device}", "trainer.progress=false",
            "trainer.epochs=2", f"trainer.batch_size={args.batch_size}", "trainer.diagnostics=false", "trainer.plots=false",
            f"runs_dir={workdir / 'runs'}"]
    memory = ["data=mnist", f"data.root={mnist_root}", "data.download=false", *base]
    folder = ["data=imagefolder", f"data.root={pngs}", *base]
    from dlcli.data.cache_store import folder_entry

    cache = folder_entry(pngs)  # where dl keeps the folder's decoded pixels (the user's cache directory)

    def run(overrides: list[str]) -> list[float]:
        return epoch_rates(train(RunRequest(compose(overrides), [], Reporter(Console(quiet=True), show_progress=False))).run_dir)

    first_batch_seconds(memory)  # the process's one-time costs (imports, the first composition) go to no one
    waits: dict[str, list[float]] = {name: [] for name in (
        "in memory (MNIST format)", "PNG folder, first run (decoding them)", "PNG folder, next run (the disk cache)",
        "PNG folder, data.cache=none (files)")}
    for _ in range(args.repeats):
        shutil.rmtree(cache, ignore_errors=True)
        for name, overrides in zip(waits, (memory, folder, folder, [*folder, "data.cache=none"])):
            waits[name].append(first_batch_seconds(overrides))
    first = {name: min(values) for name, values in waits.items()}
    rates: dict[str, list[float]] = {name: [] for name in (
        "in memory, epoch 1", "in memory, epoch 2", "PNG folder decoded once, epoch 2", "PNG folder from the disk cache, epoch 1",
        "PNG folder read every epoch (data.cache=none), epoch 2")}
    for _ in range(args.repeats):  # interleaved
        in_memory = run(memory)
        shutil.rmtree(cache, ignore_errors=True)
        decoded = run(folder)
        from_cache = run(folder)
        files = run([*folder, "data.cache=none"])
        for name, value in zip(rates, (in_memory[0], in_memory[1], decoded[1], from_cache[0], files[1])):
            rates[name].append(value)
    best = {name: max(values) for name, values in rates.items()}
    rows = []
    for name, rate in best.items():
        against = best["in memory, epoch 1" if name.endswith("epoch 1") else "in memory, epoch 2"]
        rows.append({"path": name, "samples_s": rate, "over_in_memory": rate / against})
        folder = name.startswith("PNG folder") and "data.cache=none" not in name
        print(f"  {name:<55} {rate:9,.0f} samples/s  x{rate / against:.3f} of in memory{verdict(rate / against >= 0.9) if folder else ''}")
    for name, seconds in first.items():
        rows.append({"path": name, "first_batch_s": seconds})
        print(f"  time to the first batch, {name:<40} {seconds:6.2f}s")
    return rows


def verdict(met: bool) -> str:
    """A row's mark against its section's goal."""
    return "  (goal met)" if met else "  (BELOW GOAL)"


def first_batch_seconds(overrides: list[str]) -> float:
    started = time.perf_counter()
    experiment = build_experiment(compose(overrides))
    next(iter(experiment.session.train_data.shuffled(experiment.session.step.batch_size, experiment.session.generator)))
    return time.perf_counter() - started


def epoch_rates(run_dir: Path) -> list[float]:
    with (run_dir / "metrics.csv").open() as file:
        return [float(row["samples_per_second"]) for row in csv.DictReader(file)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=None, help="CIFAR-shaped training images (GPU: 50000, CPU: 4096)")
    parser.add_argument("--pngs", type=int, default=None, help="28x28 PNG files for section 3 (GPU: 20000, CPU: 6000)")
    parser.add_argument("--batch-size", type=int, default=None, help="(GPU: 512, CPU: 128)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="resnet18,cifar_cnn")
    parser.add_argument("--precisions", default="32,bf16,16")
    parser.add_argument("--compile", default=None, help="off,on (CPU default: off; compiling resnet18 there takes minutes)")
    parser.add_argument("--sections", default="1,2,3")
    parser.add_argument("--quick", action="store_true", help="small sizes and one model: a check that everything runs")
    args = parser.parse_args()
    from dlcli.engine.device import select_device

    device = select_device(args.device)
    gpu = device.type == "cuda"
    if args.quick:
        args.images, args.pngs, args.repeats = args.images or 512, args.pngs or 400, min(args.repeats, 2)
        args.models = "cifar_cnn"
    args.images = args.images or (50_000 if gpu else 4096)
    args.pngs = args.pngs or (20_000 if gpu else 6000)
    args.batch_size = args.batch_size or (512 if gpu else 128)
    args.models = [m for m in args.models.split(",") if m]
    args.precisions = [p for p in args.precisions.split(",") if p]
    args.compile = [c == "on" for c in (args.compile or ("off,on" if gpu else "off")).split(",")]
    sections = set(args.sections.split(","))
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({name}); {args.images:,} CIFAR-shaped images, batch {args.batch_size}, min of {args.repeats} "
          "interleaved repeats")
    if args.quick:
        print("--quick: sizes too small and repeats too few to judge the goals; it checks that everything runs")
    workdir = Path(tempfile.mkdtemp(prefix="dl-gpu-bench-"))
    try:
        cifar_root = write_cifar(workdir / "cifar", args.images)
        mnist_root, pngs = write_mnist_and_pngs(workdir / "png", args.pngs)
        if "1" in sections:
            print("1. training images/s: dl's engine against the hand-written loop (goal: dl/hand >= 0.95)")
            engine_against_hand(cifar_root, str(device), args)
        if "2" in sections:
            print("2. the data path (goals: on-device crop+flip >= 0.85x no augmentation, >= 3x the DataLoader path)")
            data_paths(cifar_root, mnist_root, str(device), args)
        if "3" in sections:
            print(f"3. {args.pngs:,} PNG files against the same images in memory, LeNet 28x28 (goal: >= 0.90x)")
            folder_against_memory(mnist_root, pngs, str(device), args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
