"""Evaluate a checkpoint on one split of its run's data: `dl eval` and the end of `dl train`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


from dlcli.engine.checkpoint import load_checkpoint, load_weights
from dlcli.engine.fit import evaluate_outputs
from dlcli.engine.metrics import as_numpy, classification_report
from dlcli.engine.tta import TestTimeAugmented, checked_views
from dlcli.errors import UserError
from dlcli.system.files import check_no_links_out
from dlcli.experiment import Experiment, build_experiment
from dlcli.tracking.plots import draw_in_background
from dlcli.rundir.directory import check_checkpoint_name, checkpoint_path, find_run, load_saved_config, read_json, write_json

SPLITS = ("test", "val", "train")


def evaluate_checkpoint(experiment: Experiment, run_dir: Path, split: str, checkpoint: str, draw: bool = True,
                        tta=None) -> dict:
    """Load checkpoints/<checkpoint>.pt into the experiment's model and report on one split.

    Writes eval-<split>.json into the run and, for classification with `draw`, has
    confusion-<split>.png drawn beside it (dlcli.tracking.plots). `tta` (default: the config's eval.tta)
    averages the model over flipped views of each image.
    """
    views = checked_views(tta if tta is not None else (experiment.cfg.get("eval") or {}).get("tta"), experiment.data.input_shape)
    payload = load_checkpoint(checkpoint_path(run_dir, checkpoint))
    session = experiment.session
    load_weights(session.model, payload, run_dir / "config.yaml")
    data = experiment.batches(split)
    if len(data) == 0:
        raise UserError(f"the {split} split of this run is empty (split.{split}=0): choose another --split")
    model = TestTimeAugmented(session.model, views, experiment.data.task == "classification") if views else None
    outputs, targets, loss, metrics = evaluate_outputs(session, data, model)
    report = {
        "run": str(run_dir),
        "split": split,
        "checkpoint": checkpoint,
        "epoch": int(payload["state"]["epoch"]),
        "samples": int(len(data)),
        "loss": loss,
        **metrics,
        **({"tta": views} if views else {}),
    }
    if session.loss_units:
        report["loss_units"] = session.loss_units  # the metrics are in the target's own units
    if hasattr(experiment.data, "forecast_report"):  # a series: errors per horizon step, and persistence's beside them
        report.update(experiment.data.forecast_report(split, as_numpy(outputs)))
    if experiment.data.task == "classification":
        names = experiment.data.class_names
        report["class_names"] = names
        report.update(classification_report(as_numpy(outputs), as_numpy(targets), names))
    write_json(run_dir / f"eval-{split}.json", report)
    if draw and "confusion_matrix" in report:
        draw_in_background(run_dir, [f"confusion-{split}"])
    return report


def evaluate_run(run_path: str | Path, split: str = "test", checkpoint: str = "best", device: str | None = None,
                 trust: Sequence[str] = (), tta=None) -> dict:
    """`dl eval`: rebuild the run's exact split from its config and evaluate a checkpoint on it.
    The config may only build what dlcli.trust.targets accepts (dl's own targets and kinds, or `trust`)."""
    if split not in SPLITS:
        raise UserError(f"--split {split} is not a split: choose one of {', '.join(SPLITS)}")
    check_checkpoint_name(checkpoint)
    run_dir = find_run(run_path)
    check_no_links_out(run_dir)  # eval-<split>.json and the pictures are written into it
    cfg = load_saved_config(run_dir, trust)
    if device is not None:
        cfg.trainer.device = device
    experiment = build_experiment(cfg, restoring=True)
    check_same_split(experiment, run_dir)
    return evaluate_checkpoint(experiment, run_dir, split, checkpoint, tta=tta)


def check_same_split(experiment: Experiment, run_dir: Path) -> None:
    """The rebuilt split must be the recorded one, or the numbers would be about other samples."""
    recorded = read_json(run_dir / "split.json")
    rebuilt = experiment.data.split.record()
    hashes = recorded.get("hashes")
    if not isinstance(hashes, dict):
        raise UserError(f"{run_dir / 'split.json'} records no split (no hashes): restore it from a copy of the run")
    for part, digest in hashes.items():
        if rebuilt["hashes"].get(part) != digest:
            raise UserError(
                f"the {part} split rebuilt from {run_dir / 'config.yaml'} differs from split.json "
                "(the data or its file changed since the run): cannot reproduce its numbers"
            )
