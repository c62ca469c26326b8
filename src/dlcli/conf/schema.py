"""Typed schema of the config nodes that have no `_target_`: the root, trainer and split.

Registered in Hydra's ConfigStore and named first in config.yaml's defaults, so composition
checks them: a value of the wrong type (`trainer.amp=maybe`, `trainer.epochs=many`) and a key
that nothing reads (`+trainer.loss=huber`) are errors naming the key, not silently kept. The
`_target_` nodes (data, model, optim, sched, callbacks) are checked against their target's
signature instead (dlcli.factory). Each field here is read by the code; keep them in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional


@dataclass
class EarlyStoppingSchema:
    enabled: bool = False
    patience: int = 5
    min_delta: float = 0.0


@dataclass
class TrainerSchema:
    epochs: int = 20
    batch_size: int = 32
    eval_batch_size: int = 1024
    device: str = "auto"
    amp: bool = False
    grad_clip: Optional[float] = None
    grad_clip_mode: str = "norm"
    label_smoothing: float = 0.0
    metric: str = "auto"
    monitor: str = "auto"
    early_stopping: EarlyStoppingSchema = field(default_factory=EarlyStoppingSchema)
    progress: bool = True
    checkpoint_every: float = 10.0
    plots: bool = True
    diagnostics: bool = True
    diagnostics_every: int = 10


@dataclass
class SplitSchema:
    val: float = 0.1
    test: float = 0.1
    stratify: bool = True
    seed: int = 0
    kfold: Optional[int] = None
    fold: Optional[int] = None


@dataclass
class EvalSchema:
    tta: Any = None  # test-time augmentation of the final test look and dl eval: hflip | vflip | a list


@dataclass
class RootSchema:
    data: Any = None
    model: Any = None
    optim: Any = None
    sched: Any = None
    loss: Any = None
    trainer: TrainerSchema = field(default_factory=TrainerSchema)
    split: SplitSchema = field(default_factory=SplitSchema)
    eval: EvalSchema = field(default_factory=EvalSchema)
    seed: int = 0
    name: str = "train"
    runs_dir: str = "runs"
    resume: Optional[str] = None
    refit: Optional[str] = None
    callbacks: Dict[str, Any] = field(default_factory=dict)
    logger: Dict[str, Any] = field(default_factory=dict)


SCHEMA_NAME = "dl_schema"
# Nodes whose keys are fixed by the schema: a `+key` there is never read.
SCHEMA_NODES = {"": RootSchema, "trainer": TrainerSchema, "trainer.early_stopping": EarlyStoppingSchema, "split": SplitSchema,
                "eval": EvalSchema}


def register() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=RootSchema)
