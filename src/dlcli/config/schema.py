"""Typed schema of the config nodes that have no `_target_`: the root, trainer and split.

Registered in Hydra's ConfigStore and named first in config.yaml's defaults, so composition
checks them: a value of the wrong type (`trainer.amp=maybe`, `trainer.epochs=many`) and a key
that nothing reads (`+trainer.loss=huber`) are errors naming the key, not silently kept. The
`_target_` nodes (data, model, optim, sched, callbacks) are checked against their target's
signature instead (dlcli.config.build). Each field here is read by the code; keep them in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from dlcli.config.constraints import (
    BOOLEAN,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    RATE,
    SEED,
    TEXT,
    Interval,
    Options,
    Text,
    nullable,
)


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
    devices: int = 1
    max_restarts: int = 0
    sync_batchnorm: bool = False
    precision: str = "32"
    channels_last: bool = False
    tf32: bool = True
    compile: bool = False


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
    recipe: Any = None  # a recipe whose model the user swapped: what gave way (dlcli.config.recipes)


# What each value may be (the types above are OmegaConf's; these are the ranges and choices), read
# by dlcli.config.validate. Keys a run saved before they existed may be absent.
# the device names trainer.device (and --device) takes, as dlcli.engine.device reads them; cuda:N
# names any other GPU
DEVICES = ("auto", "cpu", "cuda", "cuda:0", "mps")

CONSTRAINTS = {
    "seed": SEED,
    "name": Text(plain_name=True, max_length=200),
    "runs_dir": Text(non_empty=True),
    "trainer.epochs": POSITIVE_INT,
    "trainer.batch_size": POSITIVE_INT,
    "trainer.eval_batch_size": POSITIVE_INT,
    "trainer.device": Text(non_empty=True, usual=DEVICES),
    "trainer.amp": BOOLEAN,
    "trainer.grad_clip": nullable(POSITIVE),
    "trainer.grad_clip_mode": Options(("norm", "value")),
    "trainer.label_smoothing": RATE,
    "trainer.metric": Text(non_empty=True),  # which ones: the task's (dlcli.config.validate.metric_for)
    "trainer.monitor": Text(non_empty=True),
    "trainer.early_stopping.enabled": BOOLEAN,
    "trainer.early_stopping.patience": POSITIVE_INT,
    "trainer.early_stopping.min_delta": NON_NEGATIVE,
    "trainer.progress": BOOLEAN,
    "trainer.checkpoint_every": NON_NEGATIVE,
    "trainer.plots": BOOLEAN,
    "trainer.diagnostics": BOOLEAN,
    "trainer.diagnostics_every": POSITIVE_INT,
    "trainer.devices": Interval(1, 4096, integer=True),
    "trainer.max_restarts": Interval(0, 1000, integer=True),
    "trainer.sync_batchnorm": BOOLEAN,
    "trainer.precision": Options(("32", "bf16", "16")),
    "trainer.channels_last": BOOLEAN,
    "trainer.tf32": BOOLEAN,
    "trainer.compile": BOOLEAN,
    "split.val": FRACTION,
    "split.test": FRACTION,
    "split.stratify": BOOLEAN,
    "split.seed": SEED,
    "split.kfold": nullable(Interval(2, None, integer=True)),
    "split.fold": nullable(POSITIVE_INT),
    "resume": nullable(TEXT),
    "refit": nullable(TEXT),
}

SCHEMA_NAME = "dl_schema"
# Nodes whose keys are fixed by the schema: a `+key` there is never read.
SCHEMA_NODES = {"": RootSchema, "trainer": TrainerSchema, "trainer.early_stopping": EarlyStoppingSchema, "split": SplitSchema,
                "eval": EvalSchema}


def register() -> None:
    """The schema in Hydra's config store, once per process (storing it builds it again: ~15 ms)."""
    from hydra.core.config_store import ConfigStore  # noqa: PLC0415  (dl cache list runs without hydra)

    store = ConfigStore.instance()
    if f"{SCHEMA_NAME}.yaml" not in store.repo:
        store.store(name=SCHEMA_NAME, node=RootSchema)

# `dl sweep KIND`, saved as sweep.yaml's kind: named here, low in the layers, for what reads a
# sweep.yaml below the sweep package (the run directory); each one's sampler and help are its
# entry in dlcli.sweep.kinds.KINDS (tests/test_sweep.py keeps the two in step)
SWEEP_KINDS = ("grid", "random", "tpe")
