"""benchmarks/gpu.py runs here too (the CPU, small sizes): every section prints its rows."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.mark.slow  # starts a process
def test_the_gpu_benchmark_runs_on_the_cpu_at_small_sizes(tmp_path):
    import os

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run([sys.executable, str(BENCHMARK), "--quick", "--device", "cpu", "--images", "256", "--pngs", "200",
                             "--repeats", "1"], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    ratios = [float(r) for r in re.findall(r"dl/hand (\d+\.\d+)", out)]
    assert len(ratios) == 4 and all(r > 0 for r in ratios)  # precision 32 and bf16, channels-last off and on
    assert "on-device crop+flip" in out and "DataLoader crop+flip (2 workers)" in out
    assert re.search(r"PNG folder from the disk cache, epoch 1 +[\d,]+ samples/s", out)
    assert "time to the first batch, PNG folder, next run (the disk cache)" in out
    assert list(tmp_path.iterdir()) == [scratch]  # nothing where it ran
    assert not list(scratch.glob("dl-gpu-bench-*"))  # its data and runs: a temporary folder, removed
