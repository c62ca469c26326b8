"""tests/forked_dl.py: a `dl` forked from the tests' pre-imported server is the process
`python -m dlcli` would be (arguments, import path, main module, signal handlers and mask, working
directory, environment, session), and it is handled as subprocess.Popen handles one."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dlcli.system.collector import THRESHOLDS
from forked_dl import start_dl

TESTS = Path(__file__).parent


def described(process, path: Path) -> dict:
    _, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    return json.loads(path.read_text())


@pytest.mark.slow  # starts a real `dl` to compare with
def test_a_forked_dl_is_the_process_python_m_dlcli_would_be(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), DL_TEST_MARKER="given")
    args = ["train", "data=wine", "trainer.epochs=1", "trainer.plots=false", "-q", "--trust", "user_code",
            "+callbacks.describe._target_=user_code.DescribeProcess"]
    seen = {}
    for way, start in (("real", subprocess.Popen), ("forked", None)):
        out = tmp_path / "described.json"  # (one path: the arguments are compared too)
        command = [*args, f"+callbacks.describe.path={out}"]
        if start is None:
            process = start_dl(command, tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            assert isinstance(process.pid, int) and process.pid != os.getpid()
        else:
            process = subprocess.Popen([sys.executable, "-m", "dlcli", *command], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, start_new_session=True)
        seen[way] = described(process, out)
    served = start_dl(["--version"], tmp_path, stdout=subprocess.DEVNULL)
    assert type(served).__name__ == "ForkedDl" and served.wait(timeout=60) == 0  # the server served these
    real, forked = seen["real"], seen["forked"]
    assert forked["argv"][1:] == real["argv"][1:] and forked["argv"][0] == real["argv"][0]
    assert forked == real, (forked, real)
    assert tuple(real["gc_threshold"]) == THRESHOLDS  # dl collects garbage less often from its start (dlcli.system.collector)


@pytest.mark.slow  # starts processes
def test_a_forked_dl_reports_how_it_ended_as_popen_does(tmp_path):
    done = start_dl(["--version"], tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0 and out.strip() and done.poll() == 0
    refused = start_dl(["train", "optim.lr=-1"], tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 2 and "optim.lr" in err
    waiting = start_dl(["train", "data=wine", "trainer.epochs=100000", "-q"], tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with pytest.raises(subprocess.TimeoutExpired):
        waiting.wait(timeout=0.5)
    waiting.send_signal(signal.SIGKILL)
    assert waiting.wait(timeout=60) == -signal.SIGKILL
    waiting.kill()  # ended already: nothing happens
