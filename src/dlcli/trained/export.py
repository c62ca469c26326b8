"""`dl export RUN_DIR --format onnx|torchscript`: a trained model as one file that runs without dl.

The file holds the run's model with what turns its input into an answer (`Exported`), as the
run's modality says (dlcli.data.modality):
- images: the per-channel normalization is included, so the file takes float pixels in [0, 1]
  at the model's size (resizing to that size stays outside: say so in the sidecar);
- tables and arrays: the encoding (imputation, standardization, one-hot) stays outside, since it
  works on named columns and text; the sidecar holds every fitted value it needs;
- regression: the output is mapped back to the target's own units (standardization, log) inside;
- classification: the output is the logits (a softmax gives probabilities); the classes are in the sidecar.

The batch dimension is dynamic. Before the file is kept it is loaded back (onnxruntime, or
torch.jit.load) and run on real rows of the run's test split; its outputs must match the PyTorch
model's within TOLERANCE, or the export fails and nothing is written.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from dlcli.data import prepare_data
from dlcli.data.modality import modality_named
from dlcli.engine.language import LANGUAGE_MODEL
from dlcli.errors import UserError, first_line
from dlcli.system.files import check_no_links_out, output_file
from dlcli.trained.opened import open_trained_run
from dlcli.trained.predict import check_output_path
from dlcli.rundir.directory import write_json

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}  # |exported - pytorch| <= atol + rtol * |pytorch|, per output
VERIFY_ROWS = 64
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
INSTALL_HINT = "pip install 'dlcli[export]' (onnx, onnxscript and onnxruntime)"


def export_run(run_path: str | Path, fmt: str = "onnx", output: str | Path | None = None, checkpoint: str = "best",
               trust: Sequence[str] = ()) -> dict:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt} is not a format: choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        _require_onnx()

    trained = open_trained_run(run_path, checkpoint, "cpu", trust)
    suffix = SUFFIXES[fmt] if checkpoint == "best" else f"-{checkpoint}{SUFFIXES[fmt]}"
    destination = Path(output).expanduser() if output else trained.run_dir / f"model{suffix}"
    check_output_path(destination, output, "model" + SUFFIXES[fmt])
    if output is None:
        check_no_links_out(trained.run_dir)  # the export goes into the run
        sidecar = sidecar_path(destination)
    else:  # a link the user named (or the sidecar's name beside it) is written through
        destination = output_file(destination, output)
        sidecar = output_file(sidecar_path(destination), sidecar_path(destination))
    wrapped = exported_module(trained.model, trained.record)
    sample, source = verification_rows(trained)
    expected = _outputs(wrapped, sample)
    name = trained.cfg.model._target_.rsplit(".", 1)[-1]
    refusal = getattr(trained.model, "onnx_refusal", None) if fmt == "onnx" else None  # known without trying
    if refusal:
        raise UserError(f"{name} cannot be exported to ONNX ({refusal}): use --format torchscript")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=destination.parent) as scratch:
        file = Path(scratch) / destination.name
        if fmt == "onnx":
            _to_onnx(wrapped, sample, file, name)
            got = _run_onnx(file, sample)
        else:
            _to_torchscript(wrapped, sample, file, name)
            got = _run_torchscript(file, sample)
        difference = float(np.max(np.abs(got - expected))) if expected.size else 0.0
        if got.shape != expected.shape or not np.allclose(got, expected, **TOLERANCE):
            raise UserError(f"the {fmt} export of {name} does not reproduce the PyTorch model on {len(sample)} {source} "
                            f"(largest difference {difference:.3g}, tolerance rtol={TOLERANCE['rtol']:g} atol={TOLERANCE['atol']:g}): "
                            "nothing was written")
        described = describe(trained, fmt, destination, len(sample), difference, source)
        os.replace(file, destination)
    write_json(sidecar, described)  # fresh and renamed into place, beside wherever the sidecar's name leads
    return {**described, "path": str(destination), "sidecar": str(sidecar)}


def sidecar_path(destination: Path) -> Path:
    return destination.with_name(destination.name + ".json")


def _require_onnx() -> None:
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"--format onnx needs {', '.join(missing)}: {INSTALL_HINT}")


# -- the module that is exported ------------------------------------------------------------------
def exported_module(model, record: dict):
    class Exported(nn.Module):
        """The run's model, with the normalization (images), the resize of rows stored small and
        the map back to the target's units (regression) that dl applies around it."""

        def __init__(self):
            super().__init__()
            self.model = model
            norm = modality_named(record["kind"]).normalization(record)
            channels = record["input_shape"][0] if norm else 1
            self.normalize = norm is not None
            self.register_buffer("mean", torch.tensor(norm["mean"] if norm else [0.0]).reshape(1, channels, 1, 1))
            self.register_buffer("std", torch.tensor(norm["std"] if norm else [1.0]).reshape(1, channels, 1, 1))
            self.grow = tuple(record["input_shape"][1:]) if record.get("stored_shape") else None
            scaling = record["target"].get("scaling") or {}
            # one number, or one per output (a forecast's steps of several columns, each in its own units)
            self.rescale = scaling.get("std", 1.0) != 1.0 or scaling.get("mean", 0.0) != 0.0
            self.register_buffer("scale", torch.tensor(scaling.get("std", 1.0), dtype=torch.float32))
            self.register_buffer("shift", torch.tensor(scaling.get("mean", 0.0), dtype=torch.float32))
            self.transform = scaling.get("transform", "none")

        def forward(self, x):
            if self.normalize:
                x = (x - self.mean) / self.std
            if self.grow is not None:
                x = functional.interpolate(x, size=self.grow, mode="bilinear", align_corners=False)
            y = self.model(x)
            if self.rescale:
                y = y * self.scale + self.shift
            if self.transform == "log":
                y = torch.exp(y)
            elif self.transform == "log1p":
                y = torch.expm1(y)
            return y

    return Exported().eval()


