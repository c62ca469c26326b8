"""Where a new run came from, written into its summary.json once, so that `dl runs diff` can say
why two runs of the same config ended differently: the code (dl's version, and the commit of dl's
own checkout with whether it had uncommitted changes), the machine and libraries it ran on, and a
fingerprint of the data it read (dlcli.data.fingerprint).

Each fact is looked up without ever failing a run: a question with no answer here (no git, no
CUDA) is recorded as null.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy
import sklearn
import torch

import dlcli
from dlcli.rundir.directory import git_commit
from dlcli.system.machine import usable_cores

GIT_SECONDS = 5  # a git that hangs (a network file system) must not hold up the run


def provenance(experiment) -> dict:
    """summary.json's fields on where the run came from (beside its settings, in config.yaml)."""
    return {
        "versions": {
            "dlcli": dlcli.__version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "git_commit": git_commit(),  # the user's project (the working directory), as before
        "code": dl_checkout(),
        "environment": environment(experiment.session.device, int(experiment.cfg.trainer.get("devices", 1) or 1)),
        "data_fingerprint": getattr(experiment.data, "fingerprint", None),
    }


def dl_checkout() -> dict:
    """The commit of dl's own source tree and whether it had uncommitted changes, when dl runs from
    a git checkout (an editable install); nulls for an installed package."""
    source = Path(dlcli.__file__).resolve().parent
    commit = _git(source, "rev-parse", "HEAD")
    changes = _git(source, "status", "--porcelain", "--untracked-files=no", "--", ".") if commit else None
    return {"commit": commit, "dirty": None if changes is None else bool(changes.strip())}


def _git(where: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=GIT_SECONDS)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment(device, world_size: int) -> dict:
    """The machine and the numeric libraries that decide a run's numbers beside its settings."""
    cuda = torch.cuda.is_available()
    return {
        "host": platform.node() or None,
        "platform": f"{platform.system()} {platform.machine()}",
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if cuda and torch.device(device).type == "cuda" else None,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "threads": threads_per_process(torch.get_num_threads(), world_size),
        "cores": usable_cores(),
        "world_size": world_size,
    }


def threads_per_process(threads: int, world_size: int) -> int:
    """The CPU threads each process trains with: one process keeps its own; several share the cores
    (dlcli.run.launch sets each worker's so)."""
    return threads if world_size <= 1 else max(1, usable_cores() // world_size)
