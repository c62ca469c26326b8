"""`dl predict RUN_DIR INPUT`: apply a trained run to new data and write one row per input.

The input is turned into model inputs by the preprocessing the run saved (dlcli.data.new_inputs),
the model runs batched on the best device, and the outputs are given in the target's own terms:
class names (and, with `proba`, one probability column per class) or values in the target's own
units. The prediction column is named after the target, beside the id column when there is one,
so `Id,SalePrice` is a contest submission as it stands. The file is written whole or not at all.
"""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional

from dlcli.data.new_inputs import read_inputs
from dlcli.errors import UserError
from dlcli.rundir.directory import is_kfold_parent, read_summary
from dlcli.system.files import check_no_links_out, output_file, write_atomically
from dlcli.trained.opened import open_trained_run, read_preprocessing
from dlcli.trust.workdir import opening

BATCH_SIZE = 4096


def predict_file(run_path: str | Path, input_path: str | Path, output: str | Path | None = None, checkpoint: str = "best",
                 proba: bool = False, id_column: str | None = None, device: str = "auto", trust: Sequence[str] = (),
                 fold: int | None = None, horizon: int | None = None) -> dict:
    """Predict every row (or image) of `input_path`; returns what was written and how fast. A
    k-fold run predicts with the mean of its fold models (or with fold `fold` alone). A series run
    forecasts the `horizon` steps after the end of the given series (None: its trained horizon)."""
    home, models = model_runs(run_path, fold)
    records = [read_preprocessing(run)[1] for run in models]  # cheap checks first: can each of them predict?
    if proba and records[0]["task"] != "classification":
        raise UserError("--proba gives class probabilities, and this run is a regression: drop it")
    if horizon is not None and "series" not in records[0]:
        raise UserError(f"--horizon {horizon} forecasts the steps after a series, and this run was trained on "
                        f"{records[0]['data']} ({records[0]['kind']}): drop it")
    source = Path(str(input_path)).expanduser()
    destination = Path(output).expanduser() if output else home / f"predictions-{source.stem}.csv"
    if destination.exists() and destination.resolve() == source.resolve():
        raise UserError(f"--output {output} is the input file: choose another path")
    check_output_path(destination, output, "predictions.csv")
    if output is not None:
        destination = output_file(destination, output)  # a link the user named is written through
    else:
        check_no_links_out(home)  # the predictions go into the run
    started, answers, notes, first = time.perf_counter(), [], [], None
    for run, record in zip(models, records):  # each fold prepares the input with what its own training rows taught it
        inputs = read_inputs(record, source, id_column)
        trained = open_trained_run(run, checkpoint, device, trust)
        first = first or trained
        if (trained.task, trained.class_names, trained.target_name) != (first.task, first.class_names, first.target_name):
            raise UserError(f"{run} predicts other classes or another target than {models[0]}: its folds were trained on "
                            "different data, so they cannot be averaged; choose one with --fold N")
        if inputs.forecast is not None:  # a series: the steps after it, the model run step after step
            answers.append(inputs.forecast(lambda x, trained=trained: _run_model_on(trained, x).numpy(), horizon))
        else:
            answers.append(_in_target_terms(trained, _run_model(trained, inputs)))
        notes += [note for note in inputs.notes if note not in notes]
    if inputs.forecast is not None:
        table = _mean_forecast(answers)
    else:
        table = _answers(first, np.mean(answers, axis=0), proba, inputs.ids)
    _write_whole(table, destination)
    seconds = time.perf_counter() - started
    result = {
        "run": str(home),
        "input": str(source),
        "output": str(destination),
        "rows": len(table),  # one per input; a forecast's, one per step
        "columns": list(table.columns),
        "checkpoint": checkpoint,
        "epoch": trained.epoch,
        "device": str(_device_of(trained.model)),
        "seconds": seconds,
        "rows_per_second": len(table) / seconds if seconds > 0 else None,
        "notes": notes,
    }
    if len(models) > 1:
        averaged = "probabilities" if first.task == "classification" else f"predicted {first.target_name} (in its own units)"
        result.update(models=[str(run) for run in models], epoch=None,
                      ensemble=f"the mean of {len(models)} fold models' {averaged}")
    elif fold is not None:
        result["fold"] = fold
    return result


