"""The layout stays what docs/development.md draws: every import points down a layer,
the engine imports nothing above it, no two modules of a package import each other in a circle
(checked by import-linter's contracts in pyproject.toml), imports stand at the top of each module
(ruff's PLC0415, with the exceptions marked where they are), and no module is over 400 lines."""

import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "dlcli"
LONG = 400


@pytest.mark.slow  # starts lint-imports
def test_the_import_contracts_hold():
    command = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(command), "--no-cache"],  # finds pyproject.toml in the working directory
                            capture_output=True, text=True, cwd=SOURCE.parents[1])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout and result.stdout.count("KEPT") == 3


def test_imports_are_at_the_top_of_each_module():
    """ruff's PLC0415 over src with the project's settings (pyproject.toml [tool.ruff]): an import
    inside a function is allowed only in the CLI's command bodies or where marked with its reason."""
    command = Path(sys.executable).with_name("ruff")
    result = subprocess.run([str(command), "check", "--no-cache", "--output-format", "concise", "src"],
                            capture_output=True, text=True, cwd=SOURCE.parents[1])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.mark.slow  # starts an interpreter
@pytest.mark.parametrize("module", [
    "dlcli.tracking.plots",  # the drawing process, python -m dlcli.tracking.plots (and every logger module: dlcli.tracking imports them)
    "dlcli.diagnostics",  # dl diagnose reads a run's files
    "dlcli.rundir.collect",  # dl runs
])
def test_what_needs_no_torch_never_imports_it(module):
    """Importing torch takes seconds of CPU: a module whose work needs none of it does not import it,
    although an import at its top (or at its imports' tops) easily would."""
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch was imported'; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr[-3000:]


def test_no_module_is_over_400_lines():
    """A module a newcomer reads in one sitting (issue 34): a longer one is split where its parts
    have separate jobs (as config/annotations.py was taken out of config/constraints.py)."""
    long = [f"{path.relative_to(SOURCE)} ({count} lines)" for path in sorted(SOURCE.rglob("*.py"))
            if (count := len(path.read_text(encoding="utf-8").splitlines())) > LONG]
    assert not long, f"modules over {LONG} lines: {', '.join(long)}"


def test_every_package_is_installed():
    """pyproject.toml lists the packages (conf/ lives outside src/, so setuptools cannot find them
    all): a new package under src/dlcli must be named there, or a wheel would leave it out."""
    import tomllib

    listed = set(tomllib.loads((SOURCE.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {"dlcli." + ".".join(p.parent.relative_to(SOURCE).parts) if p.parent != SOURCE else "dlcli"
               for p in SOURCE.rglob("__init__.py")}
    conf = SOURCE.parents[1] / "conf"
    groups = {"dlcli.conf." + folder.name for folder in conf.iterdir() if folder.is_dir() and any(folder.glob("*.yaml"))}
    assert on_disk | {"dlcli.conf"} | groups == listed
