"""The component groups of a config, one table: for each group whose node names a class to build
(`_target_`), the settings dl reads itself (data.standardize, model.freeze, optim.head_lr,
sched.interval, ...) with their constraints, never passed to the class; what the run passes the
class itself (a model's input_shape, an optimizer's params); and what it offers a class that takes
it (a seed for data makers). Declared once: what a call leaves out of the node's keys, what a check
asks of each value, and the messages that name them (a key dl reads that an option's YAML does not
list is added with `+`) are all read from here (dlcli.config.build)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from dlcli.config.constraints import BOOLEAN, NON_NEGATIVE, POSITIVE, Anything, Constraint, Interval, ListOf, Options, Text, nullable


@dataclass(frozen=True)
class Group:
    """One component group (data, model, ...): what of its node is dl's and what is its class's."""

    own: Mapping[str, Constraint]  # settings dl reads itself: never passed to the class
    runtime: tuple[str, ...] = ()  # what the run passes the class itself: never a config key
    runtime_when_taken: tuple[str, ...] = ()  # what the run passes a class that takes it: never a config key either
    offered: tuple[str, ...] = ()  # passed only when the class takes it
    passed_when_taken: tuple[str, ...] = ()  # own settings handed to a class that takes them itself
    filled_when_auto: tuple[str, ...] = ()  # settings the run fills in when given as auto
    optional: bool = False  # no _target_ is a choice (loss=auto, sched=none), not a mistake
    only_for: Mapping[str, str] = field(default_factory=dict)  # own setting -> the only kind of data set it acts on


GROUPS: dict[str, Group] = {
    "data": Group(
        own={
            "standardize": BOOLEAN, "standardize_target": BOOLEAN, "as_sequence": BOOLEAN,
            "target_transform": Options(("none", "log", "log1p")),
            "resize": nullable(Interval(1, 4096, integer=True)), "num_workers": Interval(0, 256, integer=True),
            "normalize": Anything(),  # dataset | computed | none | {mean, std}: read by dlcli.data.image_data
            "augment": Anything(),  # each setting declared in dlcli.data.transforms
            "cache": Options(("auto", "memory", "none")),  # a folder of images decoded once: dlcli.data.image_cache
            "cache_dir": nullable(Text(non_empty=True)),  # where it is kept (null: $XDG_CACHE_HOME/dl): dlcli.data.cache_store
            # text (dlcli.data.vocab): characters or words; the vocabulary's cap, counting <pad> and <unk>, so at
            # least two tokens of the text's own; a text column's tokens kept per row (null: its longest train row)
            "tokens": nullable(Options(("char", "word"))),
            "vocab_size": nullable(Interval(4, 10_000_000, integer=True)),
            "max_len": nullable(Interval(1, 1_000_000, integer=True)),
        },
        offered=("seed",),  # data makers draw from the run's seed
        passed_when_taken=("tokens",),  # a text source tokenizes itself (dlcli.data.text): its split counts tokens
        # a one-line error on the other kind (dlcli.data), never suggested for it (dlcli.config.advice);
        # data.resize also fits image-shaped tables
        only_for={**dict.fromkeys(("standardize", "standardize_target", "as_sequence"), "tables"),
                  **dict.fromkeys(("normalize", "augment", "num_workers", "cache", "cache_dir"), "image sets")},
    ),
    "model": Group(
        own={
            "init": Anything(),  # a scheme's name or {scheme, settings}: dlcli.models.init
            "freeze": ListOf(Text(non_empty=True)),
            "weights": nullable(Text(non_empty=True)),
            "train_with": ListOf(Text(non_empty=True)),  # the option's own training defaults (dlcli.config.recipes)
        },
        runtime=("input_shape", "num_outputs"),  # from the data
        runtime_when_taken=("vocab_size", "causal"),  # token data's vocabulary; causal for a language model (dlcli.models.build)
        passed_when_taken=("weights",),  # torchvision's models load their own (a file or a name); dl's start from a run
    ),
    "loss": Group(own={}, offered=("class_weights",), optional=True),  # only cross_entropy takes them (from loss.weight)
    "optim": Group(
        own={"decay_bias_and_norm": BOOLEAN, "head_lr": nullable(POSITIVE), "l1": NON_NEGATIVE, "scale_lr_with_batch": BOOLEAN},
        runtime=("params",),  # the model's parameter groups (dlcli.engine.optim)
    ),
    "sched": Group(
        own={"interval": Options(("epoch", "step")), "planned_over_epochs": BOOLEAN},  # when it steps; whether a run can go on
        runtime=("optimizer",),
        # batches per epoch (one-cycle), each parameter group's own rate, the monitor's direction: dlcli.engine.optim
        filled_when_auto=("steps_per_epoch", "max_lr", "base_lr", "mode"),
        optional=True,
    ),
}

OWN_SETTINGS = {name: group.own for name, group in GROUPS.items() if group.own}


def passed_by_the_run(group: str) -> tuple[str, ...]:
    """The arguments of the group's class that the run supplies (never the user's to set or to be offered)."""
    declared = GROUPS.get(group)
    return (*declared.runtime, *declared.runtime_when_taken) if declared is not None else ()
TABLE_ONLY_KEYS = tuple(key for key, kind in GROUPS["data"].only_for.items() if kind == "tables")
IMAGE_ONLY_KEYS = tuple(key for key, kind in GROUPS["data"].only_for.items() if kind == "image sets")


# dl's own data set makers, by module, and the kind of data set each makes: a setting only_for one
# kind is refused, and never suggested, for the others (a series or a text scales itself)
KIND_OF_DATA_MODULE = {"dlcli.data.images.": "image sets", "dlcli.data.sources.": "tables",
                       "dlcli.data.series.": "series", "dlcli.data.text.": "texts"}


def data_setting_of_the_other_kind(data_target, leaf: str) -> str | None:
    """"tables" or "image sets" when data.`leaf` applies only to that kind and `data_target` is
    one of dl's own data sets of the other kind (a user's own set is not judged here)."""
    target = str(data_target or "")
    kind = next((kind for module, kind in KIND_OF_DATA_MODULE.items() if target.startswith(module)), None)
    only = GROUPS["data"].only_for.get(leaf)
    return only if kind is not None and only not in (None, kind) else None
