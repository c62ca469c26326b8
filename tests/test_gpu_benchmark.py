"""benchmarks/gpu.py runs here too (the CPU, small sizes): every section prints its rows."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.mark.slow  # starts a process
@pytest.mark.timeout(600)  # ~15 s on 2 idle cores; more than the suite's 300 s on 2 cores shared by many processes
def test_the_gpu_benchmark_runs_on_the_cpu_at_small_sizes(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    command = [sys.executable, str(BENCHMARK), "--quick", "--device", "cpu", "--images", "256", "--pngs", "200", "--repeats", "1"]
    # TMPDIR inside tmp_path: under pytest-xdist (popen-gwN/ in the path) it is long enough that the
    # sockets DataLoader workers hand batches over would not fit a socket's path, which hung this
    # run in its DataLoader sections until dlcli.system.sockets (tests/test_worker_sockets.py)
    result = subprocess.run(command, capture_output=True, text=True, timeout=570, cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr  # a worker's batch lost in its queue's thread prints one
    out = result.stdout
    ratios = [float(r) for r in re.findall(r"dl/hand (\d+\.\d+)", out)]
    assert len(ratios) == 4 and all(r > 0 for r in ratios)  # precision 32 and bf16, channels-last off and on
    assert "on-device crop+flip" in out and "DataLoader crop+flip (2 workers)" in out
    assert re.search(r"PNG folder from the disk cache, epoch 1 +[\d,]+ samples/s", out)
    assert "time to the first batch, PNG folder, next run (the disk cache)" in out
    assert list(tmp_path.iterdir()) == [scratch]  # nothing where it ran
    assert not list(scratch.glob("dl-gpu-bench-*"))  # its data and runs: a temporary folder, removed
