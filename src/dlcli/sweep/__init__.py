"""`dl sweep grid|random|tpe`: hyper-parameter search that is parallel, resumable and never peeks
at the test split. Every kind runs through one Optuna study (dlcli.sweep.study) kept in the sweep
directory: the sweep asks it for each trial when a slot is free, trials report their epochs to it
(pruning), and each outcome is told to it. Trials are ordinary run directories under
<sweep>/trials/<NNN>/; results are saved after every trial, so killing the sweep loses no finished
trial and --resume runs only the rest, in the same study."""

import importlib

# The package's public names, imported when first asked for: `dl --help` reads the kinds table
# (dlcli.sweep.kinds) and must not pay for pandas and Optuna, which running a sweep needs.
_PUBLIC = {"SweepPlan": "plan", "SweepResult": "plan", "SweepSettings": "plan", "run_sweep": "run", "sweep": "run"}


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__} has no attribute {name}")
