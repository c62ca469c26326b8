"""What keeping a sweep's study in a database server costs against the journal file in the sweep
directory (the default), measured in the same run on the same trials.

For each of 1, 2 and 4 workers, the same grid sweep (`dl sweep grid data=iris trainer.epochs=1
optim.lr=<TRIALS values>`, trials of about a third of a second) runs once with its study in the
journal (`--jobs N`) and once in a PostgreSQL server that this script starts itself (pgserver,
`--storage URL --jobs N`: the same N worker processes, each taking its trials from the database).
Reported per setting: trials per minute over the sweep's trials (from the first trial's start to
the last one's end, so the command's start-up is left out; the command's wall seconds too), the
ratio database / journal, the study's own cost per trial as the sweep measures it (summary.json's
study_ms_per_trial: asking for or taking a trial and telling how it ended; stale checks included),
and the database path's cost per trial beyond the journal's: the difference of the two spans over
the trials.

    python benchmarks/sweep_storage.py [--trials 16] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pgserver


def dl(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dlcli", *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def trial_span(sweeps: Path) -> tuple[float, int]:
    """(seconds from the first trial's start to the last trial's end, trials) over every sweep
    directory under `sweeps` (each worker writes its trials in its own)."""
    starts, ends = [], []
    for summary in sweeps.glob("*/trials/*/summary.json"):
        record = json.loads(summary.read_text())
        if record.get("status") != "completed":
            continue
        ended = summary.stat().st_mtime
        ends.append(ended)
        starts.append(ended - float(record["wall_seconds"]))
    return max(ends) - min(starts), len(ends)


def study_ms(sweeps: Path) -> float:
    values = [json.loads(p.read_text()).get("study_ms_per_trial") for p in sweeps.glob("*/summary.json")]
    values = [v for v in values if v is not None]
    return sum(values) / len(values)


def one_setting(workers: int, trials: int, url: str | None, root: Path) -> dict:
    name = f"{'db' if url else 'journal'}{workers}"
    values = ",".join(f"{0.5 / (i + 1):.4g}" for i in range(trials))
    command = ["sweep", "grid", "data=iris", "trainer.epochs=1", f"optim.lr={values}", "--name", name, "--quiet"]
    started = time.perf_counter()
    if url is None:
        processes = [dl(*command, "--jobs", str(workers), cwd=root)]
    else:
        processes = [dl(*command, "--storage", url, "--jobs", str(workers), cwd=root)]
    for process in processes:
        _, errors = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"{name}: {errors}")
    wall = time.perf_counter() - started
    span, done = trial_span(root / "runs" / "sweeps" / name)
    assert done == trials, (name, done)
    return {"setting": name, "workers": workers, "trials": done, "trials_per_minute": round(60 * done / span, 1),
            "span_s": round(span, 2), "wall_s": round(wall, 1), "study_ms_per_trial": round(study_ms(root / "runs" / "sweeps" / name), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dl-pg-bench-"))
    folder.chmod(0o755)  # run as root, pgserver starts PostgreSQL as another user, who must reach its folder
    server = pgserver.get_server(folder / "data", cleanup_mode="stop")
    socket_dir = server.get_uri().split("host=")[1]
    root = Path(tempfile.mkdtemp(prefix="dl-sweep-storage-"))
    rows = []
    try:
        for workers in options.workers:
            database = f"bench{workers}"
            server.psql(f"CREATE DATABASE {database};")
            journal = one_setting(workers, options.trials, None, root)
            shared = one_setting(workers, options.trials, f"postgresql+psycopg://postgres@/{database}?host={socket_dir}", root)
            shared["ratio_to_journal"] = round(shared["trials_per_minute"] / journal["trials_per_minute"], 2)
            shared["extra_s_per_trial"] = round((shared["span_s"] - journal["span_s"]) * workers / options.trials, 3)
            rows += [journal, shared]
            for row in (journal, shared):
                print(json.dumps(row), flush=True)
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    print(f"{datetime.now():%Y-%m-%d}, {os.cpu_count()} cores, {options.trials} trials of data=iris trainer.epochs=1:")
    for row in rows:
        ratio = (f"  ({row['ratio_to_journal']:.2f} x the journal's; {row['extra_s_per_trial']:+.3f} s per trial in each worker)"
                 if "ratio_to_journal" in row else "")
        print(f"  {row['setting']:>9}: {row['trials_per_minute']:6.1f} trials/min over {row['span_s']:.1f} s of trials "
              f"(command {row['wall_s']:.1f} s), study {row['study_ms_per_trial']:.1f} ms per trial{ratio}")


if __name__ == "__main__":
    main()
