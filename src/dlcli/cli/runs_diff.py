"""`dl runs diff RUN_A RUN_B [RUN_C...]`: the runs' differences as one table (the facts that
differ, section by section, then the headline numbers side by side), what is the same said in
one line, and where the runs' loss curves part. Pure presentation: dlcli.rundir.diff finds them."""

from __future__ import annotations

import json
import os

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dlcli.cli.runs_table import elide_distinct
from dlcli.errors import printable
from dlcli.rundir.diff import CURVE_COLUMNS, Parting, RunsDiff
from dlcli.rundir.directory import jsonable
from dlcli.system.numbers import setting, short

RUN_HEADER_WIDTH = 32
SECTION_TITLES = {"config": "settings (resolved)", "data": "data", "code": "code",
                  "environment": "environment", "seed": "seed"}


def diff_json(diff: RunsDiff) -> str:
    return json.dumps(jsonable(diff.to_json()), indent=2)  # a NaN loss or time is null: JSON has no NaN


def diff_table(diff: RunsDiff) -> Table:
    """One row per fact that differs (under its section's name), then every headline number."""
    folder, names = _common_folder(diff.runs)
    names = elide_distinct(names, RUN_HEADER_WIDTH)
    title = f"what differs between {len(diff.runs)} runs{f' under {printable(str(folder))}' if folder else ''}"
    table = Table(title=Text(title), title_justify="left")  # a folder may be named [red] or [/]: no markup
    table.add_column("")
    for name in names:
        table.add_column(escape(name), justify="right", overflow="fold")  # names and values may be anyone's: no markup
    for section, facts in diff.differ.items():
        table.add_row(f"[bold]{SECTION_TITLES[section]}[/bold]", *[""] * len(names))
        for key, values in facts.items():
            table.add_row(escape(f"  {key}"), *(escape(_fact_text(key, v)) for v in values))
    table.add_row("[bold]results[/bold]", *[""] * len(names))
    for key, values in diff.metrics.items():
        equal = len({json.dumps(v) for v in values}) == 1
        label = f"  {key}" + (" (equal)" if equal and key not in ("status",) else "")
        table.add_row(escape(label), *(escape(short(v)) if v is not None else "-" for v in values))
    return table


def _fact_text(key: str, value) -> str:
    """A fact as the table shows it: a commit by its first 12 digits (--json has all 40)."""
    if key.endswith("commit") and isinstance(value, str) and len(value) == 40:
        return value[:12]
    return setting(value)


def _common_folder(runs: list[str]) -> tuple[str, list[str]]:
    """The folder every run is in, said once in the title, and the runs' names below it (the
    columns stay narrow: runs/train/2026-12-07_10-31-07 and runs/train/... differ in their last part)."""
    try:
        folder = os.path.commonpath([os.path.normpath(run) for run in runs])
    except ValueError:  # absolute and relative paths together
        return "", runs
    if not folder or folder in (os.curdir, os.sep):
        return "", runs
    return folder, [os.path.relpath(os.path.normpath(run), folder) for run in runs]


def same_line(diff: RunsDiff) -> str | None:
    """The sections in which nothing differs, in a sentence."""
    if not diff.same:
        return None
    return f"the same in every run: {', '.join(SECTION_TITLES[s].split(' (')[0] for s in diff.same)}"


def curve_lines(diff: RunsDiff) -> list[str]:
    """Where each run's losses first part from the first run's, the tolerance said."""
    tolerance = f"{diff.tolerance:.1%}".replace(".0%", "%")
    lines = [f"curves ({' and '.join(CURVE_COLUMNS)} per epoch, against {diff.runs[0]}; "
             f"parted = more than {tolerance} apart, relative):"]
    lines += [f"  {_parting_text(parting)}" for parting in diff.partings]
    return lines


def _parting_text(parting: Parting) -> str:
    if parting.epochs_compared == 0:
        return f"{parting.run}: no epoch in common to compare"
    if parting.epoch is None:
        return f"{parting.run}: agrees over all {parting.epochs_compared} epochs in common"
    first, this = parting.values
    unmeasurable = None in (first, this) or first != first or this != this  # absent or NaN: no distance to give
    apart = "" if unmeasurable or max(abs(first), abs(this)) == 0 else \
        f", {abs(first - this) / max(abs(first), abs(this)):.2%} apart"
    return (f"{parting.run}: parts at epoch {parting.epoch}: {parting.column} "
            f"{short(first) if first is not None else '-'} vs {short(this) if this is not None else '-'}{apart}")
