"""Rich tables for what the commands return. Pure presentation: no computation happens here."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from dlcli.cli.runs_table import cell_text, display_rows, elide_distinct, fit_columns, header_text, is_number_column
from dlcli.config.compose import COMPONENT_GROUPS
from dlcli.errors import UserError, printable
from dlcli.rundir.directory import read_json
from dlcli.system.numbers import as_number, setting, short


def titled(title: str, **options) -> Table:
    """A table at least as wide as its title, which would otherwise wrap over the columns."""
    return Table(title=title, min_width=len(title), **options)


def kfold_table(parent: Path) -> Table:
    report = read_json(parent / "kfold.json")
    monitor = report["monitor"]
    table = titled(f"{report['folds']}-fold cross-validation: {parent}")
    for column in ("fold", "status", "best epoch", monitor):
        table.add_column(column, justify="right")
    for row in report["per_fold"]:
        table.add_row(str(row["fold"]), row["status"], str(row["best_epoch"]), fmt(row[monitor]))
    if report["mean"] is not None:
        table.add_row("mean ± std", "", "", f"{short(report['mean'])} ± {short(report['std'])}")
    return table


def headline(run_dir: Path, summary: dict) -> str:
    """The one line a quiet run prints: where it is, how it ended, and its headline numbers (the
    run's name escaped: printed with print(), it passes no console of dl's)."""
    parts = [printable(f"{summary.get('status', '?')} {run_dir}")]
    if summary.get("kind") == "kfold":
        if summary.get("mean") is not None:
            parts.append(f"{summary.get('monitor', 'metric')} {short(summary['mean'])} ± {short(summary['std'])} over folds")
        return "  ".join(parts)
    monitor, metric = summary.get("monitor"), summary.get("metric")
    if monitor and summary.get(f"best_{monitor}") is not None:
        parts.append(f"best {monitor} {short(summary[f'best_{monitor}'])} (epoch {summary.get('best_epoch')})")
    test = summary.get("test") or {}
    if metric in test:
        naive = f"  (persistence {short(test[f'persistence_{metric}'])})" if f"persistence_{metric}" in test else ""  # a forecast
        baseline = summary.get("baseline") or {}  # a text column's bag of words, a language model's bigram
        words = (baseline.get("test") or {}).get(metric)
        naive += f"  ({baseline.get('label', 'bag of words')} {short(words)})" if words is not None else ""
        parts.append(f"test {metric} {short(test[metric])}{naive}")
    elif summary.get("no_test"):
        parts.append("no test split (split.test=0: trained on every labelled row)")
    return "  ".join(parts)


def sweep_headline(sweep_dir: Path, summary: dict) -> str:
    """The one line a quiet sweep prints: where, how it ended, the best trial and its test look
    (names and overrides escaped, as `headline`)."""
    parts = [printable(f"{summary.get('status', '?')} {sweep_dir}")]
    metric = summary.get("metric")
    if summary.get("best_trial") is not None:
        chosen = " ".join(o for o in summary.get("best_overrides") or [])
        parts.append(printable(f"best trial {summary['best_trial']:03d}: {metric} {short(summary.get(f'best_{metric}'))} ({chosen})"))
    test = summary.get("test") or {}
    task_metric = next((k for k in ("accuracy", "rmse") if k in test), None)
    if task_metric:
        parts.append(f"test {task_metric} {short(test[task_metric])}")
    return "  ".join(parts)


def loss_label(summary_or_report: dict) -> str:
    """Regression may train on a standardized (or log) target: its loss is in those units, not the target's."""
    units = summary_or_report.get("loss_units")
    return f"loss ({units})" if units else "loss"


