"""The `dl` command line. Each command parses, calls one library function, renders the result.

Only typer and rich are imported at module level: `dl --help` must answer without loading torch.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from dlcli.errors import RunFailed, UserError

app = typer.Typer(
    name="dl",
    help="A command-line experiment runner for deep learning: Hydra configs, one PyTorch engine, every number in runs/.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)

OVERRIDES_HELP = "Hydra overrides: key=value, group=option, +key=value, ~key."


def handle_errors(command):
    """User errors become one line on stderr and exit code 2; bugs keep their traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except RunFailed as exc:
            err_console.print(f"failed: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:  # before a run exists (a started run records it and returns)
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


@app.command(
    epilog=(
        "Examples:\n\n"
        "  dl train\n\n"
        "  dl train model=lenet optim.lr=0.9 trainer.epochs=10\n\n"
        "  dl train data=csv data.path=house.csv data.target=SalePrice data.task=regression\n\n"
        "  dl train sched=warmup_cosine optim=adamw trainer.early_stopping.enabled=true --device cpu\n\n"
        "  dl train resume=runs/train/2026-11-24_10-31-07"
    )
)
@handle_errors
def train(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    cfg: bool = typer.Option(False, "--cfg", help="Print the resolved config and exit."),
    config_dir: Optional[List[Path]] = typer.Option(None, "--config-dir", help="Extra config directory (repeatable); ./conf is always searched."),
    name: Optional[str] = typer.Option(None, "--name", help="Run name: runs land in runs/<name>/<timestamp>/."),
    device: Optional[str] = typer.Option(None, "--device", help="Shortcut for trainer.device=auto|cpu|cuda|cuda:N|mps."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or epoch lines."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
):
    """Train a model: compose the config, fit on the best device, test the best checkpoint once."""
    from dlcli.config import compose, to_yaml

    overrides = list(overrides or [])
    if name is not None:
        overrides.append(f"name={name}")
    if device is not None:
        overrides.append(f"trainer.device={device}")
    composed = compose(overrides, config_dir or [])
    if cfg:
        console.print(to_yaml(composed), markup=False, highlight=False, soft_wrap=True)
        return
    from dlcli.engine.progress import Reporter
    from dlcli.train import train as run_training

    quiet = quiet or as_json
    reporter = Reporter(Console(quiet=True) if quiet else console, show_progress=not quiet and composed.trainer.progress)
    result = run_training(composed, overrides, reporter)
    if as_json:
        print(json.dumps({"run_dir": str(result.run_dir), **result.summary}, indent=2))
    elif not quiet:
        console.print(summary_table(result.run_dir, result.summary))
    if result.status == "interrupted":
        raise typer.Exit(130)
    if result.status == "failed":
        raise typer.Exit(1)


@app.command(
    name="eval",
    epilog="Examples:\n\n  dl eval runs/train/2026-11-24_10-31-07\n\n  dl eval RUN_DIR --split val --checkpoint last --json",
)
@handle_errors
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory written by dl train."),
    split: str = typer.Option("test", "--split", help="test | val | train"),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last"),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps (default: the run's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """Evaluate a run's checkpoint on the same split it was trained with."""
    from dlcli.evaluate import evaluate_run

    report = evaluate_run(run_dir, split, checkpoint, device)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    console.print(metrics_table(report))
    if "per_class" in report:
        console.print(per_class_table(report))
    console.print(f"wrote {Path(report['run']) / ('eval-' + split + '.json')}", markup=False, highlight=False)


def summary_table(run_dir: Path, summary: dict) -> Table:
    table = Table(title=f"{summary.get('status', '?')}: {run_dir}", show_header=True)
    table.add_column("")
    table.add_column("value", justify="right")
    monitor = summary.get("monitor", "")
    rows = [
        ("device", summary.get("device")),
        ("epochs completed", summary.get("epochs_completed")),
        ("best epoch", summary.get("best_epoch")),
        (f"best {monitor}", _fmt(summary.get(f"best_{monitor}"))),
    ]
    for key, value in (summary.get("test") or {}).items():
        if key not in ("epoch", "samples"):
            rows.append((f"test {key}", _fmt(value)))
    rows.append(("wall time", f"{summary.get('wall_seconds', 0):.1f}s"))
    for label, value in rows:
        table.add_row(label, str(value))
    return table


def metrics_table(report: dict) -> Table:
    table = Table(title=f"{report['split']} split, {report['checkpoint']} checkpoint (epoch {report['epoch']}, {report['samples']} samples)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("loss", "accuracy", "macro_f1", "rmse", "mae", "r2"):
        if key in report:
            table.add_row(key, _fmt(report[key]))
    return table


def per_class_table(report: dict) -> Table:
    table = Table(title="per class")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in report["per_class"]:
        table.add_row(row["class"], _fmt(row["precision"]), _fmt(row["recall"]), _fmt(row["f1"]), str(row["support"]))
    return table


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main() -> None:
    app(prog_name="dl")


if __name__ == "__main__":
    sys.exit(main())
