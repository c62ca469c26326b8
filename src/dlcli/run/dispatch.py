"""`dl train` as a library function: which kind of training a config asks for, and nothing else.

resume=RUN continues a run (dlcli.run.resume; a k-fold parent: dlcli.run.kfold), refit=RUN trains a run's
settings again on train+val (dlcli.run.refit), split.kfold=K trains one model per fold (dlcli.run.kfold),
anything else is one new run (dlcli.run.single). Nothing in dlcli imports this module but the CLI.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

from omegaconf import OmegaConf

from dlcli.engine.distributed import launched_by_torchrun
from dlcli.errors import UserError
from dlcli.run.kfold import resume_kfold, train_kfold
from dlcli.run.launch import devices_of, train_distributed
from dlcli.run.refit import refit_request
from dlcli.run.request import RunRequest
from dlcli.run.resume import resume
from dlcli.run.single import TrainResult, new_run
from dlcli.rundir.directory import is_kfold_parent


def with_data_path_resolved(request: RunRequest) -> RunRequest:
    """A new run records its data.path absolute when it was given relative and names a file or
    folder here: config.yaml is what `dl eval`, `dl predict`, resume and refit read it from, and
    they may run in any directory (cd RUN && dl eval . read book.txt from inside the run). A path
    that does not exist here stays as typed, so the error names what was typed."""
    path = OmegaConf.select(request.config, "data.path", default=None)
    if not isinstance(path, str) or not path or "://" in path or Path(path).expanduser().is_absolute():
        return request
    if not Path(path).expanduser().exists():
        return request
    config = copy.deepcopy(request.config)
    config.data.path = str(Path(path).expanduser().resolve())
    return replace(request, config=config)


def train(request: RunRequest) -> TrainResult:
    """Train the request's config in a new run directory (or continue one with resume=RUN_DIR).

    With split.kfold=K this trains K models, one per fold, under one parent run (dlcli.run.kfold);
    with refit=RUN, the run's settings again on train+val (dlcli.run.refit); with trainer.devices=N,
    one run on N processes (dlcli.run.launch).
    """
    cfg = request.config
    if cfg.get("resume"):
        if cfg.get("refit"):
            raise UserError("resume= and refit= do not go together: resume continues a run, refit starts a new one")

        if is_kfold_parent(cfg.resume):
            return resume_kfold(request)

        return resume(request)
    if cfg.get("refit"):
        request = refit_request(request)
    request = with_data_path_resolved(request)
    cfg = request.config

    several = devices_of(cfg) > 1 or launched_by_torchrun()
    if cfg.split.get("kfold") is not None and cfg.split.get("fold") is None:
        if several:
            raise UserError(f"split.kfold with trainer.devices={devices_of(cfg)}: k-fold trains its folds in one process; "
                            "use trainer.devices=1, or train one fold at a time with split.fold=N")

        return train_kfold(request)
    if several:
        return train_distributed(request)

    return new_run(request)
