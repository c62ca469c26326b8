"""Do the defaults train every model? `dl train model=X data=Y` with nothing else, against a tuned
reference on the same data, for every model option in conf/model/.

The data is real handwriting: scikit-learn's digits (1,797 grey 8x8 images, 10 classes) as a table
for the table models and as a sequence of rows for the sequence models; for the image models, 600
of them (60 per class) written as 28x28 grey PNGs in class folders (`data=imagefolder`, the format
a user brings), upsampled further with `data.resize` for the nets that need larger pictures (the
smallest size each takes). The diabetes table is linear regression's. 600 pictures keep the whole
matrix near 15 minutes on 2 cores; test scores on 60 pictures move in steps of 1.7 points.

Each model trains with its defaults (20 epochs: the default run, SGD at 0.03), and with the rest of
a small grid: SGD at 0.1 and 0.01, and Adam at its default rate. The reference is the grid point
(the default included) with the best validation score; the table shows test scores for both. The
recipes in conf/experiment/ name data that cannot be read here (Fashion-MNIST, CIFAR-10), so the
grid stands in for them.

Goal: every default within 2 points of accuracy (or 10% of RMSE) of its reference.

    python benchmarks/defaults.py [--only lenet,mlp] [--epochs N] [--jobs 2]

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
SEQUENCE = ("rnn", "lstm", "gru", "cnn1d")
TABLE = {"mlp": "digits", "softmax": "digits", "linreg": "diabetes"}
QUIET = ("trainer.progress=false", "trainer.plots=false", "trainer.checkpoint_every=0")


@dataclass
class Outcome:
    overrides: tuple[str, ...]
    status: str
    val: float | None = None
    test: float | None = None
    seconds: float = 0.0
    regression: bool = False

    def better_than(self, other: Outcome | None) -> bool:
        if self.val is None:
            return False
        if other is None or other.val is None:
            return True
        return self.val < other.val if self.regression else self.val > other.val


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


def data_for(model: str, pictures: Path) -> tuple[str, ...]:
    """Overrides giving `model` data that suits it (images at the smallest size it takes)."""
    if model in TABLE:
        return (f"data={TABLE[model]}",)
    if model in SEQUENCE:
        return ("data=digits", "+data.as_sequence=true")
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
        return overrides[1:]
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
    regression = summary.get("task") == "regression"
    metric = "rmse" if regression else "accuracy"
    return Outcome(overrides, summary.get("status", "?"), summary.get(f"best_val_{metric}", summary.get("best_value")),
                   (summary.get("test") or {}).get(metric), seconds, regression)


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
    if default.regression:
        return default.test <= 1.10 * reference.test
    return default.test >= reference.test - 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated model options (default: all of conf/model/)")
    parser.add_argument("--epochs", type=int, default=None, help="override the default epochs (quick looks only)")
    parser.add_argument("--jobs", type=int, default=2, help="models measured at once")
    args = parser.parse_args()
    models = [m for m in args.only.split(",") if m] or sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    print(f"{'model':<12} {'data':<52} {'default':>8} {'reference':>10} {'ratio':>6} {'goal':>5} {'s':>6}  reference run")
    start = time.perf_counter()
    misses = 0
    pictures = write_digit_pictures(Path(tempfile.mkdtemp(prefix="dl-digits-")) / "digits")
    data_of = {model: data_for(model, pictures) for model in models}  # (Hydra composes in one thread at a time)
    with ThreadPoolExecutor(args.jobs) as pool:
        measured = pool.map(lambda m: measure(m, data_of[m], args.epochs, threads), models)
        for model, (default, reference) in zip(models, measured):
            ok = within_goal(default, reference)
            misses += not ok
            data = " ".join(o if not o.startswith("data.root=") else "data.root=digits/" for o in default.overrides
                            if o.startswith(("data", "+data")))
            show = lambda o: f"{o.test:.4f}" if o.test is not None else o.status[:8]  # noqa: E731
            ratio = f"{default.test / reference.test:.3f}" if default.test and reference.test else "-"
            chosen = " ".join(o for o in reference.overrides if o.startswith(("optim",))) or "(the default)"
            print(f"{model:<12} {data:<52} {show(default):>8} {show(reference):>10} {ratio:>6} {'yes' if ok else 'NO':>5} "
                  f"{default.seconds:6.1f}  {chosen}", flush=True)
    print(f"{len(models) - misses} of {len(models)} defaults within the goal "
          f"(accuracy: 2 points; RMSE: 10%), in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