def model_runs(run_path: str | Path, fold: int | None) -> tuple[Path, list[Path]]:
    """Where predictions go by default, and the runs whose models predict: the run itself, or each
    fold of a k-fold run (only fold `fold` with --fold)."""
    path = Path(str(run_path)).expanduser()
    opening(path)
    if not is_kfold_parent(path):
        if fold is not None:
            raise UserError(f"--fold {fold} picks one model of a k-fold run, and {run_path} is a single run: drop --fold")
        return path, [path]
    summary = read_summary(path)
    folds = summary.get("folds")
    if not isinstance(folds, int) or isinstance(folds, bool) or not 2 <= folds <= 10_000:
        raise UserError(f"{path / 'summary.json'} does not say how many folds the run has: restore it from a copy")
    if fold is not None:
        if not 1 <= fold <= folds:
            raise UserError(f"--fold {fold} is not a fold of {run_path}: choose 1 to {folds}")
        return path / f"fold-{fold}", [path / f"fold-{fold}"]
    runs = [path / f"fold-{n}" for n in range(1, folds + 1)]
    for run in runs:
        status = read_summary(run).get("status") if (run / "summary.json").is_file() else "not started"
        if status != "completed":
            raise UserError(f"{run} is {status}: the fold models predict together once all {folds} completed "
                            f"(finish with dl train resume={run_path}), or choose one with --fold N")
    return path, runs


def _in_target_terms(trained, outputs):
    """A model's outputs as what folds average: class probabilities, or values in the target's units."""
    if trained.task == "classification":
        return torch.softmax(outputs, dim=1).double().numpy()
    scaler = trained.target_scaler()
    values = outputs.reshape(-1).double().numpy()
    return scaler.inverse(values) if scaler is not None else values


def _run_model(trained, inputs):
    """Model outputs for every input, in order, on the CPU (float32)."""
    device = _device_of(trained.model)
    size = tuple(trained.record["input_shape"][1:])
    resize_rows = trained.record.get("stored_shape") is not None  # rows stored small (digits 8x8), grown per batch
    chunks = []
    with torch.inference_mode():
        for x in inputs.batches(BATCH_SIZE):
            x = x.to(device, non_blocking=True)
            if resize_rows:
                x = functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
            chunks.append(trained.model(x).float().cpu())
    return torch.cat(chunks) if chunks else torch.empty(0)


def _mean_forecast(forecasts: list):
    """One forecast table (step, then each target column); the fold models' mean for a k-fold run."""
    table = forecasts[0].copy()
    values = [column for column in table.columns if column != "step"]
    table[values] = np.mean([forecast[values].to_numpy(dtype=np.float64) for forecast in forecasts], axis=0)
    return table


def _run_model_on(trained, x):
    """The model's outputs for one batch, on the CPU (float32)."""
    with torch.inference_mode():
        return trained.model(x.to(_device_of(trained.model))).float().cpu()


def _device_of(model):
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _answers(trained, answers, proba: bool, ids):
    """The predictions table: id column (if any), the target's column, probabilities (if asked).
    `answers` are class probabilities or values in the target's units (_in_target_terms)."""
    columns = {}
    if ids is not None:
        columns[ids[0]] = ids[1]
    target = trained.target_name
    if target in columns:  # an id column named like the target would be overwritten
        target = f"predicted_{target}"
    if trained.task == "classification":
        names = trained.class_names
        probabilities = answers.reshape(len(answers), -1)
        columns[target] = np.asarray(names, dtype=object)[probabilities.argmax(axis=1)]
        if proba:
            for index, name in enumerate(names):
                column = name if name not in columns else f"p_{name}"
                columns[column] = probabilities[:, index]
    else:
        columns[target] = answers
    return pd.DataFrame(columns)


def check_output_path(destination: Path, given, example: str) -> None:
    """An output path that can be written: not a folder, and no file where a folder must be."""
    try:
        is_folder = destination.is_dir()
        blocked = next((p for p in destination.parents if p.exists() and not p.is_dir()), None)
    except OSError as exc:  # a name too long for the file system, a folder that cannot be looked into
        raise UserError(f"--output {given} cannot be written: {exc.strerror}") from None
    if is_folder:
        raise UserError(f"--output {given} is a folder: give a file path such as {destination / example}")
    if blocked is not None:
        raise UserError(f"--output {given}: {blocked} is a file, not a folder")


def _write_whole(table, destination: Path) -> None:
    """Write a fresh hidden file beside the destination and rename it: an interrupted write leaves
    no half file. (A link the user named with --output was followed to its file before: the link
    stays; in a run, a link is replaced.) Hidden files that an earlier, killed `dl predict` of the
    same output left are removed first."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_partials(destination)
        write_atomically(destination, lambda file: table.to_csv(file, index=False),
                         prefix=f".{destination.name}.{os.getpid()}.", suffix=".partial")
    except OSError as exc:  # (a full disk is a UserError of its own, raised inside)
        raise UserError(f"{destination} cannot be written: {exc.strerror}") from None


def _remove_abandoned_partials(destination: Path) -> None:
    """`.<name>.<pid>.*.partial` whose process is gone (a dl predict still writing keeps its own)."""
    for leftover in destination.parent.glob(glob.escape(f".{destination.name}.") + "*.partial"):
        pid = leftover.name[len(destination.name) + 2:].split(".", 1)[0]
        if leftover.is_symlink() or not pid.isdigit() or not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process has no write of its own in progress here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
