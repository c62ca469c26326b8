"""The `dl` command line. Each command parses, calls one library function, renders the result.

Only typer and rich are imported at module level: `dl --help` must answer without loading torch.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from dlcli.errors import RunFailed, UserError
from dlcli.render import (
    confusion_table,
    fmt,
    headline,
    kfold_table,
    metrics_table,
    param_table,
    per_class_table,
    shape_table,
    summary_table,
    sweep_headline,
    sweep_table,
)

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
MAX_CLASSES_IN_TERMINAL = 12  # a larger confusion matrix is only readable as the picture
QUIET_HELP = "No progress bars or per-epoch/per-trial lines: only the line that matters (where the result is, the headline numbers)."
TRUST_HELP = (
    "A module (or one dotted class) that a config read from a file (a run's config.yaml, a sweep, --overrides-file) may "
    "build, besides what dl's own configs name (repeatable; ./conf/trust.yaml can list them too). Only for code you "
    "trust: building runs it."
)


def _print_version(value: bool) -> None:
    if value:
        from dlcli import __version__

        print(f"dl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print dl's version and exit."),
) -> None:
    """A command-line experiment runner for deep learning: Hydra configs, one PyTorch engine, every number in runs/."""


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
def train(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    cfg: bool = typer.Option(False, "--cfg", help="Print the resolved config and exit."),
    config_dir: Optional[List[Path]] = typer.Option(None, "--config-dir", help="Extra config directory (repeatable); ./conf is always searched."),
    name: Optional[str] = typer.Option(None, "--name", help="Run name: runs land in runs/<name>/<timestamp>/."),
    device: Optional[str] = typer.Option(None, "--device", help="Shortcut for trainer.device=auto|cpu|cuda|cuda:N|mps."),
    overrides_file: Optional[Path] = typer.Option(
        None, "--overrides-file", help="Overrides from a YAML file (a sweep's best.yaml, a run's overrides.yaml) before those typed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    trust: Optional[List[str]] = typer.Option(None, "--trust", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
):
    """Train a model: compose the config, fit on the best device, test the best checkpoint once."""
    from dlcli.config import compose, to_yaml

    from dlcli.config import read_overrides_file

    overrides = [*(read_overrides_file(overrides_file, trust or []) if overrides_file else []), *(overrides or [])]
    composed = compose(overrides, config_dir or [])
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
    from dlcli.train import train as run_training

    silent = quiet or as_json
    reporter = Reporter(Console(quiet=True) if silent else console, show_progress=not silent and composed.trainer.progress)
    result = run_training(composed, overrides, reporter, trust=trust or [])
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
    trust: Optional[List[str]] = typer.Option(None, "--trust", help=TRUST_HELP),
    tta: Optional[List[str]] = typer.Option(None, "--tta", help="Test-time augmentation: average over these flips too (hflip, vflip; repeatable). Default: the run's eval.tta; --tta none turns it off."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the headline metric and the files written."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """Evaluate a run's checkpoint on the same split it was trained with."""
    from dlcli import plots
    from dlcli.evaluate import evaluate_run

    views = None if not tta else [] if tta == ["none"] else list(tta)
    report = evaluate_run(run_dir, split, checkpoint, device, trust or [], tta=views)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    written = [Path(report["run"]) / f"eval-{split}.json"]
    if "confusion_matrix" in report and plots.drawing_enabled:
        written.append(Path(report["run"]) / f"confusion-{split}.png")  # drawn by a background process
    if quiet:
        metric = next(k for k in ("accuracy", "rmse") if k in report)
        print(f"{split} {metric} {fmt(report[metric])} ({checkpoint} checkpoint, {report['samples']} samples)  wrote "
              + ", ".join(map(str, written)))
        return
    console.print(metrics_table(report))
    if "per_class" in report:
        console.print(per_class_table(report))
    if "confusion_matrix" in report and len(report["confusion_matrix"]) <= MAX_CLASSES_IN_TERMINAL:
        console.print(confusion_table(report))
    from dlcli.diagnostics.report import diagnosis_lines, read_findings

    findings = read_findings(Path(report["run"]))
    if findings is not None:  # what training showed about this model (dl diagnose has the details)
        for line in diagnosis_lines(findings):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    for path in written:
        console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


