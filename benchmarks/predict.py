"""`dl predict` on 100,000 CSV rows with the default MLP, as a user waits for it, against a plain
script doing the same work.

A house-prices table (4 numeric columns with missing cells, 2 text columns, an Id) trains a
default MLP run for one epoch; then 100,000 new rows are predicted. Both sides are fresh processes:
`dl predict RUN rows.csv`, and a plain script that reads the CSV with pandas, encodes it with the
fitted values written out beforehand (mean-impute, standardize, one-hot), runs the same model in
batches of 4096 and writes Id,SalePrice. Interleaved, minimum of repeats; prints rows per second
of each and the ratio dl / plain.

    python benchmarks/predict.py [--repeats 3] [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

PLAIN_SCRIPT = '''
import json, sys
import numpy as np, pandas as pd, torch
from dlcli.models import MLP
spec = json.load(open("spec.json"))
table = pd.read_csv("rows.csv")
enc = spec["features"]
values = table[enc["numeric"]].to_numpy(dtype=np.float64, na_value=np.nan)
values = np.where(np.isnan(values), np.asarray(enc["fill"]), values)
parts = [(values - np.asarray(enc["center"])) / np.asarray(enc["scale"])]
for column, known in zip(enc["categorical"], enc["categories"]):
    text = table[column].astype(object).where(table[column].notna(), "<missing>").map(str)
    parts.append(np.stack([(text == k).to_numpy() for k in known], axis=1).astype(np.float64))
x = torch.as_tensor(np.concatenate(parts, axis=1), dtype=torch.float32)
model = MLP(tuple(spec["input_shape"]), 1, hidden=[256])
model.load_state_dict(torch.load(spec["weights"], weights_only=True)["model"])
model.eval()
with torch.inference_mode():
    out = torch.cat([model(x[i:i + 4096]) for i in range(0, len(x), 4096)]).reshape(-1).double().numpy()
scale = spec["target"]["scaling"]
pd.DataFrame({"Id": table.Id, "SalePrice": out * scale["std"] + scale["mean"]}).to_csv("plain.csv", index=False)
'''


def table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"Id": np.arange(n), "LotArea": rng.normal(9000, 2000, n), "Rooms": rng.integers(2, 9, n),
                          "YearBuilt": rng.integers(1900, 2020, n), "Garage": rng.normal(2, 1, n),
                          "Street": rng.choice(["Pave", "Grvl", None], n), "Zone": rng.choice(list("ABCDEFG"), n)})
    frame.loc[rng.random(n) < 0.05, "LotArea"] = np.nan
    frame["SalePrice"] = 50000 + 10 * frame.LotArea.fillna(9000) + 8000 * frame.Rooms + rng.normal(0, 5000, n)
    return frame


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        table(2000, 0).to_csv(work / "train.csv", index=False)
        table(args.rows, 1).drop(columns=["SalePrice"]).to_csv(work / "rows.csv", index=False)
        subprocess.run([sys.executable, "-m", "dlcli", "train", "data=csv", "data.path=train.csv", "data.target=SalePrice",
                        "data.task=regression", "data.drop=[Id]", "trainer.epochs=1", "trainer.plots=false", "-q"],
                       cwd=work, check=True, capture_output=True)
        run = next((work / "runs" / "train").iterdir())
        spec = json.loads((run / "preprocessing.json").read_text())
        (work / "spec.json").write_text(json.dumps({**spec, "weights": str(run / "checkpoints" / "best.pt")}))
        (work / "plain.py").write_text(PLAIN_SCRIPT)
        dl = [sys.executable, "-m", "dlcli", "predict", str(run), "rows.csv", "--output", "dl.csv", "--device", "cpu"]
        plain = [sys.executable, "plain.py"]
        times = {"dl": [], "plain": []}
        for _ in range(args.repeats):
            times["dl"].append(timed(dl, work))
            times["plain"].append(timed(plain, work))
        same = np.allclose(pd.read_csv(work / "dl.csv").SalePrice, pd.read_csv(work / "plain.csv").SalePrice, rtol=1e-5)
        best = {k: min(v) for k, v in times.items()}
        print(f"rows {args.rows:,}  repeats {args.repeats}  same predictions: {same}")
        for name, seconds in best.items():
            print(f"{name:>5}: {seconds:.2f} s end to end ({args.rows / seconds:,.0f} rows/s)")
        print(f"ratio dl / plain: {best['dl'] / best['plain']:.3f}")


if __name__ == "__main__":
    main()
