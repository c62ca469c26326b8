"""DataLoader workers under a TMPDIR too long for a Unix socket's path (dlcli.system.sockets):
the batches still come, instead of each being lost in the worker and waited for forever."""

import os
import subprocess
import sys
import tempfile
import textwrap
from multiprocessing import process, util

import pytest

from dlcli.errors import UserError
from dlcli.system import sockets

LOADER = textwrap.dedent("""
    import torch
    from torch.utils.data import TensorDataset
    from dlcli.engine.batches import LoaderBatches
    data = LoaderBatches(TensorDataset(torch.rand(64, 3), torch.arange(64)), torch.arange(64), torch.device("cpu"), num_workers=2)
    print(sum(len(y) for _, y in data.in_order(16)), "samples")
""")


def long_folder(tmp_path):
    """A folder whose path, with multiprocessing's folder and socket name added, passes 108 bytes."""
    folder = tmp_path / ("t" * max(1, 90 - len(str(tmp_path))))
    folder.mkdir()
    return folder


@pytest.mark.slow  # starts a process and its two workers
def test_loader_workers_give_their_batches_under_a_long_tmpdir(tmp_path):
    folder = long_folder(tmp_path)
    # before the fix, each worker's batch was lost ("AF_UNIX path too long") and the loader waited forever
    result = subprocess.run([sys.executable, "-c", LOADER], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TMPDIR": str(folder)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "64 samples"
    assert "AF_UNIX" not in result.stderr
    assert not list(folder.iterdir())  # multiprocessing's folder was made elsewhere, and removed


@pytest.fixture
def no_multiprocessing_folder(monkeypatch):
    """This process as if it had not made its multiprocessing folder yet (restored afterwards)."""
    monkeypatch.delitem(process.current_process()._config, "tempdir", raising=False)


def test_a_long_tmpdir_gives_way_to_the_systems_temporary_folder(tmp_path, monkeypatch, no_multiprocessing_folder):
    monkeypatch.setattr(tempfile, "tempdir", str(long_folder(tmp_path)))
    sockets.make_worker_sockets_fit()
    folder = util.get_temp_dir()
    assert os.path.dirname(folder) in sockets.SYSTEM_TEMP_DIRS and os.path.isdir(folder)
    assert tempfile.gettempdir() != os.path.dirname(folder)  # TMPDIR is still followed for everything else


def test_a_long_tmpdir_without_a_writable_system_folder_is_one_line_naming_it(tmp_path, monkeypatch, no_multiprocessing_folder):
    folder = long_folder(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setattr(sockets, "SYSTEM_TEMP_DIRS", (str(tmp_path / "missing"),))
    with pytest.raises(UserError, match="set TMPDIR to a shorter folder, or data.num_workers=0") as error:
        sockets.make_worker_sockets_fit()
    assert str(folder) in str(error.value)