@app.command(
    name="predict",
    epilog=(
        "Examples:\n\n"
        "  dl predict runs/house_prices/2026-11-24_11-20-00 test.csv --output submission.csv\n\n"
        "  dl predict runs/photos/2026-11-24_12-00-00 photos/ --proba      (a folder of images, searched recursively)\n\n"
        "  dl predict RUN_DIR rows.npy --json      (rows of features in a NumPy file)"
    ),
)
@handle_errors
def predict_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by dl train (a refit, a fold, any run)."),
    input_path: Path = typer.Argument(..., metavar="INPUT", help="A CSV, an image, a folder of images, or a .npy array."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the CSV (default: RUN_DIR/predictions-<input>.csv)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last"),
    proba: bool = typer.Option(False, "--proba", help="Add one probability column per class (classification)."),
    id_column: Optional[str] = typer.Option(None, "--id", help="The input's id column to copy into the output (default: a column the run dropped, such as Id)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps"),
    trust: Optional[List[str]] = typer.Option(None, "--trust", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
):
    """Predict new data with a trained run: one row per input, in the target's own terms."""
    from dlcli.predict import predict_file

    result = predict_file(run_dir, input_path, output, checkpoint, proba, id_column, device, trust or [])
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for note in result["notes"]:
        err_console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    rate = f", {result['rows_per_second']:,.0f} rows/s" if result["rows_per_second"] else ""
    console.print(f"wrote {result['rows']} predictions ({', '.join(result['columns'])}) to {result['output']} "
                  f"[{result['checkpoint']} checkpoint, epoch {result['epoch']}, {result['device']}{rate}]",
                  markup=False, highlight=False, soft_wrap=True)


@app.command(
    name="export",
    epilog=(
        "Examples:\n\n"
        "  dl export runs/train/2026-11-24_10-31-07 --format onnx\n\n"
        "  dl export RUN_DIR --format torchscript --output model.pt --checkpoint last"
    ),
)
@handle_errors
def export_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by dl train."),
    fmt: str = typer.Option("onnx", "--format", help="onnx | torchscript"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The file to write (default: RUN_DIR/model.onnx or model.torchscript.pt); a .json sidecar goes beside it."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last"),
    trust: Optional[List[str]] = typer.Option(None, "--trust", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the sidecar as JSON."),
):
    """Export a run's model to ONNX or TorchScript, checked against PyTorch on its test rows."""
    from dlcli.export import export_run

    result = export_run(run_dir, fmt, output, checkpoint, trust or [])
    if as_json:
        print(json.dumps({k: v for k, v in result.items() if k != "preprocessing"}, indent=2))
        return
    verified = result["verified"]
    for line in (f"wrote {result['path']} ({fmt}, {result['checkpoint']} checkpoint, epoch {result['epoch']})",
                 f"wrote {result['sidecar']} (input shape, class names, preprocessing)",
                 f"input: {result['input']['takes']}",
                 f"output: {result['output']['gives']}",
                 f"checked: the same outputs as PyTorch on {verified['rows']} {verified['inputs']} (largest difference "
                 f"{verified['max_abs_difference']:.2g}; rtol {verified['rtol']:g}, atol {verified['atol']:g})"):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command(
    name="inspect",
    epilog="Examples:\n\n  dl inspect runs/train/2026-11-24_10-31-07\n\n  dl inspect RUN_DIR --checkpoint last --json",
)
@handle_errors
def inspect_run_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by dl train."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last"),
    trust: Optional[List[str]] = typer.Option(None, "--trust", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """Show what a run's model learned: each parameter's shape, statistics and small tensors' values
    (a linear model's also in the data's own units)."""
    from dlcli.tools.inspect_run import inspect_lines, inspect_run

    report = inspect_run(run_dir, checkpoint, trust or [])
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for line in inspect_lines(report):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command(
    name="diagnose",
    epilog="Examples:\n\n  dl diagnose runs/train/2026-11-24_10-31-07\n\n  dl diagnose RUN_DIR --json",
)
@handle_errors
def diagnose(
    run_dir: Path = typer.Argument(..., help="A run directory written by dl train (finished, interrupted or failed)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
):
    """Why a run went wrong: overfitting, underfitting, learning rate, gradients, dead ReLUs, outputs, inputs, balance."""
    from dataclasses import asdict

    from dlcli.diagnostics.report import diagnose_run, diagnosis_lines
    from dlcli.runs import find_run

    findings, watched = diagnose_run(find_run(run_dir))
    if as_json:
        print(json.dumps({"run": str(run_dir), "from": "diagnostics.json" if watched else "metrics.csv",
                          "findings": [asdict(f) for f in findings]}, indent=2))
        return
    if not watched:
        console.print(f"{run_dir} has no diagnostics.json (it was not watched while training): "
                      "this is what its metrics.csv shows", markup=False, highlight=False, soft_wrap=True)
    for line in diagnosis_lines(findings):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


sweep_app = typer.Typer(
    help="Hyper-parameter search over Hydra sweep overrides: parallel, resumable, test split untouched.",
    no_args_is_help=True,
)
app.add_typer(sweep_app, name="sweep")


def _sweep(kind: str, overrides, trials, seed, jobs, threads, metric, mode, prune, fail_fast, backend, address,
           gpus_per_trial, resume, name, config_dir, as_json, trust, quiet=False, trials_per_gpu=None) -> None:
    from dlcli.sweep import SweepSettings, run_sweep

    settings = SweepSettings(kind=kind, overrides=list(overrides or []), trials=trials, seed=seed, metric=metric, mode=mode, prune=prune)
    silent = as_json or quiet
    log = (lambda line: None) if silent else (lambda line: err_console.print(line, markup=False, highlight=False, soft_wrap=True))
    result = run_sweep(settings, jobs=jobs, threads=threads, fail_fast=fail_fast, backend=backend, address=address,
                       gpus_per_trial=gpus_per_trial, trials_per_gpu=trials_per_gpu, resume=resume, name=name, config_dirs=[str(d) for d in config_dir or []], log=log,
                       trust=trust or [])
    if as_json:
        print(json.dumps({"sweep_dir": str(result.sweep_dir), **result.summary, "trials": json.loads(result.table.to_json(orient="records"))}, indent=2))
    elif quiet:
        print(sweep_headline(result.sweep_dir, result.summary))
    else:
        console.print(sweep_table(result))
    if result.summary["status"] == "interrupted":
        raise typer.Exit(130)
    if result.summary["status"] == "failed":
        raise typer.Exit(1)


SWEEP_OPTIONS = dict(
    jobs=typer.Option(None, "--jobs", "-j", help="Trials at once (processes locally; one GPU each when there are several). Default 1, or what a resumed sweep used."),
    threads=typer.Option(None, "--threads", help="CPU threads per trial (default: cores / jobs, or what a resumed sweep used)."),
    metric=typer.Option(None, "--metric", help="Validation metric to select on (default: the task's, e.g. val_accuracy)."),
    mode=typer.Option(None, "--mode", help="min | max (default: from the metric)."),
    prune=typer.Option("none", "--prune", help="Stop bad trials early with Optuna's pruners: none | median | asha | hyperband."),
    fail_fast=typer.Option(False, "--fail-fast", help="Stop the sweep at the first failed trial."),
    backend=typer.Option("local", "--backend", help="local | ray"),
    address=typer.Option(None, "--address", help="Ray cluster HOST:PORT (default: start a local Ray instance)."),
    gpus_per_trial=typer.Option(0.0, "--gpus-per-trial", help="GPUs Ray reserves per trial."),
    trials_per_gpu=typer.Option(None, "--trials-per-gpu", help="Run K trials on each visible GPU at once (small models share a GPU); does nothing without CUDA."),
    resume=typer.Option(None, "--resume", help="A sweep directory to finish: runs only trials not yet completed."),
    name=typer.Option("sweep", "--name", help="Sweeps land in runs/sweeps/<name>/<timestamp>/."),
    config_dir=typer.Option(None, "--config-dir", help="Extra config directory (repeatable)."),
    as_json=typer.Option(False, "--json", help="Print the summary and trials as JSON."),
    quiet=typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    trust=typer.Option(None, "--trust", help=TRUST_HELP),
)


@sweep_app.command(
    "grid",
    epilog=(
        "Examples:\n\n"
        "  dl sweep grid optim.lr=0.3,0.1,0.03 model.hidden=[64],[256] --jobs 2\n\n"
        "  dl sweep grid model=mlp,softmax 'trainer.batch_size=range(32,129,32)' trainer.epochs=10\n\n"
        "  dl sweep grid --resume runs/sweeps/sweep/2026-11-24_10-31-07"
    ),
)
@handle_errors
def sweep_grid(
    overrides: Optional[List[str]] = typer.Argument(None, help="Sweep overrides (a,b,c  range()  choice()  glob()) and plain ones.", show_default=False),
    jobs: Optional[int] = SWEEP_OPTIONS["jobs"], threads: Optional[int] = SWEEP_OPTIONS["threads"], metric: Optional[str] = SWEEP_OPTIONS["metric"],
    mode: Optional[str] = SWEEP_OPTIONS["mode"], prune: str = SWEEP_OPTIONS["prune"], fail_fast: bool = SWEEP_OPTIONS["fail_fast"],
    backend: str = SWEEP_OPTIONS["backend"], address: Optional[str] = SWEEP_OPTIONS["address"],
    gpus_per_trial: float = SWEEP_OPTIONS["gpus_per_trial"], resume: Optional[Path] = SWEEP_OPTIONS["resume"],
    name: str = SWEEP_OPTIONS["name"], config_dir: Optional[List[Path]] = SWEEP_OPTIONS["config_dir"], as_json: bool = SWEEP_OPTIONS["as_json"],
    trust: Optional[List[str]] = SWEEP_OPTIONS["trust"], quiet: bool = SWEEP_OPTIONS["quiet"],
    trials_per_gpu: Optional[int] = SWEEP_OPTIONS["trials_per_gpu"],
):
    """Every combination of the swept values."""
    _sweep("grid", overrides, None, 0, jobs, threads, metric, mode, prune, fail_fast, backend, address, gpus_per_trial, resume, name, config_dir, as_json, trust, quiet,
           trials_per_gpu)


@sweep_app.command(
    "random",
    epilog=(
        "Examples:\n\n"
        "  dl sweep random 'optim.lr=tag(log,interval(1e-4,1))' 'optim.weight_decay=interval(0,1e-3)' --trials 20\n\n"
        "  dl sweep random 'trainer.batch_size=int(interval(16,256))' model=mlp,softmax --trials 8 --seed 3 --prune asha"
    ),
)
@handle_errors
def sweep_random(
    overrides: Optional[List[str]] = typer.Argument(None, help="interval(a,b), tag(log,interval(a,b)), int(interval(a,b)), choice(), a,b,c and plain overrides.", show_default=False),
    trials: Optional[int] = typer.Option(None, "--trials", "-n", help="How many trials to draw (required unless --resume)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draws (Optuna's RandomSampler): the same seed draws the same trials."),
    jobs: Optional[int] = SWEEP_OPTIONS["jobs"], threads: Optional[int] = SWEEP_OPTIONS["threads"], metric: Optional[str] = SWEEP_OPTIONS["metric"],
    mode: Optional[str] = SWEEP_OPTIONS["mode"], prune: str = SWEEP_OPTIONS["prune"], fail_fast: bool = SWEEP_OPTIONS["fail_fast"],
    backend: str = SWEEP_OPTIONS["backend"], address: Optional[str] = SWEEP_OPTIONS["address"],
    gpus_per_trial: float = SWEEP_OPTIONS["gpus_per_trial"], resume: Optional[Path] = SWEEP_OPTIONS["resume"],
    name: str = SWEEP_OPTIONS["name"], config_dir: Optional[List[Path]] = SWEEP_OPTIONS["config_dir"], as_json: bool = SWEEP_OPTIONS["as_json"],
    trust: Optional[List[str]] = SWEEP_OPTIONS["trust"], quiet: bool = SWEEP_OPTIONS["quiet"],
    trials_per_gpu: Optional[int] = SWEEP_OPTIONS["trials_per_gpu"],
):
    """Random draws: choice() and lists uniformly, interval() uniformly, tag(log, ...) log-uniformly."""
    _sweep("random", overrides, trials, seed, jobs, threads, metric, mode, prune, fail_fast, backend, address, gpus_per_trial, resume, name, config_dir, as_json, trust, quiet,
           trials_per_gpu)


@sweep_app.command(
    "tpe",
    epilog=(
        "Examples:\n\n"
        "  dl sweep tpe 'optim.lr=tag(log,interval(1e-4,1))' 'model.dropout=interval(0,0.6)' 'model.hidden=choice([64],[256],[256,256])' --trials 40 --jobs 2 --prune hyperband\n\n"
        "  dl sweep tpe 'optim.lr=tag(log,interval(1e-3,1))' 'trainer.batch_size=range(16,129,16)' --trials 20 --seed 1"
    ),
)
@handle_errors
def sweep_tpe(
    overrides: Optional[List[str]] = typer.Argument(None, help="interval(a,b), tag(log,interval(a,b)), int(interval(a,b)), range(), choice(), a,b,c and plain overrides.", show_default=False),
    trials: Optional[int] = typer.Option(None, "--trials", "-n", help="How many trials to run (required unless --resume)."),
    seed: int = typer.Option(0, "--seed", help="Seed of Optuna's TPESampler."),
    jobs: Optional[int] = SWEEP_OPTIONS["jobs"], threads: Optional[int] = SWEEP_OPTIONS["threads"], metric: Optional[str] = SWEEP_OPTIONS["metric"],
    mode: Optional[str] = SWEEP_OPTIONS["mode"], prune: str = SWEEP_OPTIONS["prune"], fail_fast: bool = SWEEP_OPTIONS["fail_fast"],
    backend: str = SWEEP_OPTIONS["backend"], address: Optional[str] = SWEEP_OPTIONS["address"],
    gpus_per_trial: float = SWEEP_OPTIONS["gpus_per_trial"], resume: Optional[Path] = SWEEP_OPTIONS["resume"],
    name: str = SWEEP_OPTIONS["name"], config_dir: Optional[List[Path]] = SWEEP_OPTIONS["config_dir"], as_json: bool = SWEEP_OPTIONS["as_json"],
    trust: Optional[List[str]] = SWEEP_OPTIONS["trust"], quiet: bool = SWEEP_OPTIONS["quiet"],
    trials_per_gpu: Optional[int] = SWEEP_OPTIONS["trials_per_gpu"],
):
    """Search that learns from its trials: Optuna's TPE sampler (multivariate) over the swept values."""
    _sweep("tpe", overrides, trials, seed, jobs, threads, metric, mode, prune, fail_fast, backend, address, gpus_per_trial, resume, name,
           config_dir, as_json, trust, quiet, trials_per_gpu)


@app.command(
    name="runs",
    epilog=(
        "Examples:\n\n"
        "  dl runs\n\n"
        "  dl runs runs/softmax runs/mlp_dropout --sort val_accuracy\n\n"
        "  dl runs 'runs/sweeps/sweep/*' --columns status,val_accuracy,optim.lr\n\n"
        "  dl runs runs/train --json"
    ),
)
@handle_errors
def list_runs(
    directories: Optional[List[str]] = typer.Argument(None, help="Directories holding runs, or patterns (default: runs/); searched recursively.", show_default=False),
    sort: Optional[str] = typer.Option(None, "--sort", help="Column to sort by (e.g. val_accuracy, test_accuracy)."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Comma-separated columns to show (default: those that differ, most useful first)."),
    as_json: bool = typer.Option(False, "--json", help="Print every column of every run as JSON (numbers, booleans and lists typed)."),
):
    """Compare runs (or a sweep's trials) in one table: status, metrics, and the settings that differ."""
    from dlcli.config import COMPONENT_GROUPS
    from dlcli.compare import cell_text, collect_runs, display_rows, elide, fit_columns, header_text, is_number_column

    directories = list(directories or ["runs"])
    runs = collect_runs(directories)
    rows = runs.rows
    every = list(dict.fromkeys(k for row in rows for k in row))
    if sort is not None:
        if sort not in every:
            raise UserError(f"--sort {sort} is not a column: columns are {', '.join(every)}")
        from dlcli.engine.metrics import monitor_mode  # (imports torch: only when sorting)

        descending = monitor_mode(sort) == "max"

        def order(row):  # missing values last; numbers before text, so mixed columns still sort
            value = row.get(sort)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return (0, -value if descending else value, "")
            return (1 if value is not None else 2, 0, json.dumps(value))

        rows.sort(key=order)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    where = ", ".join(directories)
    if not rows:
        console.print(f"no runs under {where}", markup=False, highlight=False)
        return
    shown = display_rows(runs)
    wanted, view = shown.columns, shown.rows
    if columns is not None:
        chosen = [c.strip() for c in columns.split(",") if c.strip()]
        known = list(dict.fromkeys([*every, *wanted]))
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise UserError(f"--columns {unknown[0]} is not a column: columns are {', '.join(known)}")
        wanted = list(dict.fromkeys(["run", *chosen]))
        view = [{**row, **viewed} for row, viewed in zip(rows, view)]
    cells = {c: [cell_text(c, row.get(c)) for row in view] for c in wanted}
    # the run names shorten before the metrics or the components (model=..., data=...) are left out
    essential = next((i for i, c in enumerate(wanted) if c not in ("run", "status", "metric", "val", "test", *COMPONENT_GROUPS)
                      and not c.startswith(("val_", "test_"))), len(wanted))
    kept, left_out, run_width = fit_columns(wanted, cells, console.width, essential) if columns is None else (wanted, [], 10_000)
    cells["run"] = [elide(name, run_width) for name in cells["run"]]
    facts = f" ({', '.join(shown.facts)})" if shown.facts else ""
    title = f"{len(rows)} run{'' if len(rows) == 1 else 's'} under {where}{facts}"
    table = Table(title=title, min_width=min(len(title), console.width))
    for column in kept:
        table.add_column(header_text(column), justify="right" if is_number_column(column) else "left", no_wrap=True, overflow="ellipsis")
    for i in range(len(rows)):
        table.add_row(*(cells[c][i] for c in kept))
    console.print(table)
    if left_out:
        differ = "" if len(rows) == 1 else (" differs" if len(left_out) == 1 else " differ")  # one run: nothing to differ from
        err_console.print(f"{len(left_out)} more column{'' if len(left_out) == 1 else 's'}{differ} but do not fit: "
                          f"{', '.join(left_out)} (choose with --columns, or see all with --json)",
                          markup=False, highlight=False, soft_wrap=True)


def checked_shape(text: Optional[str]):
    """--input parsed as CxHxW (or a feature count), with a warning when it reads like HxWxC."""
    from dlcli.tools.layer_spec import parse_shape, shape_warnings

    if not text:
        return None
    shape = parse_shape(text)
    for warning in shape_warnings(shape, text):
        err_console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    return shape


def split_layers_and_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """`conv(6,k=5)` and `flatten` are layers; `model=vgg` (an '=' before any '(') is an override."""
    layers, overrides = [], []
    for arg in args:
        is_override = "=" in arg and ("(" not in arg or arg.index("=") < arg.index("("))
        (overrides if is_override else layers).append(arg)
    return layers, overrides


@app.command(
    name="conv-shape",
    no_args_is_help=True,  # with neither layers nor overrides there is nothing to answer
    epilog=(
        "Examples:\n\n"
        '  dl conv-shape --input 3x32x32 "conv(10,k=5,s=1,p=2)"\n\n'
        '  dl conv-shape --input 1x28x28 "conv(6,k=5,p=2)" "avgpool(2)" "conv(16,k=5)" "avgpool(2)" flatten "linear(120)" "linear(84)" "linear(10)"\n\n'
        '  dl conv-shape --input 1x7x7 "conv(1,k=3,s=3)"      (warns: a column and a row are never seen)\n\n'
        "  dl conv-shape model=lenet data=digits --input 1x28x28\n\n"
        "Layers: conv(out,k,s=1,p=0|same|valid,d=1,g=1,bias=true), convT(out,k,s,p,op,d,g), "
        "maxpool(k,s=k,p=0,d=1,ceil_mode=false), avgpool(k,s=k,p=0,ceil_mode=false), adaptiveavgpool(HxW), "
        "flatten, linear(out) or linear(in,out), bn, dropout(p), relu, sigmoid, tanh, ...; "
        "non-square sizes as k=3x1."
    ),
)
@handle_errors
def convshape_text(
    args: Optional[List[str]] = typer.Argument(None, help="Layers in order, or Hydra overrides naming a model.", show_default=False),
    input_shape: Optional[str] = typer.Option(None, "--input", help="Input shape CxHxW (e.g. 3x32x32) or a feature count."),
    config_dir: Optional[List[Path]] = typer.Option(None, "--config-dir", help="Extra config directory (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the shapes as JSON."),
):
    """Output shape and parameters of each layer: a layer chain (instant) or a configured model."""
    layers, overrides = split_layers_and_overrides(list(args or []))
    if layers and overrides:
        raise UserError(f"give either layers or config overrides, not both (layers: {layers[0]}; override: {overrides[0]})")
    shape = checked_shape(input_shape)
    if layers:
        from dlcli.tools.conv_shape import chain_shapes

        if shape is None:
            raise UserError("--input is required with a layer chain: e.g. --input 3x32x32")
        result = chain_shapes(shape, layers).to_dict()
    else:
        from dlcli.config import compose
        from dlcli.tools.param_count import model_summary

        summary = model_summary(compose(overrides, config_dir or []), shape)
        result = {
            "input": summary.input,
            "layers": [{"layer": f"{r.name} ({r.type})", "output": r.output, "params": r.params, "warnings": []} for r in summary.layers],
            "output": summary.output,
            "total_params": summary.total,
        }
    if as_json:
        print(json.dumps(result, indent=2))
        return
    console.print(shape_table(result))
    for layer in result["layers"]:
        for warning in layer["warnings"]:
            err_console.print(f"warning: {layer['layer']}: {warning}", markup=False, highlight=False, soft_wrap=True)


@app.command(
    name="param-count",
    epilog=(
        "Examples:\n\n"
        "  dl param-count\n\n"
        "  dl param-count model=lenet --input 1x28x28\n\n"
        "  dl param-count model=mlp model.freeze=[net.1] --depth 1 --json"
    ),
)
@handle_errors
def param_count(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    input_shape: Optional[str] = typer.Option(None, "--input", help="Input shape CxHxW or a feature count (default: the data's)."),
    depth: Optional[int] = typer.Option(None, "--depth", help="Group rows by module depth (1 = top-level blocks); default: every leaf layer."),
    config_dir: Optional[List[Path]] = typer.Option(None, "--config-dir", help="Extra config directory (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
):
    """Parameters per layer (trainable or frozen), buffers, size, multiply-adds, output shapes."""
    from dlcli.config import compose
    from dlcli.tools.param_count import model_summary

    shape = checked_shape(input_shape)
    summary = model_summary(compose(list(overrides or []), config_dir or []), shape, depth).to_dict()
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    console.print(param_table(summary))
    console.print(
        f"total {summary['total']:,}  trainable {summary['trainable']:,}  non-trainable {summary['non_trainable']:,}  "
        f"buffers {summary['buffers']:,} (not parameters)  size {summary['size_mb']:.3f} MB ({summary['dtype']})  "
        f"multiply-adds {summary['macs']:,} per sample  largest layer {summary['largest_layer']}",
        markup=False, highlight=False, soft_wrap=True,
    )


@app.command(
    name="lr-find",
    epilog=(
        "Examples:\n\n"
        "  dl lr-find\n\n"
        "  dl lr-find model=lenet data=fashion_mnist optim=adam --start 1e-6 --end 1 --steps 200\n\n"
        "  dl train $(dl lr-find --apply)      (train with the suggested rate)"
    ),
)
@handle_errors
def lr_find(
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    start: float = typer.Option(1e-7, "--start", help="First learning rate of the ladder."),
    end: float = typer.Option(10.0, "--end", help="Last learning rate of the ladder."),
    steps: int = typer.Option(100, "--steps", help="Mini-batches, one per learning rate."),
    mode: str = typer.Option("exp", "--mode", help="exp (log-spaced) | linear"),
    smooth: float = typer.Option(0.98, "--smooth", help="Exponential moving average factor for the loss."),
    diverge: float = typer.Option(4.0, "--diverge", help="Stop when the smoothed loss exceeds this multiple of the best."),
    config_dir: Optional[List[Path]] = typer.Option(None, "--config-dir", help="Extra config directory (repeatable)."),
    name: str = typer.Option("lr_find", "--name", help="Results land in runs/<name>/<timestamp>/."),
    apply: bool = typer.Option(False, "--apply", help="Print only the override to use, e.g. optim.lr=0.18."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the line to use and where the plot is (no table, no warnings)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
):
    """The learning-rate range test: climb a ladder of rates for a few hundred batches, suggest one."""
    from dlcli.config import compose
    from dlcli.runs import read_json
    from dlcli.tools.lr_find import find_lr

    cfg = compose(list(overrides or []), config_dir or [])
    cfg.name = name  # a value, not Hydra grammar: any name a directory can have
    run_dir, result = find_lr(cfg, start, end, steps, mode, smooth, diverge)
    report = read_json(run_dir / "lr_find.json")
    if apply:
        print(report["override"])
        return
    if as_json:
        print(json.dumps({"run_dir": str(run_dir), **report}, indent=2))
        return
    use_line = f"use: dl train {report['override']}    (plot: {run_dir / 'lr_find.png'})"
    if quiet:
        print(use_line)
        return
    table = Table(title=f"learning-rate suggestions ({report['steps_run']} steps{', stopped at divergence' if result.stopped_early else ''})")
    table.add_column("rule")
    table.add_column("lr", justify="right")
    for rule, lr in result.suggestions.items():
        table.add_row(rule + (" (suggested)" if rule == "valley" else ""), f"{lr:.3g}")
    console.print(table)
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    console.print(use_line, markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    # Your own modules (mypkg.MyNet, mypkg.MyCallback) are imported from the directory you run dl in,
    # as `python -m` would; appended, so they never shadow an installed package.
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    app(prog_name="dl")


if __name__ == "__main__":
    sys.exit(main())
