"""Building the configured model: `build_model` supplies `input_shape` and `num_outputs` (both from
the data; for token data `vocab_size`, and `causal=True` for a language model: dlcli.models.tokens)
to the model's own settings, applies the init scheme, loads start weights, freezes what
the config lists, and dry-runs one sample so a model that does not fit the data says so at once."""

from __future__ import annotations

import inspect

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dlcli.config.compose import config_options, option_name
from dlcli.config.constraints import show
from dlcli.engine.optim import head_prefix
from dlcli.errors import UserError, first_line
from dlcli.config.build import call_target, checked_once, resolve_target
from dlcli.config.own_settings import GROUPS
from dlcli.models.init import initialize, parse_scheme
from dlcli.models.registry import MODELS
from dlcli.models.tokens import example_input
from dlcli.models.weights import load_weights_into, read_weights
from dlcli.system.machine import memory_bytes

MODEL_PACKAGE = "dlcli.models."


def build_model(model_cfg: DictConfig, input_shape: tuple[int, ...], num_outputs: int, start_weights: bool = True,
                vocab_size: int | None = None, task: str | None = None) -> nn.Module:
    """Build, initialize, (start from earlier weights,) freeze and dry-run the configured model on
    one sample of the data's shape. `start_weights=False` skips model.weights=RUN_DIR of a dl
    model, for a model whose own checkpoint is loaded next. `vocab_size` (token data) and `task`
    reach the constructors that read tokens (token_arguments)."""
    start_from = start_weights_of(model_cfg)  # model.weights=RUN_DIR for a dl model (torchvision's take it themselves)
    shapes = {"input_shape": tuple(input_shape), "num_outputs": num_outputs, **token_arguments(model_cfg, vocab_size, task)}
    with checked_once(model_cfg, "model"):  # counted on the meta device, then built: checked once
        check_size(model_cfg, shapes)
        model = call_target(model_cfg, "model", expect=nn.Module, expect_name="torch.nn.Module", **shapes)
    scheme = model_cfg.get("init", "default")
    if parse_scheme(scheme)[0] != "default" and (getattr(model, "has_pretrained_weights", False) or start_from is not None):
        raise UserError(f"model.init={scheme} would overwrite the weights from model.weights: keep model.init=default")
    initialize(model, scheme)
    if start_from is not None and start_weights:
        model.start_note = load_start_weights(model, start_from)
    freeze(model, list(model_cfg.get("freeze") or []))
    _dry_run(model, model_cfg._target_, input_shape, (*input_shape, num_outputs) if task == LANGUAGE_MODEL else (num_outputs,))
    return model


LANGUAGE_MODEL = "language_model"  # the task whose model predicts the next token at every position


def token_arguments(model_cfg: DictConfig, vocab_size: int | None, task: str | None) -> dict:
    """`vocab_size` for token data and `causal=True` for a language model, to a model that reads
    tokens (its constructor takes `vocab_size`); a model that does not is one line naming those that do."""
    if vocab_size is None and task != LANGUAGE_MODEL:
        return {}
    if not _takes(model_cfg, "vocab_size"):
        readers = sorted({name for name, settings in config_options("model") if _reads_tokens(settings.get("_target_"))})
        chosen = option_name("model", OmegaConf.to_container(model_cfg, resolve=True))
        raise UserError(f"model={chosen} cannot read tokens (text), which this data is: choose one of the models that "
                        f"embed them: {', '.join(f'model={name}' for name in readers)}")
    return {"vocab_size": vocab_size, **({"causal": True} if task == LANGUAGE_MODEL else {})}


def _reads_tokens(target) -> bool:
    if not isinstance(target, str) or not target.startswith(MODEL_PACKAGE):
        return False
    model = MODELS.get(target.removeprefix(MODEL_PACKAGE))
    return model is not None and "vocab_size" in inspect.signature(model).parameters


MEMORY_SHARE = 0.5  # of this machine's memory that a model's float32 weights may take (gradients and optimizer state need the rest)


