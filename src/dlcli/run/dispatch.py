"""`dl train` as a library function: which kind of training a config asks for, and nothing else.

resume=RUN continues a run (dlcli.run.resume; a k-fold parent: dlcli.run.kfold), refit=RUN trains a run's
settings again on train+val (dlcli.run.refit), split.kfold=K trains one model per fold (dlcli.run.kfold),
anything else is one new run (dlcli.run.single). Nothing in dlcli imports this module but the CLI.
"""

from __future__ import annotations

from dlcli.engine.distributed import launched_by_torchrun
from dlcli.errors import UserError
from dlcli.run.kfold import resume_kfold, train_kfold
from dlcli.run.launch import devices_of, train_distributed
from dlcli.run.refit import refit_request
from dlcli.run.request import RunRequest
from dlcli.run.resume import resume
from dlcli.run.single import TrainResult, new_run
from dlcli.rundir.directory import is_kfold_parent


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
