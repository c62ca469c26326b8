"""What a run is asked to do: one object that every way of training takes (dlcli.run.dispatch.train,
new_run, resume, train_kfold, train_distributed), instead of the same values passed one by one.

A variant is made with `dataclasses.replace`: a fold is the parent's request with the fold's config
and directory, a refit is the request with the source's config, a resumed run is the request with
the saved config and the run's directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig

from dlcli.engine.callbacks import Callback
from dlcli.engine.progress import Reporter
from dlcli.experiment import Experiment


@dataclass(frozen=True)
class RunRequest:
    """Everything a run needs besides what it builds from its config.

    `config`: the composed config (what `dl train ...` composed; with resume= or refit= it names the
    run to start from). `overrides`: the overrides as the user typed them, recorded in
    overrides.yaml, and the ones resume= and refit= check may apply. `reporter`: where the run's
    lines go (by default the console, with a progress bar when trainer.progress). `callbacks`:
    callbacks given from Python, run after the built-in ones and the config's own (`callbacks:`).
    `trust`: modules (or dotted targets) that a saved config read back (resume=, refit=) may build
    besides what dlcli.trust.targets accepts by name. `evaluate_test`: look at the test split once
    at the end (a sweep's trials never do). `run_dir`: an existing empty directory to train in (a
    sweep's trial, a k-fold's fold) instead of a new timestamped one; once a run has begun, its
    directory. `summary_facts`: written into summary.json besides what the run records itself (a
    refit's source and epochs). `check_experiment`: may refuse the built experiment, before runs/
    is touched (a refit's test split must be its source's).
    """

    config: DictConfig
    overrides: Sequence[str] = ()
    reporter: Reporter | None = None
    callbacks: Sequence[Callback] = ()
    trust: Sequence[str] = ()
    evaluate_test: bool = True
    run_dir: Path | None = None
    summary_facts: dict = field(default_factory=dict)
    check_experiment: Callable[[Experiment], None] | None = None

    def __post_init__(self) -> None:
        if self.reporter is None:  # (frozen: set once, here, as __init__ would have)
            object.__setattr__(self, "reporter", Reporter(show_progress=bool(self.config.trainer.progress)))
