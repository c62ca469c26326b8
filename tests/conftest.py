import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.config import compose
from dlcli.engine.progress import Reporter


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in an empty directory, as a user would, so runs/ lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def quiet_reporter() -> Reporter:
    return Reporter(Console(file=io.StringIO()), show_progress=False)


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args))


def assert_cli_runs_without_torch(*args: str, exit_code: int = 0) -> None:
    """Run `dl ARGS` in a fresh interpreter and check torch was never imported (instant answers)."""
    import subprocess
    import sys

    code = (
        "import sys; from dlcli.cli import app; from typer.testing import CliRunner; "
        f"r = CliRunner().invoke(app, {list(args)!r}); assert r.exit_code == {exit_code}, r.output; "
        "assert 'torch' not in sys.modules, 'torch was imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def only_run(root: Path, name: str = "train") -> Path:
    runs = sorted((root / "runs" / name).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def fast():
    """A few epochs on digits: enough to exercise everything, quick on 2 cores."""

    def make(*overrides: str):
        return compose(["trainer.epochs=3", "trainer.progress=false", *overrides])

    return make
