"""The documentation stays true to the tree: the site builds with `mkdocs build --strict` (a broken
link or anchor between pages fails it), the README's links reach the pages and headings they name,
and every file, module and importable name the pages give exists. The commands the pages show are
run by test_examples.py."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# Names the pages give on purpose although they do not import: the path a class moved from, placeholders.
NOT_IMPORTABLE = {"dlcli.engine.loggers", "dlcli.models.ClassName", "dlcli.conf.NAME"}


@pytest.mark.slow  # starts mkdocs
def test_the_site_builds_strictly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": ""})
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "WARNING" not in output, output[-3000:]
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "site" / "safety" / "index.html").is_file()


def _anchors(page: Path) -> set[str]:
    """The anchors MkDocs (and GitHub, for these headings) gives a page's headings, `{#id}` included."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", page.read_text(encoding="utf-8"), flags=re.M):
        own = re.search(r"\{#([\w-]+)\}\s*$", heading)
        anchors.add(own.group(1) if own else slugify(heading.replace("`", ""), "-"))
    return anchors


def test_the_readme_links_reach_their_pages():
    links = re.findall(r"\]\(([^)]+)\)", README.read_text(encoding="utf-8"))
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert len(local) >= 10, local
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), f"README links to {link}: no file {path}"
        assert not anchor or anchor in _anchors(target), f"README links to {link}: {path} has no heading #{anchor}"


def _named_paths(text: str) -> set[str]:
    return set(re.findall(r"`((?:src/|tests/|benchmarks/|\.ci/|dlcli/|conf/)[\w./-]*)`", text))


def test_the_files_the_pages_name_exist():
    missing = []
    for page in PAGES:
        for named in _named_paths(page.read_text(encoding="utf-8")):
            path = ROOT / ("src/" + named if named.startswith("dlcli/") else named)
            # conf/<group>/NAME.yaml and ./conf/trust.yaml are the reader's own files: their folder must exist
            if not (path.parent if named.startswith("conf/") and path.suffix else path).exists():
                missing.append(f"{page.name}: {named}")
    assert not missing, missing


def _named_objects(text: str) -> set[str]:
    """`dlcli.a.b.name` written out, and `from dlcli.a import name` (in prose or in a code block)."""
    dotted = set(re.findall(r"\b(dlcli(?:\.\w+)+)", text))
    for module, names in re.findall(r"from (dlcli[\w.]*) import ([\w, ]+)", text):
        dotted |= {f"{module}.{name.strip()}" for name in names.split(",") if name.strip()}
    return dotted - NOT_IMPORTABLE


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def test_the_modules_and_names_the_pages_give_import():
    named = {(page.name, dotted) for page in PAGES for dotted in _named_objects(page.read_text(encoding="utf-8"))}
    assert len(named) >= 8, named
    broken = sorted(f"{page}: {dotted}" for page, dotted in named if not _resolves(dotted))
    assert not broken, broken


@pytest.mark.parametrize("text, expected", [("`dlcli.nowhere.Thing`", False), ("`dlcli.tracking.RunLogger`", True),
                                            ("`dlcli.tracking.NoSuchLogger`", False)])
def test_a_moved_name_is_caught(text, expected):
    (dotted,) = _named_objects(text)
    assert _resolves(dotted) is expected


def _layout_names(page: Path, heading: str) -> set[str]:
    """The names a page's layout block starts its lines with (`cli/`, `experiment.py`, `tracking/,`)."""
    section = page.read_text(encoding="utf-8").split(heading, 1)[1]
    block = re.search(r"```\n(.*?)```", section, flags=re.S).group(1)
    return {name.rstrip(",") for line in block.splitlines() for name in line.split()[:3] if name.rstrip(",").endswith(("/", ".py"))}


@pytest.mark.parametrize("page, heading", [(README, "## Layout"), (ROOT / "docs" / "development.md", "## The layout")])
def test_the_layout_names_every_package(page, heading):
    source = ROOT / "src" / "dlcli"
    packages = {f"{path.name}/" for path in source.iterdir() if (path / "__init__.py").is_file()}
    modules = {path.name for path in source.glob("*.py") if path.name not in ("__init__.py", "__main__.py")}
    missing = (packages | modules) - _layout_names(page, heading)
    assert not missing, f"{page.name}'s layout does not name {sorted(missing)}"
