"""`dl train` end to end, as a user waits for it, against a plain script doing the same work.

Both are fresh processes started from an empty directory: the plain script imports torch and
scikit-learn, loads the bundled digits, makes the same stratified 80/10/10 split, trains the same
MLP (64-256-10, SGD lr 0.1 momentum 0.9, batch 32, 20 epochs) validating every epoch and saving
the best weights, and reports test accuracy once. `dl train` does that from its default config and
also writes its run directory. Interleaved, minimum of repeats. Target: ratio <= 1.3.

    python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAIN_SCRIPT = '''
import torch
from torch import nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

digits = load_digits()
x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
y = torch.tensor(digits.target)
rest, test = train_test_split(range(len(y)), test_size=0.1, random_state=0, stratify=digits.target)
train, val = train_test_split(rest, test_size=0.1 / 0.9, random_state=0, stratify=digits.target[rest])
train, val, test = torch.tensor(train), torch.tensor(val), torch.tensor(test)
torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
generator = torch.Generator().manual_seed(0)
best = -1.0
for epoch in range(20):
    model.train()
    order = train[torch.randperm(len(train), generator=generator)]
    for start in range(0, len(order), 32):
        rows = order[start:start + 32]
        loss = loss_fn(model(x[rows]), y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        outputs = model(x[val])
        accuracy = float((outputs.argmax(1) == y[val]).float().mean())
    print(f"epoch {epoch + 1} val_loss {float(loss_fn(outputs, y[val])):.4f} val_accuracy {accuracy:.4f}")
    if accuracy > best:
        best = accuracy
        torch.save(model.state_dict(), "best.pt")
model.load_state_dict(torch.load("best.pt", weights_only=True))
with torch.no_grad():
    print("test accuracy", float((model(x[test]).argmax(1) == y[test]).float().mean()))
'''


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dl = [str(Path(sys.executable).with_name("dl")), "train"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "plain.py").write_text(PLAIN_SCRIPT)
        plain = [sys.executable, "plain.py"]
        timed(plain, root), timed(dl, root)  # warm the file cache: neither side pays the first disk read
        times = {"plain script": [], "dl train": []}
        for _ in range(args.repeats):
            times["plain script"].append(timed(plain, root))
            times["dl train"].append(timed(dl, root))
            # the pictures of the run are drawn by a background process: let it finish untimed
            while subprocess.run(["pgrep", "-f", "dlcli.tracking.plots"], capture_output=True).returncode == 0:
                time.sleep(0.1)
    best = {name: min(values) for name, values in times.items()}
    print(f"end to end, min of {args.repeats} interleaved repeats (fresh processes)")
    for name, seconds in best.items():
        print(f"{name:<13} {seconds:6.2f}s")
    print(f"ratio dl / plain {best['dl train'] / best['plain script']:.3f}  (target <= 1.3)")


if __name__ == "__main__":
    main()
