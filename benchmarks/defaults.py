"""Do the defaults train every model? `dl train model=X data=Y` with nothing else, against a tuned
reference on the same data, for every model option in conf/model/.

The data is real and bundled: scikit-learn's handwritten digits (1,797 grey 8x8 images, 10
classes) as a table for the table models, as a sequence of rows for the sequence models, and
upsampled with `data.resize` for the image models (28x28 for the small CNNs, the smallest size the
larger classic nets take otherwise); the diabetes table for linear regression. Each model is
trained with its defaults (20 epochs), then with each point of a small grid (SGD at three rates, and
Adam at its own default rate); the reference is the grid point with the best validation score (the
test score is what the table shows, for both). A recipe in conf/experiment/ names data that cannot
be read here (Fashion-MNIST, CIFAR-10), so the grid stands in for it.

Goal: every default within 2 points of accuracy (or 10% of RMSE) of its reference.

    python benchmarks/defaults.py [--only lenet,mlp] [--epochs N] [--jobs 2]

Each run is its own `dl train` process (one thread each with --jobs 2), so a slow model cannot
share its threads with another; the seconds column is the default run's wall time.
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
GRID = (("optim.lr=0.1",), ("optim.lr=0.01",), ("optim.lr=0.001",), ("optim=adam",))
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


def data_for(model: str) -> tuple[str, ...]:
    """Overrides giving `model` data that suits it (images at the smallest size it takes)."""
    if model in TABLE:
        return (f"data={TABLE[model]}",)
    if model in SEQUENCE:
        return ("data=digits", "+data.as_sequence=true")
    from dlcli.config import compose
    from dlcli.errors import UserError
    from dlcli.experiment import build_experiment

    for size in IMAGE_SIZES:
        overrides = (f"model={model}", "data=digits", f"data.resize={size}")
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


def measure(model: str, epochs: int | None, threads: int) -> tuple[Outcome, Outcome]:
    base = (f"model={model}", *data_for(model), *((f"trainer.epochs={epochs}",) if epochs else ()))
    with tempfile.TemporaryDirectory() as tmp:
        default = run(base, Path(tmp) / "default", threads)
        best = None
        for i, point in enumerate(GRID):
            outcome = run((*base, *point), Path(tmp) / f"grid{i}", threads)
            if outcome.better_than(best):
                best = outcome
    return default, best or default


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
    print(f"{'model':<12} {'data':<34} {'default':>8} {'reference':>10} {'ratio':>6} {'goal':>5} {'s':>6}  reference run")
    start = time.perf_counter()
    misses = 0
    with ThreadPoolExecutor(args.jobs) as pool:
        for model, (default, reference) in zip(models, pool.map(lambda m: measure(m, args.epochs, threads), models)):
            ok = within_goal(default, reference)
            misses += not ok
            data = " ".join(o for o in default.overrides if o.startswith(("data", "+data")))
            show = lambda o: f"{o.test:.4f}" if o.test is not None else o.status[:8]  # noqa: E731
            ratio = f"{default.test / reference.test:.3f}" if default.test and reference.test else "-"
            chosen = " ".join(o for o in reference.overrides if o.startswith(("optim",))) or "(the default)"
            print(f"{model:<12} {data:<34} {show(default):>8} {show(reference):>10} {ratio:>6} {'yes' if ok else 'NO':>5} "
                  f"{default.seconds:6.1f}  {chosen}", flush=True)
    print(f"{len(models) - misses} of {len(models)} defaults within the goal "
          f"(accuracy: 2 points; RMSE: 10%), in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
