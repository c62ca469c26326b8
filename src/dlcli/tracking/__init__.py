"""Loggers: where a run's numbers go besides metrics.csv (logger=tensorboard, logger=mlflow).

`base` holds what every logger shares; each backend is one module of this package, found here by
walking the package, so adding a backend is adding its file (and its conf/logger/ YAML).
"""

from __future__ import annotations

import importlib
import pkgutil

from dlcli.tracking.base import (  # noqa: F401  (the package's public names)
    LoggedRun,
    ParentRun,
    RunLogger,
    as_new_run,
    build_loggers,
    close_parent_runs,
    hand_pictures,
    open_parent_runs,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"base", "plots"}:  # plots draws figures; every other module is a logger
        importlib.import_module(f"{__name__}.{_module.name}")
