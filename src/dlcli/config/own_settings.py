"""The settings dl reads itself in each component group, besides what the component's class takes:
data.standardize, model.freeze, optim.head_lr, sched.interval, ... Declared once, with their
constraints, for the code that reads them and for the messages that name them (a key dl reads
that an option's YAML does not list is added with `+`)."""

from __future__ import annotations

from dlcli.config.constraints import BOOLEAN, NON_NEGATIVE, POSITIVE, Anything, Interval, ListOf, Options, Text, nullable

# data settings that act on one kind of data set only (a one-line error on the other: dlcli.data;
# never suggested for the other: dlcli.config.advice)
TABLE_ONLY_KEYS = ("standardize", "standardize_target", "as_sequence")
IMAGE_ONLY_KEYS = ("normalize", "augment", "num_workers", "cache", "cache_dir")  # data.resize also fits image-shaped tables


def data_setting_of_the_other_kind(data_target, leaf: str) -> str | None:
    """"tables" or "image sets" when data.`leaf` applies only to that kind and `data_target` is
    one of dl's own data sets of the other kind (a user's own set is not judged here)."""
    target = str(data_target or "")
    kind = "images" if target.startswith("dlcli.data.images.") else "tables" if target.startswith("dlcli.data.sources.") else None
    if kind == "images" and leaf in TABLE_ONLY_KEYS:
        return "tables"
    if kind == "tables" and leaf in IMAGE_ONLY_KEYS:
        return "image sets"
    return None

OWN_SETTINGS = {
    "data": {
        "standardize": BOOLEAN, "standardize_target": BOOLEAN, "as_sequence": BOOLEAN,
        "target_transform": Options(("none", "log", "log1p")),
        "resize": nullable(Interval(1, 4096, integer=True)), "num_workers": Interval(0, 256, integer=True),
        "normalize": Anything(),  # dataset | computed | none | {mean, std}: read by dlcli.data.image_data
        "augment": Anything(),  # each setting declared in dlcli.data.transforms
        "cache": Options(("auto", "memory", "none")),  # a folder of images decoded once: dlcli.data.image_cache
        "cache_dir": nullable(Text(non_empty=True)),  # where it is kept (null: $XDG_CACHE_HOME/dl): dlcli.data.cache_store
    },
    "model": {
        "init": Anything(),  # a scheme's name or {scheme, settings}: dlcli.models.init
        "freeze": ListOf(Text(non_empty=True)),
        "weights": nullable(Text(non_empty=True)),
        "train_with": ListOf(Text(non_empty=True)),  # the option's own training defaults (dlcli.config.recipes)
    },
    "optim": {"decay_bias_and_norm": BOOLEAN, "head_lr": nullable(POSITIVE), "l1": NON_NEGATIVE, "scale_lr_with_batch": BOOLEAN},
    "sched": {"interval": Options(("epoch", "step")), "planned_over_epochs": BOOLEAN},
}
