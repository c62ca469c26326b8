"""Models: each conf/model option names one with `_target_` (dlcli.models.<Name>, or any nn.Module).

A model class takes `input_shape` and `num_outputs` (both from the data) plus its own settings, and
registers itself with `@register` (dlcli.models.registry) in its own module; every module of this
package is imported here, so `dlcli.models.<Name>` finds each. `build_model` (dlcli.models.build)
supplies the data's shapes, the init scheme, start weights and freezing, and checks the data fits.
"""

from __future__ import annotations

import importlib
import pkgutil

from dlcli.models.build import build_model  # noqa: F401  (the package's public names)
from dlcli.models.registry import MODELS

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def __getattr__(name: str):
    if name in MODELS:
        return MODELS[name]
    raise AttributeError(f"module {__name__} has no attribute {name}")


def __dir__():
    return sorted([*globals(), *MODELS])
