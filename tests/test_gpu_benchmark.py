"""benchmarks/gpu.py runs here too (the CPU, small sizes): every section prints its rows."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.mark.slow  # starts a process
@pytest.mark.skipif(bool(os.environ.get("PYTEST_XDIST_WORKER")), reason=(
    "run alone (pytest -n 0 tests/test_gpu_benchmark.py): beside another busy test process its DataLoader section "
    "(two persistent workers over a PNG folder) has hung three times out of three, each side waiting on the other's "
    "queue, while alone it passes in ~13 s; the hang is not yet understood"))
def test_the_gpu_benchmark_runs_on_the_cpu_at_small_sizes(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    command = [sys.executable, str(BENCHMARK), "--quick", "--device", "cpu", "--images", "256", "--pngs", "200", "--repeats", "1"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)})
    except subprocess.TimeoutExpired:
        # Seen twice under pytest-xdist with the other worker busy (never alone, where it takes ~12 s):
        # the PNG section's DataLoader main process and its two workers each waiting on the other's
        # queue. Not yet understood; a second try keeps the suite from hanging on it, and a second
        # hang still fails the test.
        for leftover in scratch.glob("dl-gpu-bench-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    ratios = [float(r) for r in re.findall(r"dl/hand (\d+\.\d+)", out)]
    assert len(ratios) == 4 and all(r > 0 for r in ratios)  # precision 32 and bf16, channels-last off and on
    assert "on-device crop+flip" in out and "DataLoader crop+flip (2 workers)" in out
    assert re.search(r"PNG folder from the disk cache, epoch 1 +[\d,]+ samples/s", out)
    assert "time to the first batch, PNG folder, next run (the disk cache)" in out
    assert list(tmp_path.iterdir()) == [scratch]  # nothing where it ran
    assert not list(scratch.glob("dl-gpu-bench-*"))  # its data and runs: a temporary folder, removed
