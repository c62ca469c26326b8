"""`dl param-count` and `dl conv-shape model=...`: build the configured model on the meta device
(no memory for weights, no compute) and summarize it layer by layer."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from dlcli.data import prepare_data
from dlcli.engine.losses import head_size
from dlcli.errors import UserError
from dlcli.models import build_model
from dlcli.tools.model_summary import ModelSummary, summarize
from dlcli.config.validate import validate_config


def data_signature(cfg: DictConfig, input_shape: tuple[int, ...] | None) -> tuple[tuple[int, ...], int, dict]:
    """(input shape, outputs, what a token model is told: vocab_size and task) the model is built
    for: from the data, or --input over its shape."""
    data = prepare_data(cfg.data, cfg.split, cfg.seed, cache="none")  # shapes only: no folder decoded
    tokens = {"vocab_size": getattr(data, "vocab_size", None), "task": data.task}
    return (tuple(input_shape) if input_shape else data.input_shape), data.num_outputs, tokens


def model_summary(cfg: DictConfig, input_shape: tuple[int, ...] | None = None, depth: int | None = None) -> ModelSummary:
    validate_config(cfg)
    if depth is not None and depth < 1:
        raise UserError(f"--depth {depth} must be at least 1")
    shape, outputs, tokens = data_signature(cfg, input_shape)

    with torch.device("meta"):  # the shapes only: a one-logit (bce) head has one unit; no start weights are read
        model = build_model(cfg.model, shape, head_size(cfg.get("loss"), outputs), start_weights=False, **tokens)
    return summarize(model, shape, depth)
