"""Check config values at the boundary, with messages that name the bad value and the right kind."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from dlcli.config.constraints import Options, check
from dlcli.config.metric_names import TASK_METRICS
from dlcli.config.schema import CONSTRAINTS
from dlcli.errors import UserError


def _choice(key: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"{key}={value} is not valid: choose one of {', '.join(map(str, choices))}")


def validate_config(cfg: DictConfig, saved: bool = False) -> None:
    """Every value of the root, trainer and split against its declared constraint
    (dlcli.config.schema.CONSTRAINTS), then the relations between settings. `saved`: the config of
    a run that exists (eval, resume): the judgements of a new run's plan (NEW_RUN_RELATIONS) were
    made when it was trained, by the rules of that day, and do not shut the run out later."""
    for key, constraint in CONSTRAINTS.items():
        node, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, node) if node else cfg
        if isinstance(parent, DictConfig) and leaf in parent:
            value = OmegaConf.select(cfg, key)
            check(key, OmegaConf.to_container(value) if OmegaConf.is_config(value) else value, constraint)
    for relation in RELATIONS if saved else (*RELATIONS, *NEW_RUN_RELATIONS):
        relation(cfg)


def _val_and_test_leave_training_rows(cfg: DictConfig) -> None:
    val, test = float(cfg.split.val), float(cfg.split.test)
    if val + test >= 1:
        raise UserError(f"split.val={val:g} and split.test={test:g} leave no rows to train on: they must add up to less than 1")


def _fold_within_kfold(cfg: DictConfig) -> None:
    kfold, fold = cfg.split.get("kfold"), cfg.split.get("fold")
    if fold is not None and (kfold is None or fold > kfold):
        raise UserError(f"split.fold={fold} must be between 1 and split.kfold={kfold}" if kfold else
                        f"split.fold={fold} needs split.kfold=K (the number of folds)")


def _epoch_counts_within_epochs(cfg: DictConfig) -> None:
    """Epochs the user gave a schedule (a milestone, a step size) must fall inside the run: one past
    its end would never lower the rate. Shares of the run (0.5) always fit; a schedule that steps
    every batch counts batches, which the run checks when it knows them."""
    sched = cfg.get("sched") or {}
    if not sched.get("_target_") or sched.get("interval", "epoch") != "epoch":
        return
    epochs = cfg.trainer.epochs
    milestones = sched.get("milestones")
    if isinstance(milestones, Sequence) and not isinstance(milestones, str):
        late = [m for m in milestones if _whole(m) and m >= epochs]
        if late:
            raise UserError(f"sched.milestones={list(milestones)} lowers the rate at epoch {late[0]}, and the run has "
                            f"trainer.epochs={epochs}: give milestones below {epochs}, or shares of the run such as [0.5, 0.75]")
    step_size = sched.get("step_size")
    if _whole(step_size) and step_size >= epochs:
        raise UserError(f"sched.step_size={step_size} lowers the rate every {step_size} epochs, and the run has "
                        f"trainer.epochs={epochs}, so it never would: give a step size below {epochs}, or a share of the run such as 0.5")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sched_interval(cfg: DictConfig) -> None:
    if (cfg.get("sched") or {}).get("_target_"):
        check("sched.interval", cfg.sched.get("interval", "epoch"), Options(("epoch", "step")))
        if cfg.sched.get("interval") == "step" and str(cfg.sched._target_).endswith("ReduceLROnPlateau"):
            # it steps on the validation metric, which exists once an epoch
            raise UserError("sched.interval=step cannot apply to sched=plateau: it lowers the rate on the validation metric, "
                            "measured once an epoch; drop it")


# relations between settings, checked after each value is (a function raises UserError)
RELATIONS = (_val_and_test_leave_training_rows, _fold_within_kfold, _sched_interval)
# judgements of a plan, made when a run starts: a run trained before sched.step_size past the run
# was refused (a schedule that never acted) still evaluates, and resumes as it was
NEW_RUN_RELATIONS = (_epoch_counts_within_epochs,)


def metric_for(cfg: DictConfig, task: str) -> str:
    """The task metric reported per epoch: trainer.metric, or the task's first (accuracy, rmse)."""
    metric = cfg.trainer.get("metric", "auto")
    if metric == "auto":
        return TASK_METRICS[task][0]
    _choice("trainer.metric", metric, ("auto", *TASK_METRICS[task]))
    return metric


def monitor_for(cfg: DictConfig, task: str) -> str:
    """The validation metric that picks the best checkpoint and drives early stopping."""
    metric = metric_for(cfg, task)
    allowed = ("val_loss", f"val_{metric}")
    monitor = cfg.trainer.monitor
    if monitor == "auto":
        return f"val_{metric}"
    _choice("trainer.monitor", monitor, ("auto", *allowed))
    return monitor