def check_size(model_cfg: DictConfig, shapes: dict) -> None:
    """One of dl's own models is first built on the meta device (no memory, no time) and its
    parameters counted: settings that ask for more weights than this machine can hold
    (model.hidden=[100000,100000] is 40 GB) are one line, not a crash or the OOM killer."""
    if str(model_cfg._target_).rsplit(".", 1)[-1] not in MODELS or not str(model_cfg._target_).startswith("dlcli."):
        return  # a user's class may not build on the meta device
    with torch.device("meta"):
        probe = call_target(model_cfg, "model", expect=nn.Module, expect_name="torch.nn.Module", **shapes)
    count = sum(p.numel() for p in probe.parameters())
    needed, available = count * 4, memory_bytes()
    if available and needed > MEMORY_SHARE * available:
        settings = ", ".join(f"model.{k}={show(v)}" for k, v in OmegaConf.to_container(model_cfg, resolve=True).items()
                             if k not in ("_target_", *GROUPS["model"].own))
        shape = "x".join(str(size) for size in shapes["input_shape"])  # the data's side of the count (an MLP's first layer grows with it)
        raise UserError(f"{model_cfg._target_} with {settings} on inputs of shape {shape} has {count:,} parameters "
                        f"({needed / 2**30:.1f} GB in float32), more than this machine's {available / 2**30:.1f} GB of "
                        "memory can train: choose smaller settings or smaller inputs (data.resize for images)")


def start_weights_of(model_cfg: DictConfig) -> str | None:
    """model.weights for a model whose constructor does not take weights itself."""
    weights = model_cfg.get("weights")
    if weights is None or not model_cfg.get("_target_") or _takes_weights(model_cfg):
        return None
    return str(weights)


def _takes_weights(model_cfg: DictConfig) -> bool:
    """Does the model's own constructor take `weights` (torchvision's do, from a file or a name)?"""
    return _takes(model_cfg, "weights")


def _takes(model_cfg: DictConfig, argument: str) -> bool:
    """Does the model's own constructor take this argument by name?"""
    if not model_cfg.get("_target_"):
        return False
    target = resolve_target(str(model_cfg._target_), "model")
    try:
        return argument in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def load_start_weights(model: nn.Module, source: str) -> str:
    """An earlier run's best checkpoint (or a checkpoint file) into `model`; returns what was done,
    for the run's notes. The same architecture is needed; the head may have another class count."""
    state, path = read_weights(source)
    reshaped = load_weights_into(model, state, head_prefix(model), source)
    note = f"started from the weights of {path}"
    if reshaped:
        note += f"; {', '.join(reshaped)} had another shape (a head for another class count) and start fresh"
    return note


def freeze(model: nn.Module, prefixes: list[str]) -> None:
    """Stop gradients for parameters under these module names (e.g. `features`, `net.1`)."""
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        matched = [n for n in names if n == prefix or n.startswith(f"{prefix}.")]
        if not matched:
            modules = sorted({n.rsplit(".", 1)[0] for n in names})
            raise UserError(f"model.freeze lists '{prefix}', which matches no module: modules with parameters are {', '.join(modules)}")
        for name, param in model.named_parameters():
            if name in matched:
                param.requires_grad_(False)


def _dry_run(model: nn.Module, name: str, input_shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    was_training = model.training
    model.eval()  # batch norm cannot take a batch of one in training mode
    try:
        with torch.no_grad():
            out = model(example_input(model, input_shape, _device_of(model)))
    except RuntimeError as exc:  # torch's shape errors; anything else is a bug and keeps its traceback
        shape = "x".join(map(str, input_shape))
        raise UserError(f"{name} cannot take input of shape {shape}: {first_line(exc)}") from None
    finally:
        model.train(was_training)
    if tuple(out.shape[1:]) != tuple(expected):
        raise UserError(f"{name} returns shape {tuple(out.shape[1:])} per sample; the data needs {tuple(expected)}")


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def check_model_reads_sequences(cfg: DictConfig) -> None:
    """data.as_sequence shapes each row as a 1 x columns signal, which only sequence models read;
    any other of dl's models flattens it back (or refuses it). A class of the user's own may read
    sequences: it is not judged."""
    if not cfg.data.get("as_sequence"):
        return
    target = str(cfg.model.get("_target_") or "")
    if not target.startswith(MODEL_PACKAGE):
        return
    model = MODELS.get(target.removeprefix(MODEL_PACKAGE))
    if model is not None and not getattr(model, "reads_sequences", False):
        readers = sorted({name for name, settings in config_options("model") if _reads_sequences(settings.get("_target_"))})
        chosen = option_name("model", OmegaConf.to_container(cfg.model, resolve=True))
        raise UserError(f"data.as_sequence=true shapes each row as a sequence for sequence models "
                        f"({', '.join(readers)}), and model={chosen} does not read one: drop it, or choose one of them")


def _reads_sequences(target) -> bool:
    if not isinstance(target, str) or not target.startswith(MODEL_PACKAGE):
        return False
    return bool(getattr(MODELS.get(target.removeprefix(MODEL_PACKAGE)), "reads_sequences", False))