def summary_table(run_dir: Path, summary: dict) -> Table:
    title = f"{summary.get('status', '?')}: {run_dir}"
    table = Table(title=title, show_header=True, min_width=len(title))
    table.add_column("")
    table.add_column("value", justify="right")
    monitor = summary.get("monitor", "")
    rows = [
        ("device", summary.get("device")),
        ("epochs completed", summary.get("epochs_completed")),
        ("best epoch", summary.get("best_epoch")),
        (f"best {monitor}", fmt(summary.get(f"best_{monitor}"))),
    ]
    naive = (summary.get("persistence") or {}).get("val") or {}
    if monitor.startswith("val_") and monitor[4:] in naive:  # a forecast: the naive one's beside the model's
        rows.append((f"persistence {monitor}", fmt(naive[monitor[4:]])))
    if summary.get("selection"):  # no validation split: nothing was selected
        rows[-2:] = [("kept epoch", f"{summary.get('best_epoch')} (the last: no validation split)")]
    if summary.get("refit_epochs_from"):
        rows.append(("epochs chosen by", summary["refit_epochs_from"]))
    if summary.get("no_test"):  # a refit on every labelled row
        rows.append(("test", "none: split.test=0 trained on every labelled row"))
    for key, value in (summary.get("test") or {}).items():
        if key not in ("epoch", "samples"):
            rows.append((f"test {loss_label(summary) if key == 'loss' else key}", fmt(value)))
    baseline = summary.get("baseline") or {}  # a text column's bag of words, a language model's bigram
    for key, value in (baseline.get("test") or {}).items():
        rows.append((f"{baseline.get('label', 'bag-of-words')} test {key}", fmt(value)))
    rows.append(("wall time", f"{summary.get('wall_seconds', 0):.1f}s"))
    for label, value in rows:
        table.add_row(label, str(value))
    return table


def metrics_table(report: dict) -> Table:
    title = f"{report['split']} split, {report['checkpoint']} checkpoint (epoch {report['epoch']}, {report['samples']} samples)"
    table = Table(title=title, min_width=len(title))  # a title wider than the table would wrap
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("loss", "perplexity", "bits_per_token", "accuracy", "macro_f1", "rmse", "mae", "r2", "log_rmse", "persistence_rmse",
                "persistence_mae"):
        if key in report:
            table.add_row(loss_label(report) if key == "loss" else key, fmt(report[key]))
    return table


def per_class_table(report: dict) -> Table:
    table = Table(title="per class")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in report["per_class"]:
        table.add_row(row["class"], fmt(row["precision"]), fmt(row["recall"]), fmt(row["f1"]), str(row["support"]))
    return table


def confusion_table(report: dict) -> Table:
    """Rows: the true class; columns: the predicted one (as in confusion-<split>.png)."""
    names, matrix = report["class_names"], report["confusion_matrix"]
    title = "confusion matrix (rows: true class, columns: predicted)"
    table = Table(title=title, min_width=len(title))
    table.add_column("true \\ predicted")
    for name in names:
        table.add_column(str(name), justify="right")
    for name, row in zip(names, matrix):
        table.add_row(str(name), *(f"[bold]{n}[/bold]" if i == j else str(n) if n else "[dim]0[/dim]"
                                   for j, n in enumerate(row) for i in [names.index(name)]))
    return table


def fmt(value) -> str:
    return short(value)


def sweep_table(result, width: int = 10_000) -> tuple[Table, list[str]]:
    """The trials, best first, with full key names and 4 significant figures, fitted to `width`
    terminal cells: the least telling columns (seconds, best epoch, the tie-break's val_loss) are
    left out before any swept key or the metric is cut; returns the columns left out."""
    summary, frame = result.summary, result.table
    metric = summary["metric"]
    columns = [c for c in frame.columns if c != "message"]
    cells = {c: [_sweep_cell(c, row[c]) for _, row in frame.iterrows()] for c in columns}
    cells["number"] = [f"{int(n):03d}" for n in frame["number"]]
    if f"{metric}_std" in columns:  # a cross-validated sweep: mean ± std in one column
        cells[metric] = [f"{m} ± {d}" if d != "-" else m for m, d in zip(cells[metric], cells.pop(f"{metric}_std"))]
        columns.remove(f"{metric}_std")
    headers = {c: "trial" if c == "number" else c for c in columns}
    left_out = []
    def need(c):
        return max([len(headers[c]), *map(len, cells[c])]) + 3  # padding and border

    for droppable in ("seconds", "best_epoch", "val_loss"):
        if 1 + sum(need(c) for c in columns) <= width:
            break
        if droppable in columns:
            columns.remove(droppable)
            left_out.append(droppable)
    title = f"{summary['status']}: {printable(str(result.sweep_dir))} (sorted by {metric}, {summary['mode']})"
    # plain text: a folder, a setting or a value may hold [red] or [/], which are not markup here
    table = Table(title=Text(title), min_width=min(len(title), width))
    for column in columns:
        table.add_column(Text(headers[column]), justify="left" if column in ("status",) else "right",
                         no_wrap=column not in ("status",), overflow="fold")
    for i in range(len(frame)):
        table.add_row(*(Text(cells[c][i]) for c in columns))
    return table, left_out


