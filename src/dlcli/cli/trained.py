"""The commands that open one finished run: `dl eval`, `dl predict`, `dl export`, `dl inspect`,
`dl diagnose`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from dlcli.cli import CHECKPOINT, RUN_DIR, TRUST, app, checked_options, console, err_console, examples, handle_errors
from dlcli.errors import printable, printable_lines
from dlcli.cli.completion import device_option
from dlcli.cli.render import confusion_table, fmt, metrics_table, per_class_table

MAX_CLASSES_IN_TERMINAL = 12  # a larger confusion matrix is only readable as the picture


def _checkpoint():
    from dlcli.config.constraints import Options
    from dlcli.rundir.directory import CHECKPOINTS

    return {"checkpoint": Options(CHECKPOINTS)}


def _eval_options():
    from dlcli.config.constraints import ListOf, Options
    from dlcli.engine.tta import VIEWS
    from dlcli.trained.evaluate import SPLITS

    return {**_checkpoint(), **device_option(), "split": Options(SPLITS), "tta": ListOf(Options(("none", *VIEWS)))}


def _predict_options():
    from dlcli.config.constraints import Interval

    from dlcli.config.schema import CONSTRAINTS

    return {**_checkpoint(), **device_option(), "fold": Interval(1, 10_000, integer=True), "horizon": Interval(1, 100_000, integer=True),
            "seed": CONSTRAINTS["seed"]}  # (the seeds a run takes: torch's generator refuses a number past 64 bits)


def _export_options():
    from dlcli.config.constraints import Options
    from dlcli.trained.export import FORMATS

    return {**_checkpoint(), "fmt": Options(FORMATS)}


@app.command(
    name="eval",
    epilog=examples("""
    dl eval runs/train/2026-11-24_10-31-07
    dl eval RUN_DIR --split val --checkpoint last --json
"""),
)
@handle_errors
@checked_options(_eval_options)
def evaluate(
    run_dir: Path = RUN_DIR,
    split: str = typer.Option("test", "--split", help="test | val | train"),
    checkpoint: str = CHECKPOINT,
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps (default: the run's)."),
    trust: Optional[List[str]] = TRUST,
    tta: Optional[List[str]] = typer.Option(None, "--tta", help="Test-time augmentation: average over these flips too (hflip, vflip; repeatable). Default: the run's eval.tta; --tta none turns it off."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the headline metric and the files written."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """Evaluate a run's checkpoint on the same split it was trained with."""
    from dlcli.tracking import plots
    from dlcli.trained.evaluate import evaluate_run

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
        print(printable(f"{split} {metric} {fmt(report[metric])} ({checkpoint} checkpoint, {report['samples']} samples)  wrote "
                        + ", ".join(map(str, written))))
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
    epilog=examples("""
    dl predict runs/house_prices/2026-11-24_11-20-00 test.csv --output submission.csv
    dl predict runs/photos/2026-11-24_12-00-00 photos/ --proba      (a folder of images, searched recursively)
    dl predict RUN_DIR rows.npy --json      (rows of features in a NumPy file)
    dl predict runs/sales/2026-11-24_14-00-00 sales.csv --horizon 20      (a forecaster: the 20 steps after the series' end)
    dl predict runs/book/2026-11-24_13-00-00 --prompt "the time traveller" --tokens 200 --temperature 0.8 --seed 1      (a language model continues a text)
"""),
)
@handle_errors
@checked_options(_predict_options)
def predict_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by dl train (a refit, any run), or a k-fold run: the mean of its fold models."),
    input_path: Optional[Path] = typer.Argument(None, metavar="[INPUT]", help="A CSV, an image, a folder of images, or a .npy array (a language model takes --prompt instead)."),
    fold: Optional[int] = typer.Option(None, "--fold", help="Of a k-fold run, predict with fold N's model alone (default: all folds, averaged)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the CSV (default: RUN_DIR/predictions-<input>.csv)."),
    checkpoint: str = CHECKPOINT,
    proba: bool = typer.Option(False, "--proba", help="Add one probability column per class (classification)."),
    id_column: Optional[str] = typer.Option(None, "--id", help="The input's id column to copy into the output (default: a column the run dropped, such as Id)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps"),
    trust: Optional[List[str]] = TRUST,
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
    horizon: Optional[int] = typer.Option(None, "--horizon", help="A series run (data=sine, data=timeseries): forecast the N steps after the end of INPUT, one row per step (default: the trained data.horizon). Past the trained horizon each forecast is fed back as the newest steps, one trained horizon at a time (a model that forecasts every column it reads)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="A language model (data=text, data=timemachine): continue this text; no INPUT."),
    tokens: Optional[int] = typer.Option(None, "--tokens", help="With --prompt: how many tokens to add (default 200)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="With --prompt: divides the logits before sampling (lower: more conservative; default 1)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="With --prompt: sample only among the K likeliest tokens."),
    seed: Optional[int] = typer.Option(None, "--seed", help="With --prompt: the sampling seed (the same seed, the same text; default: drawn and shown)."),
):
    """Predict new data with a trained run: one row per input, in the target's own terms (a series: one row per step forecast; a language model: the text continued from --prompt)."""
    # an option of the other kind of prediction would be silently ignored: refused, naming it
    for_input = {"--output": output, "--fold": fold, "--horizon": horizon, "--proba": proba or None, "--id": id_column}
    for_text = {"--tokens": tokens, "--temperature": temperature, "--top-k": top_k, "--seed": seed}
    if prompt is not None or input_path is None:
        if prompt is not None:
            _refuse_given(for_input, "applies to predicting an INPUT, not to --prompt (the text is printed: redirect it to keep it)")
        _continue_text(run_dir, input_path, prompt, 200 if tokens is None else tokens, 1.0 if temperature is None else temperature,
                       top_k, seed, checkpoint, device, trust, as_json)
        return
    _refuse_given(for_text, "applies with --prompt (a language model's text), not to predicting an INPUT")
    from dlcli.trained.predict import predict_file

    result = predict_file(run_dir, input_path, output, checkpoint, proba, id_column, device, trust or [], fold, horizon=horizon)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for note in result["notes"]:
        err_console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    rate = f", {result['rows_per_second']:,.0f} rows/s" if result["rows_per_second"] else ""
    model = result.get("ensemble") or f"{result['checkpoint']} checkpoint, epoch {result['epoch']}"
    console.print(f"wrote {result['rows']} predictions ({', '.join(result['columns'])}) to {result['output']} "
                  f"[{model}, {result['device']}{rate}]", markup=False, highlight=False, soft_wrap=True)


