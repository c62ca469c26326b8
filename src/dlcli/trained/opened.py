"""A finished run opened for use: its saved config, what it learned from its data
(preprocessing.json) and the model of one of its checkpoints. `dl predict` and `dl export` start here.

Opening a run runs nothing from it: the config may only build trusted classes, the checkpoint is
read with weights_only=True, and preprocessing.json is plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig

from dlcli.data import PREPROCESSING_FILE, PREPROCESSING_FORMAT
from dlcli.data.modality import modality_named
from dlcli.data.preprocess import TargetScaler
from dlcli.data.record import check_preprocessing
from dlcli.engine.checkpoint import load_checkpoint, load_weights
from dlcli.engine.device import select_device
from dlcli.engine.language import LANGUAGE_MODEL
from dlcli.engine.losses import head_size, one_logit, present_as_two_logits
from dlcli.errors import UserError
from dlcli.models import build_model
from dlcli.rundir.directory import (
    check_checkpoint_name,
    checkpoint_path,
    find_run,
    is_kfold_parent,
    load_saved_config,
    read_json,
)


@dataclass
class TrainedRun:
    run_dir: Path
    cfg: DictConfig
    record: dict  # preprocessing.json
    model: object  # torch.nn.Module in eval mode
    checkpoint: str
    epoch: int

    @property
    def task(self) -> str:
        return self.record["task"]

    @property
    def class_names(self) -> list[str] | None:
        return self.record["target"]["classes"]

    @property
    def target_name(self) -> str:
        return self.record["target"]["name"]

    def target_scaler(self):
        scaling = self.record["target"].get("scaling")
        return TargetScaler.from_json(scaling) if scaling else None


def read_preprocessing(run_path: str | Path) -> tuple[Path, dict]:
    """The run directory and its preprocessing record, or a one-line reason it has none to use."""
    if is_kfold_parent(run_path):
        raise UserError(f"{run_path} is a k-fold run with one model per fold: train one model on all its data first "
                        f"(dl train refit={run_path}), or give one fold ({Path(str(run_path)) / 'fold-1'})")
    run = find_run(run_path)
    path = run / PREPROCESSING_FILE
    if not path.is_file():
        raise UserError(f"{run} has no {PREPROCESSING_FILE}: it was trained before dl saved what a run learns from its data "
                        "(encodings, statistics), so it cannot be used for prediction or export; train it again")

    return run, check_preprocessing(read_json(path), path, PREPROCESSING_FORMAT)


def open_trained_run(run_path: str | Path, checkpoint: str = "best", device: str = "cpu", trust: Sequence[str] = ()) -> TrainedRun:
    """Rebuild a run's model from its saved config and load a checkpoint into it, on `device`."""
    check_checkpoint_name(checkpoint)
    run, record = read_preprocessing(run_path)
    path = checkpoint_path(run, checkpoint)
    cfg = load_saved_config(run, trust)
    target = select_device(device)
    classes = record["target"]["classes"]
    modality = modality_named(record["kind"])
    vocab_size = modality.vocab_size(record)
    # a language model's outputs are the next token's logits over its whole vocabulary
    outputs = vocab_size if record["task"] == LANGUAGE_MODEL else len(classes) if classes else modality.regression_outputs(record)
    model = build_model(cfg.model, tuple(record["input_shape"]), head_size(cfg.get("loss"), outputs),
                        start_weights=False,  # the checkpoint is loaded next
                        vocab_size=vocab_size, task=record["task"])
    if one_logit(cfg.get("loss")):
        present_as_two_logits(model)  # a one-logit (bce) model answers as two classes
    payload = load_checkpoint(path)
    load_weights(model, payload, run / "config.yaml")
    model.to(target).eval()
    return TrainedRun(run, cfg, record, model, checkpoint, int(payload["state"]["epoch"]))