def _sweep_cell(column: str, value) -> str:
    import pandas as pd  # noqa: PLC0415  (dl --help runs without pandas)

    if value is None or value is pd.NA or value != value:
        return "-"
    # dotted columns are the swept settings (optim.lr=0.01827), the rest are measurements; escaped
    # here, so that the widths the table is fitted to count what is shown
    return printable(setting(as_number(value)) if "." in column else fmt(value))


def shape_text(values) -> str:
    return "x".join(map(str, values)) if values else "-"


def shape_table(result: dict) -> Table:
    table = Table(title=f"input {shape_text(result['input'])} -> output {shape_text(result['output'])}, {result['total_params']:,} parameters")
    warned = any(layer["warnings"] for layer in result["layers"])
    table.add_column("layer")
    table.add_column("output", justify="right")
    table.add_column("params", justify="right")
    if warned:
        table.add_column("note", style="yellow")
    for layer in result["layers"]:
        note = ["warning (below)" if layer["warnings"] else ""] if warned else []
        table.add_row(layer["layer"], shape_text(layer["output"]), f"{layer['params']:,}", *note)
    return table


def param_table(summary: dict) -> Table:
    """Numbers and shapes are never cut: they keep their full width and the layer names fold
    instead. The trainable column appears only when something is frozen."""
    rows = summary["layers"]
    frozen = any(row["trainable"] != row["params"] for row in rows)
    columns = {
        "output": [shape_text(row["output"]) for row in rows],
        "params": [f"{row['params']:,}" for row in rows],
        **({"trainable": [f"{row['trainable']:,}" for row in rows]} if frozen else {}),
        "share": [f"{row['share']:.1%}" for row in rows],
        "mult-adds": [f"{row['macs']:,}" for row in rows],
    }
    table = Table(title=f"input {shape_text(summary['input'])} -> output {shape_text(summary['output'])}")
    table.add_column("layer", overflow="fold", ratio=2)
    table.add_column("type", overflow="fold", ratio=1)
    for header, values in columns.items():
        table.add_column(header, justify="right", no_wrap=True, min_width=max([len(header), *map(len, values)]))
    for i, row in enumerate(rows):
        table.add_row(row["name"], row["type"], *(values[i] for values in columns.values()))
    return table


def known_columns(runs, rows: list[dict]) -> list[str]:
    """The columns `dl runs --columns` may name for these runs: every collected one and the table's own."""
    return list(dict.fromkeys([*(k for row in rows for k in row), *display_rows(runs).columns]))


def runs_table(runs, rows: list[dict], where: str, width: int, chosen: list[str] | None = None, group: str | None = None):
    """`dl runs`' table of collected runs (rows already sorted), fitted to `width` columns unless
    the user chose them; and the columns that did not fit. `group` names the runs' data set and
    metric when the runs listed span several."""
    shown = display_rows(runs)
    wanted, view = shown.columns, shown.rows
    if chosen is not None:
        known = known_columns(runs, rows)
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise UserError(f"--columns {unknown[0]} is not a column: columns are {', '.join(known)}")
        wanted = list(dict.fromkeys(["run", *chosen]))
        view = [{**row, **viewed} for row, viewed in zip(rows, view)]
    cells = {c: [cell_text(c, row.get(c)) for row in view] for c in wanted}
    # the run names shorten before the metrics or the components (model=..., data=...) are left out
    essential = next((i for i, c in enumerate(wanted) if c not in ("run", "status", "metric", "val", "test", *COMPONENT_GROUPS)
                      and not c.startswith(("val_", "test_"))), len(wanted))
    kept, left_out, run_width = fit_columns(wanted, cells, width, essential) if chosen is None else (wanted, [], 10_000)
    cells["run"] = elide_distinct(cells["run"], run_width)
    facts = f" ({', '.join(shown.facts)})" if shown.facts else ""
    title = f"{group + ': ' if group else ''}{len(rows)} run{'' if len(rows) == 1 else 's'} under {printable(where)}{facts}"
    # plain text: a run's folder, name, setting or value may hold [red] or [/], which are not markup here
    table = Table(title=Text(title), min_width=min(len(title), width))
    for column in kept:
        table.add_column(Text(header_text(column)), justify="right" if is_number_column(column) else "left", no_wrap=True, overflow="ellipsis")
    for i in range(len(rows)):
        table.add_row(*(Text(cells[c][i]) for c in kept))
    return table, left_out
