"""The modalities dl knows (dlcli.data.modality): each registers itself with `@register` in its own
module of this package, and every module here is imported with dlcli.data, so a record's `kind`
finds its modality. Adding a modality is adding its module (and its data set's YAML); no list to edit."""

from __future__ import annotations

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
