"""The README's contest flow, scored on answers dl never sees, against the best single trial's refit.

For each bundled table (scikit-learn's breast-cancer and diabetes sets, written as CSV files with an
Id column) a quarter of the rows is held back as the hidden answers; the rest is train.csv. Then,
with the same search space and trial budget, through the `dl` commands a user types:

  k-fold   dl sweep tpe ... split.kfold=5   -> dl train refit=SWEEP split.test=0 -> dl predict REFIT
  folds    the same k-fold sweep's best trial, its fold models averaged: dl predict SWEEP/trials/NNN
  single   dl sweep tpe ... (one validation split) -> dl train refit=SWEEP (train+val, test kept) -> dl predict
  single0  the same single-split sweep -> dl train refit=SWEEP split.test=0 -> dl predict

and scores each submission against the hidden answers (accuracy; RMSE). Repeated over --seeds
(each a different hidden part and sweep seed); the mean is printed.

    python benchmarks/kaggle_flow.py [--trials 12] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.model_selection import train_test_split

SPACE = ["optim.lr=tag(log,interval(3e-3,0.3))", "model.hidden=choice([32],[128],[128,64])", "model.dropout=interval(0,0.4)"]
TABLES = {
    "breast_cancer": (load_breast_cancer, "classification", "accuracy"),
    "diabetes": (load_diabetes, "regression", "rmse"),
}


def dl(*args: str, cwd: Path) -> dict:
    """Run a dl command as a user would; its --json answer (or the run directory of a quiet train)."""
    result = subprocess.run([sys.executable, "-m", "dlcli", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"dl {' '.join(args)} failed:\n{result.stderr}")
    return json.loads(result.stdout) if "--json" in args else {"line": result.stdout.strip()}


def newest_run(root: Path, name: str) -> Path:
    return sorted(p for p in (root / "runs" / name).iterdir() if not p.name.startswith("."))[-1]


def score(task: str, predictions: Path, hidden: pd.DataFrame) -> float:
    predicted = pd.read_csv(predictions).set_index("Id").loc[hidden["Id"], "target"]
    if task == "classification":
        return float((predicted.astype(str).to_numpy() == hidden["target"].astype(str).to_numpy()).mean())
    return float(np.sqrt(np.mean((predicted.to_numpy() - hidden["target"].to_numpy()) ** 2)))


def one_table(name: str, seed: int, trials: int, root: Path) -> dict[str, float]:
    loader, task, _ = TABLES[name]
    data = loader(as_frame=True).frame
    data.insert(0, "Id", range(len(data)))
    labelled, hidden = train_test_split(data, test_size=0.25, random_state=seed,
                                        stratify=data["target"] if task == "classification" else None)
    labelled.to_csv(root / "train.csv", index=False)
    hidden.drop(columns=["target"]).to_csv(root / "test.csv", index=False)
    source = ["data=csv", "data.path=train.csv", "data.target=target", f"data.task={task}", "data.drop=[Id]"]
    sweep = ["sweep", "tpe", *source, *SPACE, "--trials", str(trials), "--seed", str(seed), "--json"]
    scores = {}
    kfold = dl(*sweep, "split.kfold=5", "--name", "kfold", cwd=root)
    best = Path(kfold["sweep_dir"]) / "trials" / f"{kfold['best_trial']:03d}"
    dl("train", f"refit={kfold['sweep_dir']}", "split.test=0", "-q", cwd=root)
    dl("predict", str(newest_run(root, "kfold")), "test.csv", "--output", "kfold.csv", cwd=root)
    scores["k-fold"] = score(task, root / "kfold.csv", hidden)
    dl("predict", str(best), "test.csv", "--output", "folds.csv", cwd=root)
    scores["folds"] = score(task, root / "folds.csv", hidden)
    single = dl(*sweep, "--name", "single", cwd=root)
    dl("train", f"refit={single['sweep_dir']}", "-q", cwd=root)
    dl("predict", str(newest_run(root, "single")), "test.csv", "--output", "single.csv", cwd=root)
    scores["single"] = score(task, root / "single.csv", hidden)
    dl("train", f"refit={single['sweep_dir']}", "split.test=0", "-q", cwd=root)
    dl("predict", str(newest_run(root, "single")), "test.csv", "--output", "single0.csv", cwd=root)
    scores["single0"] = score(task, root / "single0.csv", hidden)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    args = parser.parse_args()
    flows = ("k-fold", "folds", "single", "single0")
    for name in args.tables:
        metric = TABLES[name][2]
        rows = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as root:
                rows.append(one_table(name, seed, args.trials, Path(root)))
            print(f"{name} seed {seed}: " + "  ".join(f"{flow} {rows[-1][flow]:.4f}" for flow in flows), flush=True)
        means = {flow: float(np.mean([row[flow] for row in rows])) for flow in flows}
        print(f"{name} ({metric} on the hidden quarter, mean of {len(rows)}): "
              + "  ".join(f"{flow} {means[flow]:.4f}" for flow in flows), flush=True)


if __name__ == "__main__":
    main()
