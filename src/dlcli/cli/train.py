"""`dl train`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from rich.console import Console

from dlcli.cli import CONFIG_DIR, OVERRIDES_HELP, QUIET_HELP, TRUST, app, console, err_console, handle_errors
from dlcli.cli.completion import declares, device_option
from dlcli.cli.render import headline, kfold_table, summary_table


@app.command(
    epilog=(
        "Examples:\n\n"
        "  dl train\n\n"
        "  dl train model=lenet data=fashion_mnist optim.lr=0.9 optim.momentum=0 trainer.epochs=10\n\n"
        "  dl train model=lenet data.resize=28 model.activation=relu      (LeNet on the bundled 8x8 digits, enlarged)\n\n"
        "  dl train data=csv data.path=house.csv data.target=SalePrice data.task=regression\n\n"
        "  dl train sched=warmup_cosine optim=adamw trainer.early_stopping.enabled=true --device cpu\n\n"
        "  dl train resume=runs/train/2026-11-24_10-31-07\n\n"
        "  dl train resume=runs/train/2026-11-24_10-31-07 trainer.epochs=40      (a finished run, longer, in a new run)\n\n"
        "  dl train refit=runs/house_prices/2026-11-24_11-00-00      (train+val together, for the epochs the run chose)\n\n"
        "  dl train --overrides-file runs/sweeps/sweep/2026-11-24_10-31-07/best.yaml trainer.epochs=40"
    )
)
@handle_errors
@declares(device_option)
def train(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    cfg: bool = typer.Option(False, "--cfg", help="Print the resolved config and exit."),
    config_dir: Optional[List[Path]] = CONFIG_DIR,
    name: Optional[str] = typer.Option(None, "--name", help="Run name: runs land in runs/<name>/<timestamp>/."),
    device: Optional[str] = typer.Option(None, "--device", help="Shortcut for trainer.device=auto|cpu|cuda|cuda:N|mps."),
    overrides_file: Optional[Path] = typer.Option(
        None, "--overrides-file", help="Overrides from a YAML file (a sweep's best.yaml, a run's overrides.yaml) before those typed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    trust: Optional[List[str]] = TRUST,
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
    multirun: bool = typer.Option(False, "--multirun", "-m", hidden=True,
                                  help="Hydra's multirun habit: answered with the dl sweep grid command that does it."),
):
    """Train a model: compose the config, fit on the best device, test the best checkpoint once."""
    if multirun:  # Hydra's `-m a=1,2`: one line with the command that runs that grid, before anything is composed
        import shlex

        from dlcli.errors import UserError

        raise UserError("dl train runs one config; for Hydra's -m/--multirun grid use: dl sweep grid "
                        + " ".join(shlex.quote(o) for o in overrides or []))
    from dlcli.config.compose import compose, override_key, read_overrides_file, to_yaml
    from dlcli.trust.received import writes_only_where_typed

    from_file = read_overrides_file(overrides_file, trust or []) if overrides_file else []
    typed = list(overrides or [])
    overrides = [*from_file, *typed]
    composed = compose(overrides, config_dir or [])
    if overrides_file:  # a file from elsewhere never writes into a folder it names (a download, a cache)
        writes_only_where_typed(composed, {override_key(o) for o in from_file}, {override_key(o) for o in typed},
                                f"--overrides-file {overrides_file}")
    # Options are set on the composed config, not spliced into override strings: a name with
    # spaces or quotes is a value, not Hydra grammar. overrides.yaml still records them.
    if name is not None:
        composed.name = name
        overrides.append(f"name={name}")
    if device is not None:
        composed.trainer.device = device
        overrides.append(f"trainer.device={device}")
    if cfg:
        console.print(to_yaml(composed), markup=False, highlight=False, soft_wrap=True)
        return
    from dlcli.engine.progress import Reporter
    from dlcli.run.dispatch import train as run_training
    from dlcli.run.request import RunRequest

    silent = quiet or as_json
    reporter = Reporter(Console(quiet=True) if silent else console, show_progress=not silent and composed.trainer.progress)
    result = run_training(RunRequest(composed, overrides, reporter, trust=trust or []))
    if _not_rank_zero():  # under torchrun every rank runs this command; rank 0 speaks for the run
        return
    if as_json:
        print(json.dumps({"run_dir": str(result.run_dir), **result.summary}, indent=2))
    elif quiet:
        print(headline(result.run_dir, result.summary))
    elif not quiet and result.summary.get("kind") == "kfold":
        console.print(kfold_table(result.run_dir))
    elif not quiet:
        console.print(summary_table(result.run_dir, result.summary))
    if result.status != "completed" and result.summary.get("message"):
        err_console.print(f"{result.status}: {result.summary['message']}", markup=False, highlight=False, soft_wrap=True)
    if result.status == "interrupted":
        raise typer.Exit(130)
    if result.status == "failed":
        raise typer.Exit(1)


def _not_rank_zero() -> bool:
    import os

    return int(os.environ.get("RANK", "0") or 0) != 0 and "TORCHELASTIC_RUN_ID" in os.environ
