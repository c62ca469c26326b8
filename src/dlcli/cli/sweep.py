"""`dl sweep KIND`: one command per kind of sweep in dlcli.sweep.kinds, made from that table with
the options every kind shares, defined once here (a kind that draws also takes --trials and --seed)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import List, Optional

import typer

from dlcli.cli import CONFIG_DIR, QUIET_HELP, TRUST, app, checked_options, console, err_console, examples, handle_errors
from dlcli.cli.render import sweep_headline, sweep_table
from dlcli.sweep.kinds import KINDS, Kind
from dlcli.sweep.storage import DEFAULT_HEARTBEAT
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
    "storage": (Optional[str], typer.Option(None, "--storage", metavar="URL", help="Keep the study in a database server (postgresql://USER@HOST/DB; the password in DL_STORAGE_PASSWORD) instead of the sweep directory: workers on any machine join it with dl sweep join URL --study NAME (the --name).")),
    "heartbeat": (int, typer.Option(DEFAULT_HEARTBEAT, "--heartbeat", metavar="SECONDS", help="With --storage: seconds between a worker's heartbeats; a trial silent for three is failed and run once more by another worker.")),
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
                                           "prune_startup", "backend", "gpus_per_trial", "name", "heartbeat")}


def run_kind(kind: str, options: dict) -> None:
    """A sweep of this kind from the command's options: what it searches (SweepSettings), how it
    runs (SweepPlan), and how it is shown."""
    from dlcli.sweep import SweepPlan, SweepSettings

    settings = SweepSettings(kind=kind, overrides=list(options["overrides"] or []), trials=options.get("trials"),
                             seed=options.get("seed", 0), metric=options["metric"], mode=options["mode"], prune=options["prune"],
                             prune_warmup=options["prune_warmup"], prune_startup=options["prune_startup"])
    plan = SweepPlan(**{name: options[name] for name in ("jobs", "threads", "fail_fast", "backend", "address", "gpus_per_trial",
                                                          "trials_per_gpu", "resume", "name", "storage", "heartbeat")},
                     config_dirs=[str(d) for d in options["config_dir"] or []], trust=list(options["trust"] or []))
    sweep_and_show(settings, plan, options)


def sweep_and_show(settings, plan, options: dict) -> None:
    from dlcli.sweep import sweep
    from dlcli.sweep.shared import NothingToRun

    try:
        result = sweep(settings, plan, _log(options))
    except NothingToRun as done:  # a shared study whose every trial has ended: a worker started late (or again) has nothing to do
        err_console.print(str(done), markup=False, highlight=False, soft_wrap=True)
        return
    show_sweep(result, options)


def _log(options: dict):
    silent = options["as_json"] or options["quiet"]
    return (lambda line: None) if silent else (lambda line: err_console.print(line, markup=False, highlight=False, soft_wrap=True))


def show_sweep(result, options: dict) -> None:
    """A sweep's outcome as --json, --quiet or a table say; its status as the exit code."""
    as_json, quiet = options["as_json"], options["quiet"]
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


STUDY = typer.Option(..., "--study", help="The study's name: the --name of the command that started the sweep.")
URL = typer.Argument(..., metavar="URL", help="The study's database, as --storage gave it (the password in DL_STORAGE_PASSWORD).")


@sweep_app.command("join", epilog=examples("""
    dl sweep join postgresql://dl@db-host:5432/sweeps --study lr-search --jobs 2
    dl sweep join postgresql://dl@db-host:5432/sweeps --study lr-search --quiet      (one task of a SLURM job array)
"""))
@handle_errors
@checked_options(lambda: {name: constraint for name, constraint in _declared().items() if name in ("jobs", "threads")})
def sweep_join(url: str = URL, study: str = STUDY, jobs: Optional[int] = SHARED["jobs"][1],
               threads: Optional[int] = SHARED["threads"][1], fail_fast: bool = SHARED["fail_fast"][1],
               config_dir: Optional[List[Path]] = CONFIG_DIR, as_json: bool = SHARED["as_json"][1],
               quiet: bool = SHARED["quiet"][1], trust: Optional[List[str]] = TRUST):
    """Work on a sweep whose study is in a database: take its trials until none is left (run it on
    as many machines as you like; again after a crash to carry on). Trials land in
    runs/sweeps/NAME/<timestamp>/ here; the study records where."""
    from dlcli.sweep import SweepPlan, SweepSettings

    plan = SweepPlan(jobs=jobs, threads=threads, fail_fast=fail_fast, name=study, storage=url, joining=True,
                     config_dirs=[str(d) for d in config_dir or []], trust=list(trust or []))
    sweep_and_show(SweepSettings(kind="grid", overrides=[]), plan, {"as_json": as_json, "quiet": quiet})


@sweep_app.command("report", epilog=examples("""
    dl sweep report postgresql://dl@db-host:5432/sweeps --study lr-search
    dl sweep report postgresql://dl@db-host:5432/sweeps --study lr-search --out lr-report --json
"""))
@handle_errors
def sweep_report(url: str = URL, study: str = STUDY,
                 out: Optional[Path] = typer.Option(None, "--out", help="Where to write (default: runs/sweeps/NAME/report/)."),
                 config_dir: Optional[List[Path]] = CONFIG_DIR, as_json: bool = SHARED["as_json"][1],
                 quiet: bool = SHARED["quiet"][1], trust: Optional[List[str]] = TRUST):
    """results.csv, best.yaml and sweep.png of a database-backed sweep, from its study (on any machine)."""
    from dlcli.sweep.report import report_study

    options = {"as_json": as_json, "quiet": quiet}
    result = report_study(url, study, out, config_dirs=[str(d) for d in config_dir or []], trust=list(trust or []), log=_log(options))
    show_sweep(result, options)
