"""TAB completion as a shell drives it: a fresh `dl` process per TAB, with the environment bash's
script gives it (_DL_COMPLETE=bash, COMP_LINE, COMP_POINT), for a few
typical inputs, against a bare `python -c pass` started in the same loop.

The working directory holds a ./conf of its own (one model option) and a runs/ folder with a few
runs and a sweep, the index is built first (`dl --build-completion-index`, timed once), and each
TAB's candidates are checked, so a fast answer is a right one. The last row edits ./conf before
each TAB: the configs index is rebuilt then, from the YAML, inside that TAB.
Target: median under 50 ms per TAB (on 2 cores).

    python benchmarks/completion.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DL = str(Path(sys.executable).with_name("dl"))
# what is typed before the TAB -> a candidate that must be among the answers
INPUTS = {
    "dl tr": "train",
    "dl train model=": "lenet",  # (bash replaces the text after the '=')
    "dl train model=le": "lenet",
    "dl train optim.": "optim.lr=",
    "dl eval runs/": "runs/train/",
}
EDITED = "dl train model=mi"  # typed after ./conf/model/mine.yaml changed


def tab(line: str, environment: dict, cwd: Path) -> tuple[float, list[str]]:
    """One TAB as bash asks it: seconds, and the candidates printed."""
    env = {**environment, "_DL_COMPLETE": "bash", "COMP_LINE": line, "COMP_POINT": str(len(line))}
    started = time.perf_counter()
    out = subprocess.run([DL], env=env, cwd=cwd, capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - started, out.split()


# inside one TAB's process: dl's own part (its imports and the answer), without the interpreter's start
OWN_PART = """
import time
started = time.perf_counter()
from dlcli.completion.complete import answer
found = answer("bash", ["dl"], {"COMP_LINE": "dl train optim.", "COMP_POINT": "15"})
print((time.perf_counter() - started) * 1000, len(found.split()))
"""


def own_part(environment: dict, cwd: Path) -> float:
    out = subprocess.run([sys.executable, "-c", OWN_PART], cwd=cwd, env=environment, capture_output=True, text=True, check=True).stdout.split()
    if int(out[1]) < 2:
        sys.exit(f"`dl train optim.` offered {out[1]} candidates in the probe")
    return float(out[0]) / 1000


def bare(environment: dict, cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], cwd=cwd, check=True, env=environment)
    return time.perf_counter() - started


def project(root: Path) -> None:
    """A working directory as a user's looks: its own model option, two runs and a sweep."""
    (root / "conf" / "model").mkdir(parents=True)
    (root / "conf" / "model" / "mine.yaml").write_text("# my own model\n_target_: torch.nn.Identity\n")
    for name in ("train/2026-01-01_10-00-00", "train/2026-01-02_10-00-00"):
        run = root / "runs" / name
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("seed: 0\n")
        (run / "summary.json").write_text(json.dumps({"test": {}}))
    sweep = root / "runs" / "sweeps" / "grid-1"
    (sweep / "trials").mkdir(parents=True)
    (sweep / "sweep.yaml").write_text("kind: grid\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        project(root)
        environment = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        environment.pop("_DL_COMPLETE", None)
        # as an installed dl starts: its bytecode cached (pip compiles it; the first TAB below writes it here)
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
        started = time.perf_counter()
        subprocess.run([DL, "--build-completion-index"], env=environment, cwd=root, check=True)
        print(f"index built by `dl --build-completion-index` in {time.perf_counter() - started:.2f} s (once, at install)")
        times: dict[str, list[float]] = {line: [] for line in [*INPUTS, EDITED]}
        times["python -c pass"] = []
        times["own part"] = []
        for line in INPUTS:  # a warm-up TAB each, untimed: the file cache and the bytecode
            tab(line, environment, root)
        for repeat in range(args.repeats):
            for line, expected in INPUTS.items():
                seconds, found = tab(line, environment, root)
                if expected not in found:
                    sys.exit(f"`{line}` + TAB offered {found[:8]}, not {expected}")
                times[line].append(seconds)
            option = root / "conf" / "model" / "mine.yaml"
            option.write_text(f"# my own model, edit {repeat}\n_target_: torch.nn.Identity\n")
            os.utime(option, ns=(time.time_ns(), time.time_ns() + 1000 * (repeat + 1)))  # (newer even on a coarse clock)
            seconds, found = tab(EDITED, environment, root)
            if "mine" not in found:
                sys.exit(f"`{EDITED}` + TAB after an edit offered {found}, not mine")
            times[EDITED].append(seconds)
            times["python -c pass"].append(bare(environment, root))
            times["own part"].append(own_part(environment, root))
    print(f"median of {args.repeats} TABs, each a fresh process (cores: {os.cpu_count()})")
    for line, values in times.items():
        label = {"python -c pass": "python -c pass (reference)", "own part": "dl's part of `dl train optim.`"}.get(line, f"{line} + TAB")
        note = {EDITED: "  (./conf edited before each: index rebuilt)",
                "own part": "  (its imports and answer, timed inside the process: no interpreter start)"}.get(line, "")
        print(f"  {label:<28} {statistics.median(values) * 1000:6.1f} ms{note}")
    typical = statistics.median([value for line in INPUTS for value in times[line]])
    start = statistics.median(times["python -c pass"])
    print(f"all typical TABs: median {typical * 1000:.1f} ms (target < 50 ms), {(typical - start) * 1000:.1f} ms over a bare Python start")


if __name__ == "__main__":
    main()
