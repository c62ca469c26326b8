"""Ctrl-C on a real `dl train` process: metrics flushed, last.pt kept, status interrupted, resumable."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import wait_for_file


@pytest.mark.slow
def test_sigint_marks_the_run_interrupted_and_resume_finishes_it(tmp_path):
    command = [sys.executable, "-m", "dlcli", "train", "trainer.epochs=60", "--quiet"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    metrics = None
    while time.time() < deadline:  # wait until a few epochs are on disk
        found = list(tmp_path.glob("runs/train/*/metrics.csv"))
        if found and len(found[0].read_text().splitlines()) > 3:
            metrics = found[0]
            break
        time.sleep(0.2)
    assert metrics is not None, "training never wrote metrics"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    run = metrics.parent
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "resume=" in summary["message"]
    completed = summary["epochs_completed"]
    assert len((run / "metrics.csv").read_text().splitlines()) == completed + 1
    assert (run / "checkpoints" / "last.pt").exists() and wait_for_file(run / "curves.png")
    resumed = subprocess.run(
        [sys.executable, "-m", "dlcli", "train", f"resume={run}", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads(resumed.stdout)
    assert final["status"] == "completed" and final["epochs_completed"] == 60
    assert len(Path(tmp_path, run, "metrics.csv").read_text().splitlines()) == 61