def verification_rows(trained):
    """Up to VERIFY_ROWS real inputs, as the exported file takes them, from the run's test split
    (its validation or train split when the test split is empty), and what they are. Where the
    run's data cannot be loaded here (another directory, a moved file), random inputs of the
    right shape and range stand in, and the sidecar says so."""
    cfg = trained.cfg
    shape = tuple(trained.record.get("stored_shape") or trained.record["input_shape"])
    try:
        data = prepare_data(cfg.data, cfg.split, int(cfg.seed), cache="none")  # a few rows: no folder decoded
    except UserError as exc:
        generator = torch.Generator().manual_seed(0)
        sample = modality_named(trained.record["kind"]).stand_in_rows(VERIFY_ROWS, shape, generator)
        return sample, f"random inputs (the run's data could not be loaded here: {exc})"
    part = next((p for p in ("test", "val", "train") if len(data.split.part(p))), "train")
    rows = data.split.part(part)[:VERIFY_ROWS]
    return modality_named(data.kind).verification_rows(data, rows, shape), f"rows of the run's {part} split"


def _outputs(module, x) -> np.ndarray:
    with torch.no_grad():
        return module(x).float().numpy()


# -- formats --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet():
    """torch.onnx and torch.jit talk on stdout and in warnings; the command speaks for itself."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _example(sample):
    return sample[:2] if len(sample) >= 2 else sample.repeat(2, *([1] * (sample.ndim - 1)))


def _to_onnx(module, sample, file: Path, name: str) -> None:
    try:
        with _quiet():
            torch.onnx.export(module, (_example(sample),), str(file), input_names=["input"], output_names=["output"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False)
    except Exception as exc:
        # Older torch releases (2.9 among them) cannot trace every model with torch.export (an LSTM's
        # batch dimension, for one); their TorchScript-based exporter can. What it writes is checked
        # against PyTorch's outputs like any export, so the fallback never passes a wrong file.
        try:
            with _quiet():
                torch.onnx.export(module, (_example(sample),), str(file), input_names=["input"], output_names=["output"],
                                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False)
        except Exception:
            reason = ANSI_COLOUR.sub("", first_line(exc))  # the first exporter's reason, without its terminal colours
            raise UserError(f"{name} cannot be exported to ONNX ({reason}): try --format torchscript") from None


def _run_onnx(file: Path, sample) -> np.ndarray:
    import onnxruntime  # noqa: PLC0415  (optional extra: pip install dlcli[export])

    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": sample.numpy()})[0]


def _to_torchscript(module, sample, file: Path, name: str) -> None:
    try:
        with _quiet():
            traced = torch.jit.trace(module, _example(sample), check_trace=False)
            torch.jit.save(traced, str(file))
    except Exception as exc:
        raise UserError(f"{name} cannot be exported to TorchScript: {first_line(exc)}") from None


def _run_torchscript(file: Path, sample) -> np.ndarray:
    with _quiet():
        loaded = torch.jit.load(str(file), map_location="cpu")
    with torch.no_grad():
        return loaded(sample).float().numpy()


# -- the sidecar ----------------------------------------------------------------------------------
def describe(trained, fmt: str, destination: Path, rows: int, difference: float, source: str) -> dict:
    record = trained.record
    shape = ["batch", *(record.get("stored_shape") or record["input_shape"])]
    modality = modality_named(record["kind"])
    takes = modality.export_takes(record, shape)
    if trained.task == "classification":
        gives = "logits, one per class in class_names order (softmax for probabilities)"
    elif trained.task == LANGUAGE_MODEL:
        gives = ("the next token's logits at every position (batch, window, vocabulary), over preprocessing.text.vocabulary "
                 "in order (softmax for probabilities)")
    else:
        gives = f"{trained.target_name} in its own units (the target's scaling and transform are included)"
    return {
        "format": fmt,
        "file": destination.name,
        "run": str(trained.run_dir.resolve()),
        "checkpoint": trained.checkpoint,
        "epoch": trained.epoch,
        "task": trained.task,
        "input": {"name": "input", "shape": shape, "dtype": modality.input_dtype, "takes": takes},
        "output": {"name": "output", "gives": gives},
        "class_names": trained.class_names,
        "target": trained.target_name,
        "normalization_included": modality.normalization(record) is not None,
        "preprocessing": record,
        "verified": {"rows": rows, "inputs": source, "max_abs_difference": difference, **TOLERANCE,
                     "against": "the PyTorch model"},
    }
