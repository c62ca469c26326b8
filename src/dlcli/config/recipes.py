"""The training defaults a model option or a recipe brings (`model.train_with`), and a recipe
(`experiment=NAME`) with the model it was made for.

A recipe sets a whole experiment: data, model, optimizer, epochs. Some of its settings suit any
model it lets the user choose (Adam, 5 folds, the log-RMSE metric); others were tuned for its own
model (a rate of 0.05 for a linear regression, 0.9 for a sigmoid LeNet). A recipe declares the
latter in its model block as `model.train_with` (as a model option declares its own training
defaults), and its `model:` block holds its settings for that model. When the user chooses another
model (`experiment=house_prices_kfold model=mlp`), both give way: the chosen model comes as its own
option file makes it, with its own training defaults, which yield to what the user typed and to
what the recipe set for every model (dlcli.config.compose.compose); the run log says what gave way
(dlcli.experiment).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from omegaconf import DictConfig, ListConfig

from dlcli.config.constraints import show
from dlcli.errors import UserError


@dataclass(frozen=True)
class Recipe:
    name: str
    made_for: str | None  # the model option the recipe chooses
    choices: tuple[str, ...] = ()  # the groups it chooses (optim, data, ...)
    settings: tuple[str, ...] = ()  # the dotted keys it sets, its model block aside
    tuned: tuple[str, ...] | None = None  # its model.train_with: settings tuned for made_for (None: not declared)
    model_block: dict = field(default_factory=dict)  # its settings for its model


def chosen_recipe(overrides: Sequence[str], experiments: dict) -> Recipe | None:
    """The recipe the overrides choose (experiment=NAME), from `experiments` (option -> its YAML, read)."""
    name = typed_choices(overrides).get("experiment")
    content = experiments.get(name) if name else None
    return read_recipe(name, content) if isinstance(content, dict) else None


def typed_choices(overrides: Sequence[str]) -> dict[str, str]:
    """group -> option for the overrides that choose one (`model=mlp`, `experiment=house_prices_kfold`)."""
    return {_key(o): str(o).split("=", 1)[1] for o in overrides
            if "=" in str(o) and "." not in _key(o) and not str(o).startswith("~")}


def _key(override: str) -> str:
    """The key an override sets (as dlcli.config.compose.override_key, which imports this module)."""
    return str(override).split("=", 1)[0].lstrip("+~")


def read_recipe(name: str, content: dict) -> Recipe:
    """The recipe in an experiment option's YAML (`content`, as read)."""
    choices, made_for = [], None
    for entry in content.get("defaults") or []:
        if not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            group = str(key).replace("override", "").strip().lstrip("/").split("@")[0]
            choices.append(group)
            if group == "model":
                made_for = str(value)
    block = content.get("model") if isinstance(content.get("model"), dict) else {}
    tuned = block.get("train_with")
    settings = tuple(key for key in _dotted(content) if key.split(".")[0] not in ("defaults", "model"))
    return Recipe(name, made_for, tuple(choices), settings, tuple(tuned) if isinstance(tuned, list) else None, block)


def swapped_to(recipe: Recipe | None, choices: dict[str, str]) -> str | None:
    """The model the user chose (`choices`: typed_choices) instead of the recipe's, or None when the recipe's model stands."""
    chosen = choices.get("model")
    if recipe is None or recipe.made_for is None or chosen is None or chosen == recipe.made_for:
        return None
    return chosen


def gave_way(recipe: Recipe) -> list[str]:
    """What of the recipe gives way when its model is swapped: its tuned training settings and its
    settings for its model, as the user would type them."""
    given = list(recipe.tuned or ())
    given += [f"model.{key}={show(value)}" for key, value in recipe.model_block.items() if key != "train_with"]
    return given


def _dotted(node: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        if isinstance(value, dict) and key != "defaults":
            keys += _dotted(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


TRAIN_WITH = "train_with"  # a model option's own training defaults: model.train_with=[optim.lr=0.1, ...]
TRAIN_WITH_KEYS = ("optim", "sched", "trainer.epochs", "trainer.batch_size", "trainer.grad_clip")  # what they may set


def model_training_defaults(cfg: DictConfig, overrides: Sequence[str], recipe: Recipe | None = None,
                            swapped: bool = False) -> list[str]:
    """The overrides a model option brings in its `train_with` list (a rate, an optimizer, epochs)
    that the user left to it: a value (`optim.lr=0.1`) is dropped when the user typed its key, a
    key under it, or chose its group (`optim=adam` keeps the model's SGD rate off Adam); a choice
    (`optim=adam`) only when the user chose that group (`optim.lr=1e-4` then sets Adam's rate).
    Under a recipe (dlcli.config.recipes) the list is the recipe's, the settings it tuned for its model (a
    recipe that declares none sets its training itself: nothing is brought); when the user swapped
    the recipe's model, it is the chosen model's own, which yields to what the recipe set for every
    model as to what the user typed. Only optimizer, schedule and a few trainer settings may be
    brought; they compose like typed overrides, so config.yaml records them (resume and sweeps
    repeat exactly)."""
    model = cfg.get("model")
    wanted = model.get(TRAIN_WITH) if isinstance(model, DictConfig) else None
    if not wanted:
        return []
    typed = [_key(o).lstrip("+~") for o in overrides]
    if "experiment" in typed and (recipe is None or (not swapped and recipe.tuned is None)):
        return []  # a recipe that declares no tuned settings sets its training itself
    if recipe is not None and swapped:
        typed += [*recipe.choices, *recipe.settings]
    where = f"model.{TRAIN_WITH}"
    if not isinstance(wanted, (list, ListConfig)) or not all(isinstance(entry, str) for entry in wanted):
        raise UserError(f"{where} must be a list of overrides such as [optim.lr=0.1]")
    brought = []
    for entry in wanted:
        key = _key(entry)
        if "=" not in entry or not key.startswith(TRAIN_WITH_KEYS) or "_target_" in key or "${" in entry:
            raise UserError(f"{where} holds {entry!r}: it may only set {', '.join(TRAIN_WITH_KEYS)} (key=value)")
        group = key.split(".", 1)[0]
        # a choice (optim=adam) yields only to another choice: `optim.lr=1e-4` then sets Adam's rate;
        # a value (optim.lr=0.1) yields to that key, a key under it, or another optimizer
        if any(t == key or t.startswith(key + ".") or t == group for t in typed) if "." in key else key in typed:
            continue
        brought.append(entry)
    return brought
