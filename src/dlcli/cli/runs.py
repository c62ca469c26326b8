"""`dl runs`: many runs compared in one table per data set and metric."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from dlcli.cli import app, console, err_console, examples, handle_errors
from dlcli.cli.completion import first_words
from dlcli.cli.render import known_columns, runs_table
from dlcli.errors import UserError


@app.command(
    name="runs",
    epilog=examples("""
    dl runs
    dl runs runs/softmax runs/mlp_dropout --sort val_accuracy
    dl runs 'runs/sweeps/sweep/*' --columns status,val_accuracy,optim.lr
    dl runs --where data=digits --where status=completed
    dl runs runs/train --json
    dl runs postgresql://dl@db-host:5432/sweeps --study lr-search
    dl runs diff runs/train/2026-11-24_10-31-07 runs/train/2026-11-24_10-45-00
    dl runs diff runs/train/2026-11-24_10-31-07 runs/train/2026-11-24_10-45-00 --json
"""),
)
@first_words(diff="Only what differs between runs: settings, data, code, environment, seed, results.")  # (TAB completion offers it)
@handle_errors
def list_runs(
    directories: Optional[List[str]] = typer.Argument(None, help="Directories holding runs, or patterns (default: runs/); searched recursively.", show_default=False),
    sort: Optional[str] = typer.Option(None, "--sort", help="Column to sort by (default: each group's validation metric, best first)."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Comma-separated columns to show (default: those that differ, most useful first)."),
    where: Optional[List[str]] = typer.Option(None, "--where", help="Only runs whose column has this value: KEY=VALUE or KEY!=VALUE (e.g. data=digits, status=completed, optim.lr=0.1); repeat to narrow."),
    as_json: bool = typer.Option(False, "--json", help="Print every column of every run as JSON (numbers, booleans and lists typed)."),
    study: Optional[str] = typer.Option(None, "--study", help="With a database URL (dl sweep --storage): the study whose trials to list, wherever they ran."),
):
    """Compare runs (or a sweep's trials) in one table per data set and metric: status, metrics, and the settings that differ.

    `dl runs diff RUN_A RUN_B [RUN_C...]`: only what differs between runs (settings, data, code,
    environment, seed), their results side by side, and the epoch at which their loss curves part."""
    from dlcli.rundir.collect import best_first, collect_runs, filter_runs, group_runs
    from dlcli.sweep.storage import is_database_url, masked

    if directories and directories[0] == "diff":  # `dl runs diff A B`: a directory named diff is ./diff
        _refuse_table_options(sort=sort, columns=columns, where=where, study=study)
        _print_diff(directories[1:], as_json)
        return
    directories = list(directories or ["runs"])
    runs = filter_runs(_study_runs(directories, study) if study or is_database_url(directories[0]) else collect_runs(directories),
                       where or [])
    every = list(dict.fromkeys(k for row in runs.rows for k in row))
    if sort is not None and sort not in every:
        raise UserError(f"--sort {sort} is not a column: columns are {', '.join(every)}")
    groups = group_runs(runs)
    for group in groups:
        if sort is None:
            best_first(group)
        else:
            _sort_rows(group.runs, sort)
    if as_json:
        print(json.dumps([row for group in groups for row in group.runs.rows], indent=2))
        return
    where_text = ", ".join(masked(d) if is_database_url(d) else d for d in directories) + "".join(f" where {w}" for w in where or [])
    if not groups:
        console.print(f"no runs under {where_text}", markup=False, highlight=False)
        return
    chosen = [c.strip() for c in columns.split(",") if c.strip()] if columns is not None else None
    choices = [chosen] * len(groups)
    if chosen is not None and len(groups) > 1:  # each table shows the chosen columns it has; a column none has is an error
        known = [known_columns(group.runs, group.runs.rows) for group in groups]
        everywhere = list(dict.fromkeys(c for columns_of_one in known for c in columns_of_one))
        unknown = [c for c in chosen if c not in everywhere]
        if unknown:
            raise UserError(f"--columns {unknown[0]} is not a column: columns are {', '.join(everywhere)}")
        choices = [[c for c in chosen if c in its_columns] for its_columns in known]
    for group, its_choice in zip(groups, choices):
        rows = group.runs.rows
        table, left_out = runs_table(group.runs, rows, where_text, console.width, its_choice, group.label if len(groups) > 1 else None)
        console.print(table)
        if left_out:
            differ = "" if len(rows) == 1 else (" differs" if len(left_out) == 1 else " differ")  # one run: nothing to differ from
            err_console.print(f"{len(left_out)} more column{'' if len(left_out) == 1 else 's'}{differ} but do not fit: "
                              f"{', '.join(left_out)} (choose with --columns, or see all with --json)",
                              markup=False, highlight=False, soft_wrap=True)


def _study_runs(given: list[str], study: str | None):
    """The trials of a database-backed sweep's study, one row each (run: where it ran)."""
    from dlcli.rundir.collect import RunRows
    from dlcli.sweep.report import study_rows
    from dlcli.sweep.storage import is_database_url

    if len(given) != 1 or not is_database_url(given[0]) or not study:
        raise UserError("dl runs reads a study as: dl runs URL --study NAME (one database URL, the study's name)")
    rows, swept = study_rows(given[0], study)
    return RunRows(rows, [list(swept) for _ in rows])


def _sort_rows(runs, sort: str) -> None:
    """--sort COLUMN: best first for a metric, missing values last; numbers before text."""
    from dlcli.config.metric_names import monitor_mode

    descending = monitor_mode(sort) == "max"

    def order(index):
        value = runs.rows[index].get(sort)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, -value if descending else value, "")
        return (1 if value is not None else 2, 0, json.dumps(value))

    ranked = sorted(range(len(runs.rows)), key=order)
    runs.rows[:], runs.typed[:] = [runs.rows[i] for i in ranked], [runs.typed[i] for i in ranked]


def _refuse_table_options(**given) -> None:
    """--sort, --columns, --where and --study shape `dl runs`' table: `dl runs diff` has none to shape."""
    for name, value in given.items():
        if value:
            raise UserError(f"--{name} applies to dl runs' table, not to dl runs diff: drop it (dl runs diff takes --json)")


def _print_diff(paths: List[str], as_json: bool) -> None:
    from dlcli.cli.runs_diff import curve_lines, diff_json, diff_table, same_line
    from dlcli.rundir.diff import diff_runs

    diff = diff_runs(paths)
    if as_json:
        print(diff_json(diff))
        return
    console.print(diff_table(diff))
    for line in filter(None, [same_line(diff), *curve_lines(diff)]):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
