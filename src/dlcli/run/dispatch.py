"""`dl train` as a library function: which kind of training a config asks for, and nothing else.

resume=RUN continues a run (dlcli.run.resume; a k-fold parent: dlcli.run.kfold), refit=RUN trains a run's
settings again on train+val (dlcli.run.refit), split.kfold=K trains one model per fold (dlcli.run.kfold),
anything else is one new run (dlcli.run.single). Nothing in dlcli imports this module but the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig

from dlcli.engine.callbacks import Callback
from dlcli.engine.progress import Reporter
from dlcli.errors import UserError
from dlcli.run.single import TrainResult  # noqa: F401  (part of the entry point's signature)


def train(
    cfg: DictConfig,
    overrides: Sequence[str] = (),
    reporter: Reporter | None = None,
    run_dir: Path | None = None,
    evaluate_test: bool = True,
    callbacks: Sequence[Callback] = (),
    trust: Sequence[str] = (),
) -> TrainResult:
    """Train the composed config in a new run directory (or continue one with resume=RUN_DIR).

    With split.kfold=K this trains K models, one per fold, under one parent run (dlcli.run.kfold).
    `run_dir` names an existing empty directory to use instead of a new timestamped one.
    `callbacks` join the config's own (`callbacks:`) after the built-in ones; sweeps pass
    evaluate_test=False (trials never look at the test split) and a pruner. `trust` names modules
    (or dotted targets) that a saved config read back (resume=, refit=) may build besides what
    dlcli.trust.targets accepts by name.
    """
    reporter = reporter or Reporter(show_progress=bool(cfg.trainer.progress))
    if cfg.get("resume"):
        if cfg.get("refit"):
            raise UserError("resume= and refit= do not go together: resume continues a run, refit starts a new one")
        from dlcli.rundir.directory import is_kfold_parent

        if is_kfold_parent(cfg.resume):
            from dlcli.run.kfold import resume_kfold

            return resume_kfold(cfg, overrides, reporter, callbacks, trust)
        from dlcli.run.resume import resume

        return resume(cfg, overrides, reporter, callbacks, trust)
    facts, check = {}, None
    if cfg.get("refit"):
        from dlcli.run.refit import refit_config, same_test_split

        cfg, facts = refit_config(cfg, overrides, trust)
        check = same_test_split(Path(facts["refit_of"]))
    from dlcli.engine.distributed import launched_by_torchrun
    from dlcli.run.launch import devices_of, train_distributed

    several = devices_of(cfg) > 1 or launched_by_torchrun()
    if cfg.split.get("kfold") is not None and cfg.split.get("fold") is None:
        if several:
            raise UserError(f"split.kfold with trainer.devices={devices_of(cfg)}: k-fold trains its folds in one process; "
                            "use trainer.devices=1, or train one fold at a time with split.fold=N")
        from dlcli.run.kfold import train_kfold

        return train_kfold(cfg, overrides, reporter, callbacks)
    if several:
        return train_distributed(cfg, overrides, reporter, evaluate_test, callbacks, facts, check, run_dir)
    from dlcli.run.single import new_run

    return new_run(cfg, overrides, reporter, run_dir, evaluate_test, callbacks, facts, check)
