"""`dl sweep grid|random|tpe`: hyper-parameter search that is parallel, resumable and never peeks
at the test split. Every kind runs through one Optuna study (dlcli.sweep.study) kept in the sweep
directory: the sweep asks it for each trial when a slot is free, trials report their epochs to it
(pruning), and each outcome is told to it. Trials are ordinary run directories under
<sweep>/trials/<NNN>/; results are saved after every trial, so killing the sweep loses no finished
trial and --resume runs only the rest, in the same study."""

from dlcli.sweep.plan import SweepPlan, SweepResult, SweepSettings  # noqa: F401  (the package's public names)
from dlcli.sweep.run import run_sweep, sweep  # noqa: F401
