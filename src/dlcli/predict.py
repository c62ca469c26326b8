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

from dlcli.errors import UserError
from dlcli.files import check_no_links_out

BATCH_SIZE = 4096


def predict_file(run_path: str | Path, input_path: str | Path, output: str | Path | None = None, checkpoint: str = "best",
                 proba: bool = False, id_column: str | None = None, device: str = "auto", trust: Sequence[str] = ()) -> dict:
    """Predict every row (or image) of `input_path`; returns what was written and how fast."""
    from dlcli.data.new_inputs import read_inputs
    from dlcli.trained import open_trained_run, read_preprocessing

    run_dir, record = read_preprocessing(run_path)  # cheap checks first: is it a run that can predict?
    if proba and record["task"] != "classification":
        raise UserError("--proba gives class probabilities, and this run is a regression: drop it")
    source = Path(str(input_path)).expanduser()
    destination = Path(output).expanduser() if output else run_dir / f"predictions-{source.stem}.csv"
    if destination.exists() and destination.resolve() == source.resolve():
        raise UserError(f"--output {output} is the input file: choose another path")
    check_output_path(destination, output, "predictions.csv")
    if output is None:
        check_no_links_out(run_dir)  # the predictions go into the run
    inputs = read_inputs(record, source, id_column)
    trained = open_trained_run(run_dir, checkpoint, device, trust)
    started = time.perf_counter()
    outputs = _run_model(trained, inputs)
    table = _answers(trained, outputs, proba, inputs.ids)
    _write_whole(table, destination)
    seconds = time.perf_counter() - started
    return {
        "run": str(run_dir),
        "input": str(source),
        "output": str(destination),
        "rows": inputs.rows,
        "columns": list(table.columns),
        "checkpoint": checkpoint,
        "epoch": trained.epoch,
        "device": str(_device_of(trained.model)),
        "seconds": seconds,
        "rows_per_second": inputs.rows / seconds if seconds > 0 else None,
        "notes": inputs.notes,
    }


def _run_model(trained, inputs):
    """Model outputs for every input, in order, on the CPU (float32)."""
    import torch
    from torch.nn import functional

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


def _device_of(model):
    import torch

    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _answers(trained, outputs, proba: bool, ids):
    """The predictions table: id column (if any), the target's column, probabilities (if asked)."""
    import pandas as pd
    import torch

    columns = {}
    if ids is not None:
        columns[ids[0]] = ids[1]
    target = trained.target_name
    if target in columns:  # an id column named like the target would be overwritten
        target = f"predicted_{target}"
    if trained.task == "classification":
        names = trained.class_names
        probabilities = torch.softmax(outputs, dim=1).numpy()
        columns[target] = np.asarray(names, dtype=object)[probabilities.argmax(axis=1)]
        if proba:
            for index, name in enumerate(names):
                column = name if name not in columns else f"p_{name}"
                columns[column] = probabilities[:, index]
    else:
        scaler = trained.target_scaler()
        values = outputs.reshape(-1).double().numpy()
        columns[target] = scaler.inverse(values) if scaler is not None else values
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
    no half file, and a link at the destination is replaced, not written through. Hidden files
    that an earlier, killed `dl predict` of the same output left are removed first."""
    from dlcli.files import write_atomically

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
