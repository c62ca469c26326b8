"""A recipe (`experiment=NAME`) and the model it was made for.

A recipe sets a whole experiment: data, model, optimizer, epochs. Some of its settings suit any
model it lets the user choose (Adam, 5 folds, the log-RMSE metric); others were tuned for its own
model (a rate of 0.05 for a linear regression, 0.9 for a sigmoid LeNet). A recipe declares the
latter in its model block as `model.train_with` (as a model option declares its own training
defaults), and its `model:` block holds its settings for that model. When the user chooses another
model (`experiment=house_prices_kfold model=mlp`), both give way: the chosen model comes as its own
option file makes it, with its own training defaults, which yield to what the user typed and to
what the recipe set for every model (dlcli.config.compose); the run log says what gave way
(dlcli.experiment).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlcli.constraints import show


@dataclass(frozen=True)
class Recipe:
    name: str
    made_for: str | None  # the model option the recipe chooses
    choices: tuple[str, ...] = ()  # the groups it chooses (optim, data, ...)
    settings: tuple[str, ...] = ()  # the dotted keys it sets, its model block aside
    tuned: tuple[str, ...] | None = None  # its model.train_with: settings tuned for made_for (None: not declared)
    model_block: dict = field(default_factory=dict)  # its settings for its model


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


def swapped_to(recipe: Recipe | None, typed_choices: dict[str, str]) -> str | None:
    """The model the user chose instead of the recipe's, or None when the recipe's model stands."""
    chosen = typed_choices.get("model")
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
