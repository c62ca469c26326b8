"""Settings that would have no effect in the run they are given to. A setting the run quietly ignores
is a result the user believes in and did not get (`+data.as_sequence=true` with an MLP, label
smoothing on a regression, a decay rate with no schedule), so it is a one-line error before anything
is built. A setting that only waits on a switch that is off (early stopping's patience while early
stopping is off) is harmless, and a sweep may turn the switch on in another trial: a note in the run
log says it, instead of an error.

Whether the model reads the sequences `data.as_sequence` makes is asked of the model
(dlcli.models.build.check_model_reads_sequences). The settings a data set's kind decides (image settings on a table, target scaling on classes) are
checked where the data is known (dlcli.data.prepare_data).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from dlcli.config.compose import config_options
from dlcli.config.constraints import show
from dlcli.config.schema import TrainerSchema
from dlcli.errors import UserError

# component groups whose option may have no class (sched=none, loss=auto): settings under them act on nothing
TARGETLESS_GROUPS = {"sched": "sched=none keeps a constant rate", "loss": "loss=auto takes the task's usual loss"}


def check_settings_take_effect(cfg: DictConfig) -> None:
    """The settings the config alone shows would be ignored: a one-line error naming the first."""
    _settings_of_no_component(cfg)


def check_settings_fit_the_task(cfg: DictConfig, task: str) -> None:
    """The settings the data's task shows would be ignored (known once the data is read)."""
    smoothing = float(cfg.trainer.get("label_smoothing") or 0)
    if smoothing and task != "classification":
        raise UserError(f"trainer.label_smoothing={smoothing:g} spreads target mass over classes, and this run is a {task}: drop it")


def dormant_settings(cfg: DictConfig) -> list[str]:
    """Notes for the run log: settings changed from their defaults that wait on a switch that is off."""
    trainer, defaults = cfg.trainer, TrainerSchema()
    notes = []
    early = trainer.get("early_stopping") or {}
    if not early.get("enabled", False):
        changed = [f"trainer.early_stopping.{key}={show(early.get(key))}" for key in ("patience", "min_delta")
                   if key in early and early.get(key) != getattr(defaults.early_stopping, key)]
        if changed:
            notes.append(f"{' and '.join(changed)} {'have' if len(changed) > 1 else 'has'} no effect while "
                         "trainer.early_stopping.enabled=false")
    waiting = (("grad_clip_mode", "trainer.grad_clip is null (no clipping)", trainer.get("grad_clip") is None),
               ("diagnostics_every", "trainer.diagnostics=false", not trainer.get("diagnostics", True)),
               ("max_restarts", "the run has one process (restarts are the launcher's, trainer.devices>1)",
                int(trainer.get("devices", 1)) == 1))
    for key, switch, off in waiting:
        if off and key in trainer and trainer.get(key) != getattr(defaults, key):
            notes.append(f"trainer.{key}={show(trainer.get(key))} has no effect while {switch}")
    return notes


def _settings_of_no_component(cfg: DictConfig) -> None:
    """sched=none and loss=auto build nothing: a setting added under them acts on nothing."""
    for group, instead in TARGETLESS_GROUPS.items():
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or node.get("_target_") is not None:
            continue
        for key in node.keys():
            if key == "_target_":
                continue
            value = OmegaConf.to_container(node, resolve=True)[key]
            takers = [name for name, settings in config_options(group) if key in settings and settings.get("_target_")]
            choose = f"choose a {group} that takes it ({', '.join(f'{group}={t}' for t in takers[:4])})" if takers else \
                f"choose a {group} with {group}=NAME"
            raise UserError(f"{group}.{key}={show(value)} has no effect: this run's {group} has no class to take it ({instead}); "
                            f"{choose}, or drop it")
