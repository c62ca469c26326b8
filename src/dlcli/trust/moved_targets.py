"""Targets that moved: run directories written by an earlier dl name classes by the paths they
had then, and keep working (resume, eval, predict, export, inspect, diagnose, `dl runs`).

A saved config is mapped when it is read back (dlcli.rundir.directory.load_saved_config, dlcli.rundir.collect), before
its targets are checked for trust: the table says where each old name lives now.
"""

from __future__ import annotations

from typing import Any

# old `_target_` -> where it lives now (0.1.0 -> the layered layout)
MOVED: dict[str, str] = {
    "dlcli.engine.loggers.TensorBoardLogger": "dlcli.tracking.tensorboard.TensorBoardLogger",
    "dlcli.engine.loggers.MLflowLogger": "dlcli.tracking.mlflow.MLflowLogger",
}


def modernize(config: Any) -> Any:
    """`config` (plain containers, changed in place) with every moved `_target_` renamed."""
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "_target_" and isinstance(value, str) and value in MOVED:
                config[key] = MOVED[value]
            else:
                modernize(value)
    elif isinstance(config, list):
        for value in config:
            modernize(value)
    return config