def _refuse_given(options: dict, why: str) -> None:
    from dlcli.errors import UserError

    given = next((flag for flag, value in options.items() if value is not None), None)
    if given is not None:
        raise UserError(f"{given} {why}: drop {given}")


def _continue_text(run_dir, input_path, prompt, tokens, temperature, top_k, seed, checkpoint, device, trust, as_json) -> None:
    """dl predict RUN --prompt TEXT: the language model's continuation, printed."""
    from dlcli.errors import UserError
    from dlcli.trained.generate import continue_text

    if prompt is None:
        raise UserError("dl predict needs an INPUT to predict (a CSV, images, a .npy array), or --prompt TEXT for a language model")
    if input_path is not None:
        raise UserError(f"--prompt continues a text and reads no INPUT: drop {input_path}")
    result = continue_text(run_dir, prompt, tokens, temperature, top_k, seed, checkpoint, device, trust or [])
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for note in result["notes"]:
        err_console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    err_console.print(f"[{result['checkpoint']} checkpoint, epoch {result['epoch']}, temperature {result['temperature']:g}"
                      f"{'' if result['top_k'] is None else ', top-k ' + str(result['top_k'])}, seed {result['seed']}]",
                      markup=False, highlight=False, soft_wrap=True)
    print(printable_lines(result["text"]))


@app.command(
    name="export",
    epilog=examples("""
    dl export runs/train/2026-11-24_10-31-07 --format onnx
    dl export RUN_DIR --format torchscript --output model.pt --checkpoint last
"""),
)
@handle_errors
@checked_options(_export_options)
def export_command(
    run_dir: Path = RUN_DIR,
    fmt: str = typer.Option("onnx", "--format", help="onnx | torchscript"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The file to write (default: RUN_DIR/model.onnx or model.torchscript.pt); a .json sidecar goes beside it."),
    checkpoint: str = CHECKPOINT,
    trust: Optional[List[str]] = TRUST,
    as_json: bool = typer.Option(False, "--json", help="Print the sidecar as JSON."),
):
    """Export a run's model to ONNX or TorchScript, checked against PyTorch on its test rows."""
    from dlcli.trained.export import export_run

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
    epilog=examples("""
    dl inspect runs/train/2026-11-24_10-31-07
    dl inspect RUN_DIR --checkpoint last --json
"""),
)
@handle_errors
@checked_options(_checkpoint)
def inspect_run_command(
    run_dir: Path = RUN_DIR,
    checkpoint: str = CHECKPOINT,
    trust: Optional[List[str]] = TRUST,
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
    epilog=examples("""
    dl diagnose runs/train/2026-11-24_10-31-07
    dl diagnose RUN_DIR --json
"""),
)
@handle_errors
def diagnose(
    run_dir: Path = typer.Argument(..., help="A run directory written by dl train (finished, interrupted or failed)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
):
    """Why a run went wrong: overfitting, underfitting, learning rate, gradients, dead ReLUs, outputs, inputs, balance."""
    from dataclasses import asdict

    from dlcli.diagnostics.checks import diagnose_run
    from dlcli.diagnostics.report import diagnosis_lines
    from dlcli.rundir.directory import find_run

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
