"""Whole language-model runs of `dl` against a hand-written PyTorch loop on the same tensors.

The text is written here (a deterministic word salad from a small vocabulary, character tokens),
and `dl train data=text model=lstm|transformer` runs through the library API (compose + train: the
run directory, metrics.csv, checkpoints, the bigram baseline, the test look and the pictures all
count). The hand-written side takes the very token stream, split and model `dl` prepares (built
before its clock starts, so only the dl side pays for reading the text), and does what a careful script does: windows
gathered on the device with a new random offset each epoch, Adam, cross-entropy over every
position, validation perplexity every epoch, the best weights saved, one test look with them.
Both run in this process, interleaved; the minimum over repeats is taken (shared machines are
noisy). Prints samples (windows) per second and the ratio dl / hand of the wall-clock times, and
beside it the ratio of the CPU seconds each side used in this process: with one thread
(OMP_NUM_THREADS=1) that is the work each side did, which other people's jobs on a shared machine
inflate far less than the wall clock. The CPU seconds of dl's pictures, drawn by a process of their
own after the run (matplotlib's imports are most of them), are shown apart: they cost a free core,
not the run's wall time.

Target: each ratio <= 1.10.

    python benchmarks/sequence_speed.py [--repeats 3] [--chars 200000] [--epochs 3] [--device auto]
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional

from dlcli.config.compose import compose
from dlcli.engine.device import select_device
from dlcli.experiment import build_experiment
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest
from dlcli.tracking.plots import wait_for_pictures

WORDS = ("the time traveller said that a machine could move through space and time as we move in the "
         "three dimensions of space he held the little lever and the model vanished into the future").split()
MODELS = {"lstm": ["model=lstm"], "transformer": ["model=transformer", "model.dropout=0.0"]}


def write_text(path: Path, chars: int) -> Path:
    rng = random.Random(0)
    words, size = [], 0
    while size < chars:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    path.write_text(" ".join(words), encoding="utf-8")
    return path


def overrides(model: str, text: Path, epochs: int, device: str, runs_dir: Path) -> list[str]:
    return ["data=text", f"data.path={text}", *MODELS[model], f"trainer.epochs={epochs}", f"trainer.device={device}",
            "trainer.progress=false", f"runs_dir={runs_dir}"]


def quiet_reporter():
    from rich.console import Console  # noqa: PLC0415  (only the dl side prints through it)

    from dlcli.engine.progress import Reporter  # noqa: PLC0415

    return Reporter(Console(quiet=True), show_progress=False)


def dl_run(settings: list[str]) -> None:
    result = train(RunRequest(compose(settings), settings, quiet_reporter()))
    assert result.status == "completed", result.summary


def hand_written_run(experiment, out_dir: Path) -> None:
    """The same run as a plain loop on dl's prepared stream, split and model (built before the
    clock starts: the hand side is not charged for preparing the text, the dl side is)."""
    data, model, device = experiment.data, experiment.session.model, experiment.session.device
    cfg = experiment.cfg
    stream = torch.as_tensor(data.stream, dtype=torch.long, device=device)
    starts = {part: torch.as_tensor(data.split.part(part), dtype=torch.long, device=device) for part in ("train", "val", "test")}
    span = torch.arange(data.seq_len + 1, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg.optim.lr))
    generator = torch.Generator().manual_seed(0)
    batch, best, best_path = int(cfg.trainer.batch_size), math.inf, out_dir / "best.pt"

    def windows(first):
        chunk = stream[first[:, None] + span]
        return chunk[:, :-1], chunk[:, 1:]

    def perplexity(part):
        model.eval()
        total, count = torch.zeros((), device=device), 0
        with torch.no_grad():
            for at in range(0, len(starts[part]), int(cfg.trainer.eval_batch_size)):
                x, y = windows(starts[part][at:at + int(cfg.trainer.eval_batch_size)])
                total += functional.cross_entropy(model(x).reshape(-1, data.vocab_size), y.reshape(-1), reduction="sum")
                count += y.numel()
        return math.exp(float(total) / count)

    for _ in range(int(cfg.trainer.epochs)):
        model.train()
        order = torch.randperm(len(starts["train"]), generator=generator).to(device)
        offset = int(torch.randint(data.max_offset + 1, (), generator=generator)) if data.max_offset else 0
        for at in range(0, len(order), batch):
            x, y = windows(starts["train"][order[at:at + batch]] + offset)
            loss = functional.cross_entropy(model(x).reshape(-1, data.vocab_size), y.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.trainer.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg.trainer.grad_clip))
            optimizer.step()
        val = perplexity("val")
        if val < best:
            best = val
            torch.save(model.state_dict(), best_path)
    model.load_state_dict(torch.load(best_path, weights_only=True))
    perplexity("test")


def cpu_seconds(who: int) -> float:
    """User + system CPU seconds of this process (every thread: RUSAGE_SELF) or of its finished children."""
    used = resource.getrusage(who)
    return used.ru_utime + used.ru_stime


def timed(function, *args) -> tuple[float, float, float]:
    """(wall seconds, this process's CPU seconds, its children's CPU seconds: the pictures drawn after it) of one call."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    own, children, started = cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN), time.perf_counter()
    function(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds, own = time.perf_counter() - started, cpu_seconds(resource.RUSAGE_SELF) - own
    wait_for_pictures()  # drawn in the background after a run: never let them overlap the next timing
    return seconds, own, cpu_seconds(resource.RUSAGE_CHILDREN) - children


def minima(timings: list[tuple[float, ...]]) -> tuple[float, ...]:
    """The least of each measure over the repeats (each taken on its own)."""
    return tuple(min(values) for values in zip(*timings))


def rounded(timings: list[tuple[float, ...]]) -> str:
    return " ".join("/".join(f"{value:.1f}" for value in timing) for timing in timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chars", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", default=",".join(MODELS), help="comma-separated: lstm, transformer")
    args = parser.parse_args()
    chosen = [m for m in args.only.split(",") if m in MODELS]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text = write_text(root / "book.txt", args.chars)
        times = {(model, side): [] for model in chosen for side in ("hand", "dl")}  # (wall, cpu, children's cpu) per repeat
        for model in chosen:  # warm up: imports and first-call costs are not what a run costs
            dl_run(overrides(model, text, 1, args.device, root / "warmup"))
            hand_written_run(build_experiment(compose(overrides(model, text, 1, args.device, root / "warmup"))), root)
            wait_for_pictures()  # the warm-up run's, drawn meanwhile: never inside the first timing
        for repeat in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            for model in chosen:
                settings = overrides(model, text, args.epochs, args.device, root / f"runs-{repeat}")
                times[(model, "hand")].append(timed(hand_written_run, build_experiment(compose(settings)), root))
                times[(model, "dl")].append(timed(dl_run, settings))
        data = build_experiment(compose(overrides(chosen[0], text, 1, args.device, root / "count"))).data
        windows = len(data.split.part("train")) * args.epochs
        print(f"language models on {args.chars:,} characters ({windows // args.epochs:,} training windows of "
              f"{data.seq_len}), {args.epochs} epochs, {select_device(args.device)}, {torch.get_num_threads()} threads, "
              f"min of {args.repeats} interleaved repeats")
        for model in chosen:
            (hand, hand_cpu, _), (ours, our_cpu, drawing) = (minima(times[(model, side)]) for side in ("hand", "dl"))
            print(f"{model:<12} hand {hand:7.2f}s ({windows / hand:8.0f} windows/s)  dl {ours:7.2f}s "
                  f"({windows / ours:8.0f} windows/s)  ratio {ours / hand:.3f}  |  CPU hand {hand_cpu:6.2f}s "
                  f"dl {our_cpu:6.2f}s  ratio {our_cpu / hand_cpu:.3f}  (+{drawing:.2f}s drawing dl's pictures)")
            print(f"{'':<12} every repeat (wall/CPU/pictures' CPU s): hand {rounded(times[(model, 'hand')])}  "
                  f"dl {rounded(times[(model, 'dl')])}")
        print("target: each ratio <= 1.10")


if __name__ == "__main__":
    main()
