"""`dl cache list` and `dl cache clear`: what dl keeps in the user's cache directory (folders of
images decoded once, dlcli.data.cache_store), each checked against its folder, and its removal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from dlcli.cli import app, console, handle_errors

cache_app = typer.Typer(
    help="What dl keeps in your cache directory ($XDG_CACHE_HOME/dl, else ~/.cache/dl): folders of images decoded once.",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")

CACHE_DIR = typer.Option(None, "--cache-dir", help="dl's cache directory, if runs named one with data.cache_dir "
                                                   "(default: $XDG_CACHE_HOME/dl, else ~/.cache/dl).")


@cache_app.command(name="list", epilog="Examples:\n\n  dl cache list\n\n  dl cache list --json")
@handle_errors
def list_cache(
    cache_dir: Optional[Path] = CACHE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print every entry as JSON (path, folder, mode, resize, bytes, stale, why)."),
):
    """Each kept folder of decoded images, its size, and whether it is stale (its folder gone or changed)."""
    from rich.table import Table

    from dlcli.data.cache_store import IMAGES, cache_entries, cache_root

    entries = cache_entries(_setting(cache_dir))
    if as_json:
        print(json.dumps([entry.to_json() for entry in entries], indent=2))
        return
    where = cache_root(_setting(cache_dir)) / IMAGES
    if not entries:
        console.print(f"nothing kept under {where}", markup=False, highlight=False)
        return
    table = Table(title=f"decoded image folders kept under {where}", title_justify="left")
    for column in ("folder", "size", "MB", "state"):
        table.add_column(column, justify="right" if column == "MB" else "left", overflow="fold")
    for entry in entries:
        size = f"{entry.mode} {entry.resize or 'native'}" if entry.mode else "-"
        table.add_row(entry.folder or str(entry.path), size, f"{entry.size / 2**20:.1f}",
                      f"stale: {entry.stale}" if entry.stale else "current")
    console.print(table)
    stale = [entry for entry in entries if entry.stale]
    if stale:
        console.print(f"{len(stale)} stale ({sum(e.size for e in stale) / 2**20:.1f} MB): dl cache clear --stale removes them",
                      markup=False, highlight=False)


@cache_app.command(name="clear", epilog="Examples:\n\n  dl cache clear --stale\n\n  dl cache clear")
@handle_errors
def clear_cache(
    stale: bool = typer.Option(False, "--stale", help="Only the entries whose folder is gone or changed since."),
    cache_dir: Optional[Path] = CACHE_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print what was removed as JSON."),
):
    """Remove kept folders of decoded images (all, or only the stale ones); the next run decodes again."""
    from dlcli.data.cache_store import cache_entries, remove_entries

    entries = [entry for entry in cache_entries(_setting(cache_dir)) if entry.stale or not stale]
    freed = remove_entries(entries)
    if as_json:
        print(json.dumps({"removed": [str(entry.path) for entry in entries], "bytes": freed}, indent=2))
        return
    kind = "stale " if stale else ""
    console.print(f"removed {len(entries)} {kind}cache file{'' if len(entries) == 1 else 's'} ({freed / 2**20:.1f} MB)",
                  markup=False, highlight=False)


def _setting(cache_dir: Path | None) -> str | None:
    return str(cache_dir) if cache_dir is not None else None
