"""The models dl knows by name: each model class registers itself in its own module with
`@register`, and `dlcli.models.<Name>` finds it there (a conf/model option names it as its
`_target_`). Adding a model is adding its module and its YAML; no list to edit."""

from __future__ import annotations

MODELS: dict[str, type] = {}


def register(cls: type) -> type:
    if cls.__name__ in MODELS and MODELS[cls.__name__] is not cls:
        raise RuntimeError(f"two models are named {cls.__name__}: {MODELS[cls.__name__].__module__} and {cls.__module__}")
    MODELS[cls.__name__] = cls
    return cls
