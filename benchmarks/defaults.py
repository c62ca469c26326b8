"""Do the defaults train every model? `dl train model=X data=Y` with nothing else, against a tuned
reference on the same data, for every model option in conf/model/.

The data is real handwriting: scikit-learn's digits (1,797 grey 8x8 images, 10 classes) as a table
for the table models; for the image models, 600
of them (60 per class) written as 28x28 grey PNGs in class folders (`data=imagefolder`, the format
a user brings), upsampled further with `data.resize` for the nets that need larger pictures (the
smallest size each takes). The diabetes table is linear regression's. 600 pictures keep the whole
matrix near 15 minutes on 2 cores; test scores on 60 pictures move in steps of 1.7 points.

The sequence models train on every sequence source, one row each: digits read as a sequence of
64 pixels, MNIST-1D (5,000 40-step signals, 10 classes; generated offline by the `mnist1d` package,
`pip install mnist1d`, and skipped without it), the noisy sine (a one-step forecast, RMSE), the
time machine (a character language model, perplexity; downloaded once) and synthetic reviews (a
text column, 2 classes). A token source is skipped for a model that cannot read tokens (cnn1d).

Each model trains with its defaults (20 epochs: the default run, SGD at 0.03), and with the rest of
a small grid: SGD at 0.1 and 0.01, and Adam at its default rate. The reference is the grid point
(the default included) with the best validation score; the table shows test scores for both. The
recipes in conf/experiment/ name data that cannot be read here (Fashion-MNIST, CIFAR-10), so the
grid stands in for them.

Goal: every default within 2 points of accuracy (or 10% of RMSE or perplexity) of its reference.

    python benchmarks/defaults.py [--only lenet,mlp] [--sources mnist1d,text] [--epochs N] [--jobs 2]

Each run is its own `dl train` process (one thread each with --jobs 2); the seconds column is the
default run's wall time (accuracies do not depend on the load: CPU runs repeat exactly).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "src" / "dlcli" / "conf"
GRID = (("optim.lr=0.1",), ("optim.lr=0.01",), ("optim=adam",))  # with the default (SGD at 0.03)
PICTURES_PER_CLASS = 60
IMAGE_SIZES = (28, 32, 48, 64, 96, 128)  # the first one a model builds on
SEQUENCE = ("rnn", "lstm", "gru", "cnn1d", "transformer", "attention")
READS_TOKENS = ("rnn", "lstm", "gru", "transformer", "attention")
LOWER_IS_BETTER = ("rmse", "perplexity")
TABLE = {"mlp": "digits", "softmax": "digits", "linreg": "diabetes"}
QUIET = ("trainer.progress=false", "trainer.plots=false", "trainer.checkpoint_every=0")


@dataclass
class Outcome:
    overrides: tuple[str, ...]
    status: str
    val: float | None = None
    test: float | None = None
    seconds: float = 0.0
    lower_is_better: bool = False  # RMSE, perplexity

    def better_than(self, other: Outcome | None) -> bool:
        if self.val is None:
            return False
        if other is None or other.val is None:
            return True
        return self.val < other.val if self.lower_is_better else self.val > other.val


def write_digit_pictures(root: Path) -> Path:
    """PICTURES_PER_CLASS digits per class as 28x28 grey PNGs in class folders."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label in range(10):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        for index in np.flatnonzero(digits.target == label)[:PICTURES_PER_CLASS]:
            picture = Image.fromarray((digits.images[index] * 255 / 16).astype(np.uint8), mode="L")
            picture.resize((28, 28), Image.BILINEAR).save(root / str(label) / f"{index}.png")
    return root


def write_mnist1d(path: Path) -> Path | None:
    """MNIST-1D (Greydanus 2020) as a CSV of 40 signal columns and a label, generated offline by
    the mnist1d package with its published settings; None without the package."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        print("MNIST-1D skipped: pip install mnist1d")
        return None
    import numpy as np
    import pandas as pd

    made = make_dataset(get_dataset_args())
    table = pd.DataFrame(np.concatenate([made["x"], made["x_test"]]), columns=[f"x{i}" for i in range(40)])
    table["label"] = np.concatenate([made["y"], made["y_test"]])
    table.to_csv(path, index=False)
    return path


def write_reviews(path: Path, rows: int = 2000) -> Path:
    """Short synthetic reviews whose label is carried by a few words among neutral ones, in any order."""
    import random

    rng = random.Random(0)
    good, bad = "great superb lovely enjoyed brilliant".split(), "awful boring dull hated terrible".split()
    neutral = "the film plot actor scene story music and it was a with of this".split()
    lines = ["review,label"]
    for i in range(rows):
        label = i % 2
        words = rng.choices(neutral, k=rng.randint(4, 20)) + rng.choices(good if label else bad, k=rng.randint(1, 2))
        rng.shuffle(words)
        lines.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def sequence_sources(root: Path, chosen: set[str]) -> dict[str, tuple[str, ...]]:
    """Each sequence source's overrides, by name."""
    sources = {"digits": ("data=digits", "+data.as_sequence=true"), "sine": ("data=sine",), "text": ("data=timemachine",),
               "reviews": ("data=csv", f"data.path={write_reviews(root / 'reviews.csv')}", "data.target=label",
                           "data.text=review")}
    mnist1d = write_mnist1d(root / "mnist1d.csv") if "mnist1d" in chosen else None
    if mnist1d is not None:
        sources["mnist1d"] = ("data=csv", f"data.path={mnist1d}", "data.target=label", "+data.as_sequence=true")
    return {name: overrides for name, overrides in sources.items() if name in chosen}


