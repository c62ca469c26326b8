"""`dl runs`' terminal view of collected runs: the columns in the order they matter, without those
that are empty or the same everywhere (a headline metric the same everywhere is said once, in the
title), cells at 4 significant figures, names shortened without
two runs looking alike, and the columns that fit the terminal."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dlcli.rundir.collect import RunRows, comparable, is_monitor
from dlcli.config.compose import COMPONENT_GROUPS
from dlcli.errors import printable
from dlcli.system.numbers import setting, short

TIMING = ("seconds", "samples_per_second")  # summary.json's wall time, metrics.csv's median training speed
MAX_VALUE_WIDTH = 24
MAX_RUN_WIDTH = 40
MIN_RUN_WIDTH = 16


@dataclass
class TableView:
    columns: list[str]
    rows: list[dict]
    facts: list[str]  # what all runs share, said once in the title (all completed, one date)


def display_rows(runs: RunRows) -> TableView:
    """The terminal's view: columns in the order they matter, without those that are empty or the
    same everywhere. Run and status; epochs; the validation and test metric (one `metric` column
    naming it when the runs measure different things); the components; the settings the user
    typed; then best epoch and the other test numbers."""
    rows = runs.rows
    present = list(dict.fromkeys(k for row in rows for k in row))
    monitors = [k for k in present if is_monitor(k)]
    metrics = [m[len("val_"):] for m in monitors]
    headline = [*monitors, *(f"test_{m}" for m in metrics)]
    if len(monitors) > 1:  # mixed tasks: one column per role, not one per metric
        shown = []
        for row in rows:
            metric = next((m for m in metrics if row.get(f"val_{m}") is not None or row.get(f"test_{m}") is not None), None)
            view = {k: v for k, v in row.items() if k not in headline}
            view.update(metric=metric, val=_with_spread(row, f"val_{metric}"), test=row.get(f"test_{metric}"))
            shown.append(view)
        rows, leading = shown, ["metric", "val", "test"]
    else:
        rows = [{**row, **{m: _with_spread(row, m) for m in monitors if m in row}} for row in rows]
        leading = [*monitors, *(f"test_{m}" for m in metrics if f"test_{m}" in present)]
    components = [g for g in COMPONENT_GROUPS if g in present]
    typed = [k for keys in runs.typed for k in keys if k in present and k not in components]
    rest = [k for k in present if k.startswith("test_") and k not in headline]
    order = list(dict.fromkeys(["run", "status", *leading, "diagnosis", *components, *typed, "epochs", "best_epoch",
                                *TIMING, *rest]))
    facts = []
    statuses = {row.get("status") for row in rows}
    if len(rows) > 1 and len(statuses) == 1:
        facts.append(f"all {statuses.pop()}")
    equal = [c for c in leading if len(rows) > 1 and not _varies(rows, c) and rows[0].get(c) is not None]
    if equal:  # the headline is what the user came for: the same in every run, it is said so, once
        facts.append(f"{', '.join(f'{c} {cell_text(c, rows[0][c])}' for c in equal)} in every run")
    rows, day = _without_shared_date(rows)
    if day:
        facts.append(f"all on {day}")
    return TableView([c for c in order if c == "run" or _varies(rows, c)], rows, facts)


def _with_spread(row: dict, column: str):
    """A k-fold row's mean with its fold spread (0.9431 ± 0.007724); any other value as it is."""
    spread = row.get(f"{column}_std")
    if spread is None or row.get(column) is None:
        return row.get(column)
    return f"{short(row[column])} ± {short(spread)}"


_STAMP = re.compile(r"(\d{4}-\d{2}-\d{2})_(\d{2}-\d{2}-\d{2})")


def _without_shared_date(rows: list[dict]) -> tuple[list[dict], str | None]:
    """Runs started on one day are told apart by their time: runs/mlp/2026-11-24_10-31-07 shows
    as mlp/10-31-07, and the day is said once."""
    days = {m.group(1) for row in rows for m in [_STAMP.search(str(row.get("run", "")))] if m}
    if len(days) != 1 or not all(_STAMP.search(str(row.get("run", ""))) for row in rows):
        return rows, None
    return [{**row, "run": _STAMP.sub(r"\2", row["run"], count=1)} for row in rows], days.pop()


def _varies(rows: list[dict], column: str) -> bool:
    values = [comparable(row.get(column)) for row in rows]
    if all(row.get(column) is None for row in rows):
        return False
    return len(rows) == 1 or len(set(values)) > 1


def cell_text(column: str, value) -> str:
    if value is None:
        return "-"
    if column in ("run", "status"):
        return printable(str(value))  # escaped before any width is counted or any name elided
    text = printable(short(value) if _is_measurement(column) else setting(value))
    return elide(text, MAX_VALUE_WIDTH)


def _is_measurement(column: str) -> bool:
    return column.startswith(("val_", "test_", "train_")) or column in ("val", "test", "epochs", "best_epoch", *TIMING)


def is_number_column(column: str) -> bool:
    return _is_measurement(column)


def elide(text: str, width: int) -> str:
    """Long text keeps its start and its end (where paths and lists differ)."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep - keep // 2] + "…" + text[len(text) - keep // 2:]


def elide_distinct(names: list[str], width: int) -> list[str]:
    """Run names shortened to `width` without two runs ending up with the same text: the path
    parts every name shares go first (…/), then the middle, then the start of each name."""
    if all(len(name) <= width for name in names):
        return names
    parts = [name.split("/") for name in names]
    compact = names
    if len(names) > 1:
        depth = max(map(len, parts))
        varying = {i for i in range(depth) if len({p[i] if i < len(p) else None for p in parts}) > 1}
        compact = []
        for p in parts:
            kept: list[str] = []
            for i, segment in enumerate(p):
                if i in varying or i == len(p) - 1:
                    kept.append(segment)
                elif not kept or kept[-1] != "…":
                    kept.append("…")
            compact.append("/".join(kept))
    wanted = len(set(names))
    for shorten in (lambda text: elide(text, width), lambda text: text if len(text) <= width else "…" + text[len(text) - width + 1:]):
        shown = [shorten(name) for name in compact]
        if len(set(shown)) == wanted:
            return shown
    return compact  # wider than asked rather than two runs under one name


def fit_columns(columns: list[str], cells: dict[str, list[str]], width: int, essential: int) -> tuple[list[str], list[str], int]:
    """The columns that fit in `width` terminal cells, in order, those left out, and the width the
    run column gets: the run names are shortened (middle elided) before any of the first
    `essential` columns is left out."""
    def need(column: str, limit: int | None = None) -> int:
        widest = max([len(header_text(column)), *(len(c) for c in cells[column])])
        return (min(widest, limit) if limit else widest) + 3  # padding and border

    run_width = need("run", MAX_RUN_WIDTH) - 3
    essential_need = 1 + sum(need(c) for c in columns[1:essential])
    if essential_need + run_width + 3 > width:
        run_width = max(MIN_RUN_WIDTH, width - essential_need - 3)
    kept, left_out, used = ["run"], [], 1 + run_width + 3
    for column in columns[1:]:
        if used + need(column) <= width:
            kept.append(column)
            used += need(column)
        else:
            left_out.append(column)
    return kept, left_out, run_width


def header_text(column: str) -> str:
    return elide(column, MAX_VALUE_WIDTH)
