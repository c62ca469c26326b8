"""The end of a sweep: its results written, the best trial chosen (with the tie-break and the
warning when the top trials are too close to call), and the one look at the test split."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf

from dlcli.experiment import build_experiment
from dlcli.system.numbers import short
from dlcli.tracking.plots import draw_in_background
from dlcli.rundir.directory import load_saved_config, read_json, update_summary, write_text
from dlcli.sweep.plan import SweepResult
from dlcli.sweep.results import chosen_by, close_call, plot_sweep, results_frame, sorted_by_metric, write_results
from dlcli.trained.evaluate import evaluate_checkpoint


def finish(sweep_dir, records, space, metric, mode, status, log, trust=(), folds: int | None = None) -> SweepResult:
    frame = results_frame(records, space, metric)
    write_results(sweep_dir / "results.csv", frame)
    plot_sweep(frame, space, metric, sweep_dir / "sweep.png")
    counts = frame["status"].value_counts().to_dict()
    completed = sorted_by_metric(frame[(frame["status"] == "completed") & frame[metric].notna()], metric, mode)
    fields = {"status": status, "counts": {k: int(v) for k, v in counts.items()}, "best_trial": None}
    if not completed.empty:
        best = completed.iloc[0]
        number = int(best["number"])
        record = next(r for r in records if r["number"] == number)
        overrides = [*space.fixed, *(f"{k}={v}" for k, v in record["params"].items())]
        how = chosen_by(metric, mode, folds)
        write_text(sweep_dir / "best.yaml", OmegaConf.to_yaml(OmegaConf.create({"overrides": overrides, "trial": number,
                                                                                 "chosen_by": how})))
        here = Path(record["run_dir"]).is_dir()  # a shared study's best trial may have run on another machine
        if here:  # the best trial's curves (a cross-validated trial's: each fold's, in its fold-N/)
            for run in trial_runs(Path(record["run_dir"])):
                draw_in_background(run, ["curves"])
        warning = close_call(completed, metric, _resolution(Path(record["run_dir"]), metric) if not folds else None,
                             float(best[f"{metric}_std"]) if folds and best[f"{metric}_std"] == best[f"{metric}_std"] else None)
        if warning:
            log(warning)
        fields.update(best_trial=number, best_overrides=overrides, best_run_dir=record["run_dir"], chosen_by=how,
                      close_call=warning, **{f"best_{metric}": float(best[metric])})
        if folds:
            fields[f"best_{metric}_std"] = float(best[f"{metric}_std"])
        if status == "completed" and not here:
            log(f"best trial {number:03d} ran at {record['run_dir']}: its one look at the test split is taken there, "
                "by the worker that finishes the sweep or by dl sweep report on that machine")
        elif status == "completed":
            fields["test"] = _test_best(Path(record["run_dir"]), trust)
            log(f"best trial {number:03d}: {metric} {value_text(record)}; on the held-out test split"
                + (f" (the mean of its {folds} fold models' numbers)" if folds else "") + ": "
                + ", ".join(f"{k} {short(v)}" for k, v in fields["test"].items() if isinstance(v, float)))
    summary = update_summary(sweep_dir, **fields)
    return SweepResult(sweep_dir, summary, sorted_by_metric(frame, metric, mode))


def value_text(record: dict) -> str:
    """A trial's score as a line shows it: 0.8020, or 0.8020 ± 0.0150 over folds."""
    if record.get("value") is None:
        return "-"
    if record.get("std") is not None:
        return f"{short(record['value'])} ± {short(record['std'])} over {record.get('folds')} folds"
    if record.get("folds") == 1:
        return f"{short(record['value'])} (1 fold)"
    return short(record["value"])


def _resolution(trial_dir: Path, metric: str) -> float | None:
    """The smallest step of an accuracy on this trial's validation split (1 / its rows)."""
    if metric != "val_accuracy" or not (trial_dir / "split.json").is_file():
        return None
    sizes = read_json(trial_dir / "split.json").get("sizes")
    rows = sizes.get("val") if isinstance(sizes, dict) else None
    return 1.0 / rows if isinstance(rows, int) and not isinstance(rows, bool) and rows > 0 else None


def trial_runs(trial_dir: Path) -> list[Path]:
    """A trial's run directories: its folds in order (a cross-validated trial), or itself."""
    return sorted((d for d in trial_dir.glob("fold-*") if d.is_dir()), key=lambda d: int(d.name[5:])) or [trial_dir]


def _test_best(trial_dir: Path, trust: Sequence[str] = ()) -> dict:
    """The one look at the test split: the best trial's best checkpoint (each fold's, averaged, for
    a cross-validated trial), after every trial is done."""
    keep = ("samples", "loss", "accuracy", "macro_f1", "rmse", "mae", "r2", "log_rmse")
    reports = []
    for run in trial_runs(trial_dir):
        cfg = load_saved_config(run, trust)
        report = evaluate_checkpoint(build_experiment(cfg, restoring=True), run, "test", "best")
        reports.append({k: report[k] for k in keep if k in report})
    if len(reports) == 1:
        return reports[0]
    return {k: reports[0][k] if k == "samples" else statistics.fmean(r[k] for r in reports) for k in reports[0]}
