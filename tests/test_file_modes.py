"""Run and sweep directories follow the umask (issue 33 item 23): a directory made whole under a
temporary name (mkdtemp: 0700) and files written whole (mkstemp: 0600) get the modes a plain mkdir
and open would, so a lab's shared runs/ is readable by the group under umask 022 (or writable
under 002), and private under 077."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conftest import run_cli

QUICK = ["data=iris", "trainer.epochs=1", "trainer.plots=false", "trainer.progress=false", "-q"]


def modes_under(root: Path) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {"directories": set(), "files": set()}
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        found["directories" if path.is_dir() else "files"].add(mode)
    return found


@pytest.mark.slow  # trains: over half a second in the fast lane
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=lambda m: f"umask {m:03o}")
def test_runs_sweeps_and_kfold_parents_follow_the_umask(workdir, umask):
    previous = os.umask(umask)
    try:
        assert run_cli("train", *QUICK).exit_code == 0
        assert run_cli("train", *QUICK, "split.kfold=2", "--name", "folds").exit_code == 0
        assert run_cli("sweep", "grid", "optim.lr=0.1,0.01", *QUICK).exit_code == 0
    finally:
        os.umask(previous)
    modes = modes_under(workdir / "runs")
    assert modes == {"directories": {0o777 & ~umask}, "files": {0o666 & ~umask}}, {k: sorted(map(oct, v)) for k, v in modes.items()}


def test_the_umask_is_read_without_being_changed():
    from dlcli.system.files import current_umask

    previous = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        assert os.umask(0o027) == 0o027  # still what it was set to
    finally:
        os.umask(previous)
