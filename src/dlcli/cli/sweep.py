"""`dl sweep KIND`: one command per kind of sweep in dlcli.sweep.kinds, made from that table with
the options every kind shares, defined once here (a kind that draws also takes --trials and --seed)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import List, Optional

import typer

from dlcli.cli import CONFIG_DIR, QUIET_HELP, TRUST, app, checked_options, console, err_console, handle_errors
from dlcli.cli.render import sweep_headline, sweep_table
from dlcli.sweep.kinds import KINDS, Kind
from dlcli.sweep.study import DEFAULT_STARTUP, DEFAULT_WARMUP

sweep_app = typer.Typer(
    help="Hyper-parameter search over Hydra sweep overrides: parallel, resumable, test split untouched.",
    no_args_is_help=True,
)
app.add_typer(sweep_app, name="sweep")


def _option(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


# name -> (type, Typer option): the options of every kind, in the order --help shows them
SHARED = {
    "jobs": (Optional[int], typer.Option(None, "--jobs", "-j", help="Trials at once (processes locally; one GPU each when there are several). Default 1, or what a resumed sweep used.")),
    "threads": (Optional[int], typer.Option(None, "--threads", help="CPU threads per trial (default: cores / jobs, or what a resumed sweep used).")),
    "metric": (Optional[str], typer.Option(None, "--metric", help="Validation metric to select on (default: the task's, e.g. val_accuracy).")),
    "mode": (Optional[str], typer.Option(None, "--mode", help="min | max (default: from the metric).")),
    "prune": (str, typer.Option("none", "--prune", help="Stop bad trials early with Optuna's pruners: none | median | asha | hyperband.")),
    "prune_warmup": (int, typer.Option(DEFAULT_WARMUP, "--prune-warmup", metavar="EPOCHS", help="Epochs every trial trains before a pruner may stop it (Optuna's n_warmup_steps; ASHA/Hyperband's min_resource is the next epoch). A k-fold trial is judged after each fold.")),
    "prune_startup": (int, typer.Option(DEFAULT_STARTUP, "--prune-startup", metavar="TRIALS", help="Trials that must complete before any is pruned (Optuna's n_startup_trials).")),
    "fail_fast": (bool, typer.Option(False, "--fail-fast", help="Stop the sweep at the first failed trial.")),
    "backend": (str, typer.Option("local", "--backend", help="local | ray")),
    "address": (Optional[str], typer.Option(None, "--address", help="Ray cluster HOST:PORT (default: start a local Ray instance).")),
    "gpus_per_trial": (float, typer.Option(0.0, "--gpus-per-trial", help="GPUs Ray reserves per trial.")),
    "trials_per_gpu": (Optional[int], typer.Option(None, "--trials-per-gpu", help="Run K trials on each visible GPU at once (small models share a GPU); does nothing without CUDA.")),
    "resume": (Optional[Path], typer.Option(None, "--resume", help="A sweep directory to finish: runs only trials not yet completed.")),
    "name": (str, typer.Option("sweep", "--name", help="Sweeps land in runs/sweeps/<name>/<timestamp>/.")),
    "config_dir": (Optional[List[Path]], CONFIG_DIR),
    "as_json": (bool, typer.Option(False, "--json", help="Print the summary and trials as JSON.")),
    "quiet": (bool, typer.Option(False, "--quiet", "-q", help=QUIET_HELP)),
    "trust": (Optional[List[str]], TRUST),
}


def _declared() -> dict:
    """The command's options, checked by the sweep's own table (--metric depends on the task:
    checked when the sweep knows it)."""
    from dlcli.sweep.plan import declared

    table = declared()
    return {name: table[name] for name in ("trials", "seed", "jobs", "threads", "trials_per_gpu", "mode", "prune", "prune_warmup",
                                           "prune_startup", "backend", "gpus_per_trial", "name")}


def run_kind(kind: str, options: dict) -> None:
    """A sweep of this kind from the command's options: what it searches (SweepSettings), how it
    runs (SweepPlan), and how it is shown."""
    from dlcli.sweep import SweepPlan, SweepSettings, sweep

    settings = SweepSettings(kind=kind, overrides=list(options["overrides"] or []), trials=options.get("trials"),
                             seed=options.get("seed", 0), metric=options["metric"], mode=options["mode"], prune=options["prune"],
                             prune_warmup=options["prune_warmup"], prune_startup=options["prune_startup"])
    plan = SweepPlan(**{name: options[name] for name in ("jobs", "threads", "fail_fast", "backend", "address", "gpus_per_trial",
                                                          "trials_per_gpu", "resume", "name")},
                     config_dirs=[str(d) for d in options["config_dir"] or []], trust=list(options["trust"] or []))
    as_json, quiet = options["as_json"], options["quiet"]
    silent = as_json or quiet
    log = (lambda line: None) if silent else (lambda line: err_console.print(line, markup=False, highlight=False, soft_wrap=True))
    result = sweep(settings, plan, log)
    if as_json:
        print(json.dumps({"sweep_dir": str(result.sweep_dir), **result.summary, "trials": json.loads(result.table.to_json(orient="records"))}, indent=2))
    elif quiet:
        print(sweep_headline(result.sweep_dir, result.summary))
    else:
        table, left_out = sweep_table(result, console.width)
        console.print(table)
        if left_out:
            err_console.print(f"left out to fit {console.width} columns: {', '.join(left_out)} (every column is in "
                              f"{result.sweep_dir / 'results.csv'})", markup=False, highlight=False, soft_wrap=True)
    if result.summary["status"] == "interrupted":
        raise typer.Exit(130)
    if result.summary["status"] == "failed":
        raise typer.Exit(1)


def _command_for(kind: Kind):
    """A Typer command for one kind: its signature is what --help lists."""
    def command(**options):
        run_kind(kind.name, options)

    parameters = [inspect.Parameter("overrides", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[List[str]],
                                    default=typer.Argument(None, help=kind.overrides_help, show_default=False))]
    if kind.draws:
        parameters += [_option("trials", Optional[int], typer.Option(None, "--trials", "-n", help="How many trials to run (required unless --resume).")),
                       _option("seed", int, typer.Option(0, "--seed", help=kind.seed_help))]
    parameters += [_option(name, annotation, default) for name, (annotation, default) in SHARED.items()]
    command.__signature__ = inspect.Signature(parameters)
    command.__name__ = f"sweep_{kind.name}"
    command.__doc__ = kind.summary
    return command


for _kind in KINDS.values():
    sweep_app.command(_kind.name, epilog="Examples:\n\n" + "\n\n".join(f"  {e}" for e in _kind.examples))(
        handle_errors(checked_options(_declared)(_command_for(_kind))))
