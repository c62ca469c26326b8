"""`dl inspect RUN_DIR`: what a run's model learned, tensor by tensor.

For every parameter (and buffer, such as batch norm's running statistics) of a checkpoint: its
name, shape and summary statistics (numel, mean, population std, min, max, L2 norm), and its
full values when it is small (at most SMALL elements).

A model that is one linear layer on flat features (model=linreg, model=softmax, model=mlp with
model.hidden=[]) is also given in the data's own units. Its stored parameters act on the
features the run prepared, x' = (x - mu) / sigma (standardized, or pixels divided by their
range), and a regression's target may be standardized too, y' = (y - m) / s. Since
y = s * (w' . (x - mu) / sigma + b') + m, in the data's own units

    w = s * w' / sigma        b = s * (b' - sum(w' * mu / sigma)) + m

(classification has no target scaling: s = 1, m = 0, and the logits are unchanged). mu and sigma
are the run's own fitted encoding (dlcli.data.preprocess, fitted on the run's train rows; what
preprocessing.json holds), and m and s are the run's target scaler. The converted values are given in full whatever their size (the checkpoint has only the
stored ones). Any other model's values are as stored, and the report says why.

Nothing at module level imports torch: the CLI imports this lazily, and the renderer is pure.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from dlcli.errors import UserError
from dlcli.rundir.directory import check_checkpoint_name, checkpoint_path, find_run, load_saved_config, read_json

SMALL = 10  # tensors with at most this many elements are shown in full


# -- the report ----------------------------------------------------------------------------------
def inspect_run(run_dir: str | Path, checkpoint: str = "best", trust: Sequence[str] = ()) -> dict:
    """A JSON-able report of a run's checkpoint: every parameter's statistics, small ones' values,
    and (for a single linear layer on flat features) the values in the data's own units.

    The model and its data are rebuilt from the run's saved config exactly as `dl eval` does
    (read safely: only trusted classes, see `load_saved_config`), on the CPU."""
    from dlcli.engine.checkpoint import load_checkpoint, load_weights  # noqa: PLC0415  (dl inspect runs without torch: dlcli.engine.checkpoint imports it)
    from dlcli.experiment import build_experiment  # noqa: PLC0415  (dl inspect runs without torch: dlcli.experiment imports it)

    check_checkpoint_name(checkpoint)
    run = find_run(run_dir)
    cfg = load_saved_config(run, trust)
    path = checkpoint_path(run, checkpoint)
    payload = load_checkpoint(path)
    cfg.trainer.device = "cpu"  # inspecting needs no accelerator, and the run's may be absent here
    cfg.trainer.amp = False
    cfg.trainer.precision = "32"
    experiment = build_experiment(cfg, restoring=True)
    model = experiment.session.model
    load_weights(model, payload, run / "config.yaml")
    model.eval()

    parameters = [tensor_entry(name, p) for name, p in model.named_parameters()]
    buffers = [tensor_entry(name, b) for name, b in model.named_buffers()]
    units, why = data_units(experiment, run)
    return {
        "run": str(run),
        "checkpoint": checkpoint,
        "epoch": int(payload["state"]["epoch"]),
        "model": str(cfg.model.get("_target_", type(model).__name__)),
        "total_parameters": sum(entry["numel"] for entry in parameters),
        "parameters": parameters,
        "buffers": buffers,
        "units": units,
        "units_note": why,
    }


def tensor_entry(name: str, tensor, small: int = SMALL) -> dict:
    """Name, shape and statistics of one tensor, and its values (nested lists) when it has at most
    `small` elements. std is the population std (no Bessel correction: defined for one element
    too); non-finite numbers are null, as JSON has no NaN."""
    import torch  # noqa: PLC0415  (dl inspect runs without torch)

    t = tensor.detach().to("cpu", torch.float64)
    n = t.numel()
    entry = {"name": name, "shape": list(t.shape), "numel": int(n)}
    if n == 0:
        entry.update(mean=None, std=None, min=None, max=None, norm=None, values=[] if t.dim() else None)
        return entry
    entry.update(
        mean=_number(t.mean()),
        std=_number(t.std(correction=0)),
        min=_number(t.min()),
        max=_number(t.max()),
        norm=_number(torch.linalg.vector_norm(t)),
        values=_values(t.tolist()) if n <= small else None,
    )
    return entry


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _values(value):
    if isinstance(value, list):
        return [_values(v) for v in value]
    return _number(value)


# -- the data's own units ------------------------------------------------------------------------
def single_linear(model):
    """(name, layer) of the one linear layer when the model is exactly flatten + linear, else None.
    Judged by the exact class (a subclass could change `forward`) and its layers."""
    from torch import nn  # noqa: PLC0415  (dl inspect runs without torch)

    from dlcli.models import MLP, LinearRegression, SoftmaxRegression  # noqa: PLC0415  (dl inspect runs without torch: dlcli.models imports it)

    if type(model) not in (LinearRegression, SoftmaxRegression, MLP):
        return None
    net = getattr(model, "net", None)
    if not isinstance(net, nn.Sequential) or [type(m) for m in net] != [nn.Flatten, nn.Linear]:
        return None
    return "net.1", net[1]


def data_units(experiment, run: Path) -> tuple[dict | None, str]:
    """The single linear layer's parameters in the data's own units, or None and the reason the
    values are as stored."""
    from dlcli.data import PreparedData  # noqa: PLC0415  (dl inspect runs without numpy: dlcli.data imports it)
    from dlcli.trained.evaluate import check_same_split  # noqa: PLC0415  (dl inspect runs without torch: dlcli.trained.evaluate imports it)

    found = single_linear(experiment.session.model)
    if found is None:
        return None, "values are as stored: the model is not a single linear layer on flat features"
    data = experiment.data
    if not isinstance(data, PreparedData):
        return None, "values are as stored: the model sees images prepared by their own pipeline, not flat features"
    name, layer = found
    if data.stored_shape is not None:
        return None, "values are as stored: the features are resized (data.resize) before the linear layer"
    if layer.in_features != data.features.shape[1]:
        return None, "values are as stored: the linear layer does not take the data's features one to one"
    if getattr(data, "series", None) is not None:  # a forecast: windows of steps, each column scaled on its own
        return None, ("values are as stored: the linear layer reads windows of standardized steps and forecasts standardized "
                      "steps (preprocessing.json's series holds each column's center and scale)")
    try:
        check_same_split(experiment, run)
    except UserError as exc:
        return None, f"values are as stored: {exc}"
    regression = data.task == "regression"
    scaler = data.target_scaler if regression else None
    if scaler is not None and scaler.transform_name != "none":
        return None, f"values are as stored: the model predicts {scaler.transform_name} of the target, not a linear map of it"
    mu, sigma, how, converted = feature_scaling(experiment.cfg, data, run)
    m, s = (float(scaler.mean), float(scaler.std)) if scaler is not None else (0.0, 1.0)
    w = layer.weight.detach().to("cpu").double().numpy()
    b = layer.bias.detach().to("cpu").double().numpy() if layer.bias is not None else 0.0 * w[:, 0]
    w_units = s * w / sigma
    b_units = s * (b - w @ (mu / sigma)) + m

    if regression and (m, s) != (0.0, 1.0):
        target = f"the target was standardized (data.standardize_target=true: m={m:.4g}, s={s:.4g})"
    elif regression:
        target = "the target is as given (data.standardize_target=false)"
    else:
        target = "logits need no target scaling (classification)"
    if not converted and (m, s) == (0.0, 1.0):
        note = f"the stored values are already in the data's own units: {how}; {target}"
    else:
        note = (f"in the data's own units: {how}; {target}; "
                + ("w = s*w'/sigma, b = s*(b' - sum(w'*mu/sigma)) + m" if regression else "w = w'/sigma, b = b' - sum(w'*mu/sigma)"))

    import torch  # noqa: PLC0415  (dl inspect runs without torch)

    units = {
        "note": note,
        "feature_names": list(data.feature_names),
        "feature_shift": [float(v) for v in mu],  # x' = (x - shift) / scale
        "feature_scale": [float(v) for v in sigma],
        "target_shift": m if regression else None,  # y' = (y - shift) / scale
        "target_scale": s if regression else None,
        # in full whatever their size: the checkpoint holds the stored values, nothing else these
        "parameters": [tensor_entry(f"{name}.weight", torch.from_numpy(w_units), small=w_units.size),
                       tensor_entry(f"{name}.bias", torch.from_numpy(b_units), small=b_units.size)],
    }
    return units, note


def feature_scaling(cfg, data, run: Path):
    """(mu, sigma, how, converted) with x' = (x - mu) / sigma per prepared feature column, read from
    the run's preprocessing.json (what it fitted on its train rows), or for a run saved before that
    file existed, from the same encoding fitted again on the same train rows."""
    import numpy as np  # noqa: PLC0415  (dl inspect runs without numpy)

    from dlcli.data import PREPROCESSING_FILE, PREPROCESSING_FORMAT  # noqa: PLC0415  (dl inspect runs without numpy: dlcli.data imports it)
    from dlcli.data.preprocess import TableEncoding, encoding_from_json  # noqa: PLC0415  (dl inspect runs without numpy: dlcli.data.preprocess imports it)
    from dlcli.data.record import check_preprocessing  # noqa: PLC0415  (dl inspect runs without numpy: dlcli.data.record imports it)

    saved = run / PREPROCESSING_FILE
    record = check_preprocessing(read_json(saved), saved, PREPROCESSING_FORMAT) if saved.is_file() else None
    encoding = encoding_from_json(record["features"]) if record is not None and "features" in record else data.encoding
    width = data.features.shape[1]
    mu, sigma, notes = np.zeros(width), np.ones(width), []
    if isinstance(encoding, TableEncoding):
        count = len(encoding.numeric)
        mu[:count], sigma[:count] = encoding.center, encoding.scale
        if encoding.categorical:
            notes.append("categorical columns are 0/1 one-hot indicators")
        notes.append("a missing numeric value is filled with its column's train mean")
        converted = bool(cfg.data.get("standardize", True))
    elif encoding.divide_by:
        sigma[:] = encoding.divide_by
        converted = True
    elif encoding.center is not None:
        mu[:], sigma[:] = encoding.center, encoding.scale
        converted = True
    else:
        converted = False
    if getattr(encoding, "divide_by", None):
        how = f"features were stored divided by {encoding.divide_by:g} (their range)"
    elif converted:
        how = "features were standardized with the train rows' mean and std (data.standardize=true)"
    else:
        how = "features are as given (data.standardize=false)"
    return mu, sigma, "; ".join([how, *notes]), converted


# -- text ----------------------------------------------------------------------------------------
def number(value) -> str:
    """4 significant figures; n/a for what was not finite."""
    return "n/a" if value is None else f"{value:.4g}"


def shape_text(shape: list[int]) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def values_text(entry: dict) -> str:
    """`w = [1.999, -3.4]`: a tensor with one non-trivial axis reads as a flat list."""
    label = {"weight": "w", "bias": "b"}.get(entry["name"].rsplit(".", 1)[-1], entry["name"].rsplit(".", 1)[-1])
    values = entry["values"]
    if sum(1 for d in entry["shape"] if d > 1) <= 1 and isinstance(values, list):
        values = list(_flatten(values))
    return f"{label} = {_nested(values)}"


def _flatten(values):
    for v in values:
        if isinstance(v, list):
            yield from _flatten(v)
        else:
            yield v


def _nested(values) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_nested(v) for v in values) + "]"
    return number(values)


def _columns(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


def _stats_rows(entries: list[dict]) -> list[str]:
    header = ["name", "shape", "numel", "mean", "std", "min", "max", "norm"]
    rows = [header] + [[e["name"], shape_text(e["shape"]), f"{e['numel']:,}", *(number(e[k]) for k in header[3:])]
                       for e in entries]
    return _columns(rows, right={2, 3, 4, 5, 6, 7})


def _value_rows(entries: list[dict]) -> list[str]:
    small = [e for e in entries if e["values"] is not None and e["numel"] <= SMALL]
    if not small:
        return []
    return _columns([[e["name"], shape_text(e["shape"]), values_text(e)] for e in small], right=set())


def inspect_lines(report: dict) -> list[str]:
    """The report as plain lines (no markup): statistics, then small tensors' values as stored,
    then the data's own units (or why values are as stored)."""
    lines = [f"{report['run']}  checkpoint {report['checkpoint']} (epoch {report['epoch']})  "
             f"{report['model']}: {report['total_parameters']:,} parameters"]
    lines += ["", "parameters", *_stats_rows(report["parameters"])]
    if report.get("buffers"):
        lines += ["", "buffers", *_stats_rows(report["buffers"])]
    stored = _value_rows(report["parameters"])
    if stored:
        lines += ["", "values as stored", *stored]
    units = report.get("units")
    lines.append("")
    if units is None:
        lines.append(report.get("units_note") or "values are as stored")
        return lines
    lines.append(units["note"])
    names = units.get("feature_names") or []
    if 0 < len(names) <= SMALL:
        lines.append(f"columns of w: {', '.join(map(str, names))}")
    lines += _value_rows(units["parameters"])
    large = [e for e in units["parameters"] if e["values"] is None or e["numel"] > SMALL]
    if large:
        lines += _stats_rows(large)
    return lines