def data_for(model: str, pictures: Path, sources: dict[str, tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Overrides giving `model` data that suits it (images at the smallest size it takes; every
    sequence source a sequence model reads)."""
    if model in TABLE:
        return [(f"data={TABLE[model]}",)]
    if model in SEQUENCE:
        return [overrides for name, overrides in sources.items() if model in READS_TOKENS or name not in ("text", "reviews")]
    from dlcli.config.compose import compose
    from dlcli.errors import UserError
    from dlcli.experiment import build_experiment

    for size in IMAGE_SIZES:
        overrides = (f"model={model}", "data=imagefolder", f"data.root={pictures}",
                     *((f"data.resize={size}",) if size != 28 else ()))
        try:
            build_experiment(compose(list(overrides)))
        except UserError:
            continue
        return [overrides[1:]]
    raise SystemExit(f"model={model} builds on none of the image sizes {IMAGE_SIZES}")


def run(overrides: tuple[str, ...], runs_dir: Path, threads: int) -> Outcome:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dlcli", "train", "-q", *overrides, *QUIET, f"runs_dir={runs_dir}"],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    summaries = sorted(runs_dir.glob("train/*/summary.json"), key=lambda p: p.stat().st_mtime)
    if done.returncode != 0 or not summaries:
        return Outcome(overrides, f"failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}", seconds=seconds)
    summary = json.loads(summaries[-1].read_text())
    metric = summary.get("metric") or ("rmse" if summary.get("task") == "regression" else "accuracy")
    return Outcome(overrides, summary.get("status", "?"), summary.get(f"best_val_{metric}", summary.get("best_value")),
                   (summary.get("test") or {}).get(metric), seconds, metric in LOWER_IS_BETTER)


def measure(model: str, data: tuple[str, ...], epochs: int | None, threads: int) -> tuple[Outcome, Outcome]:
    base = (f"model={model}", *data, *((f"trainer.epochs={epochs}",) if epochs else ()))
    with tempfile.TemporaryDirectory() as tmp:
        default = run(base, Path(tmp) / "default", threads)
        best = default
        for i, point in enumerate(GRID):
            outcome = run((*base, *point), Path(tmp) / f"grid{i}", threads)
            if outcome.better_than(best):
                best = outcome
    return default, best


def within_goal(default: Outcome, reference: Outcome) -> bool:
    if default.test is None or reference.test is None:
        return False
    if default.lower_is_better:
        return default.test <= 1.10 * reference.test
    return default.test >= reference.test - 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated model options (default: all of conf/model/)")
    parser.add_argument("--epochs", type=int, default=None, help="override the default epochs (quick looks only)")
    parser.add_argument("--jobs", type=int, default=2, help="models measured at once")
    parser.add_argument("--sources", default="digits,mnist1d,sine,text,reviews", help="the sequence models' sources")
    args = parser.parse_args()
    models = [m for m in args.only.split(",") if m] or sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    print(f"{'model':<12} {'data':<52} {'default':>8} {'reference':>10} {'ratio':>6} {'goal':>5} {'s':>6}  reference run")
    start = time.perf_counter()
    misses = 0
    scratch = Path(tempfile.mkdtemp(prefix="dl-digits-"))
    pictures = write_digit_pictures(scratch / "digits")
    sources = sequence_sources(scratch, set(args.sources.split(",")))
    cases = [(model, data) for model in models for data in data_for(model, pictures, sources)]  # (Hydra composes in one thread at a time)
    with ThreadPoolExecutor(args.jobs) as pool:
        measured = pool.map(lambda case: measure(case[0], case[1], args.epochs, threads), cases)
        for (model, _), (default, reference) in zip(cases, measured):
            ok = within_goal(default, reference)
            misses += not ok
            data = " ".join(o if not o.startswith(("data.root=", "data.path=")) else o.split("=")[0] + "=" + Path(o.split("=", 1)[1]).name
                            for o in default.overrides if o.startswith(("data", "+data")))
            show = lambda o: f"{o.test:.4f}" if o.test is not None else o.status[:8]  # noqa: E731
            ratio = f"{default.test / reference.test:.3f}" if default.test and reference.test else "-"
            chosen = " ".join(o for o in reference.overrides if o.startswith(("optim",))) or "(the default)"
            print(f"{model:<12} {data:<52} {show(default):>8} {show(reference):>10} {ratio:>6} {'yes' if ok else 'NO':>5} "
                  f"{default.seconds:6.1f}  {chosen}", flush=True)
    print(f"{len(cases) - misses} of {len(cases)} defaults within the goal "
          f"(accuracy: 2 points; RMSE and perplexity: 10%), in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
