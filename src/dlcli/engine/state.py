"""What a training run is made of (Session) and how far it has come (FitState): the types the
engine's modules share. Kept apart from `fit` so that callbacks, checkpoints and loggers can name
them without importing the loop (and the loop without importing them back)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dlcli.engine.batches import LoaderBatches, TensorBatches
from dlcli.engine.distributed import World
from dlcli.engine.loop import StepConfig
from dlcli.engine.optim import Schedule

BatchSource = TensorBatches | LoaderBatches


@dataclass
class Session:
    """Everything one training run needs, already built from config and placed on the device."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    loss_fn: nn.Module
    device: torch.device
    step: StepConfig
    generator: torch.Generator  # the shuffling order, saved in checkpoints for exact resume
    train_data: BatchSource
    val_data: BatchSource | None  # None: no validation split (split.val=0), so the last epoch is kept
    task: str
    metric: str  # accuracy | rmse | ...
    epochs: int
    eval_batch_size: int
    monitor: str  # e.g. val_accuracy
    mode: str  # max | min
    patience: int | None = None  # early stopping (None: off)
    min_delta: float = 0.0
    target_mean: float = 0.0
    target_std: float = 1.0
    target_transform: str = "none"  # log | log1p: outputs are mapped back with exp | expm1 for the metrics
    scaler: torch.amp.GradScaler | None = None
    world: World = World()  # this process among several training together (DistributedDataParallel)
    train_model: nn.Module | None = None  # the model wrapped (DDP, torch.compile); training steps go through it
    eval_model: nn.Module | None = None  # the model compiled for validation (trainer.compile)
    stopped_together: bool = False  # several processes: the run ended by a decision every rank took

    @property
    def training_module(self) -> nn.Module:
        """What training steps call: the wrapped model, or the model itself. (Never `a or b`: a
        compiled module refuses truth tests.)"""
        return self.train_model if self.train_model is not None else self.model

    @property
    def evaluation_module(self) -> nn.Module:
        return self.eval_model if self.eval_model is not None else self.model

    @property
    def loss_units(self) -> str | None:
        """What a regression's loss is measured on when it is not the target itself (a standardized
        or log target); its metrics are always in the target's own units. None: the target's units."""
        if self.task != "regression":
            return None
        standardized = self.target_std != 1.0 or self.target_mean != 0.0
        words = [*(["standardized"] if standardized else []), *([self.target_transform] if self.target_transform != "none" else [])]
        return " ".join([*words, "target"]) if words else None


@dataclass
class FitState:
    """Progress of a run, saved in every checkpoint so a resumed run continues exactly.
    Small and fixed in size: the per-epoch rows live in metrics.csv."""

    epoch: int = 0  # epochs completed
    steps: int = 0  # optimizer steps taken (batches trained): what counts steps goes on from here after a resume
    best_value: float | None = None
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    stopped_early: bool = False

    def take_latest(self, epoch: int) -> bool:
        """Without a validation split every epoch is the best so far: best.pt is the last epoch."""
        self.epoch = self.best_epoch = epoch
        self.best_value, self.epochs_without_improvement = None, 0
        return True

    def record(self, row: dict, monitor: str, mode: str, min_delta: float) -> bool:
        """Take in the epoch's row; True when it is the best epoch so far on the monitor."""
        self.epoch = row["epoch"]
        value = row[monitor]
        if self.best_value is None:
            improved = math.isfinite(value)
        elif mode == "max":
            improved = value > self.best_value + min_delta
        else:
            improved = value < self.best_value - min_delta
        if improved:
            self.best_value, self.best_epoch, self.epochs_without_improvement = value, row["epoch"], 0
        else:
            self.epochs_without_improvement += 1
        return improved


def steps_taken(state: FitState, samples: int, batch_size: int) -> int:
    """The optimizer steps a run has taken, for whatever numbers steps (the diagnosis, TensorBoard)
    so that a resumed run goes on counting where it stopped. A checkpoint written before steps were
    counted holds epochs but no steps: there, each epoch counts its batches of `batch_size` out of
    `samples` (a lone trailing sample is no batch)."""
    if state.steps or not state.epoch:
        return state.steps
    per_epoch = samples // batch_size + (samples % batch_size > 1) if samples > 1 else samples
    return state.epoch * per_epoch
