"""Build everything a run needs from a composed config: device, data, model, optimizer, session.

`train`, `eval` and `resume` all go through `build_experiment`, so they see the same split, the
same model and the same initialization for the same config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dlcli.config.compose import option_name
from dlcli.data import PreparedData, prepare_data
from dlcli.engine.callbacks import build_callbacks
from dlcli.engine.device import cpu_bf16_support, select_device
from dlcli.engine.state import Session
from dlcli.engine.loop import StepConfig
from dlcli.engine.losses import build_loss, head_size, one_logit, present_as_two_logits
from dlcli.engine.distributed import check_devices
from dlcli.config.build import check_components, settings_checked
from dlcli.config.metric_names import monitor_mode
from dlcli.engine.tta import checked_views, tta_views
from dlcli.engine.optim import FULL_BATCH_ONLY, build_optimizer, build_scheduler, l1_penalty
from dlcli.errors import InputTooSmall, UserError
from dlcli.models import build_model
from dlcli.models.build import check_model_reads_sequences
from dlcli.config.no_effect import check_settings_fit_the_task, check_settings_take_effect, dormant_settings
from dlcli.config.validate import metric_for, monitor_for, validate_config
from dlcli.models.init import parse_scheme
from dlcli.tracking import build_loggers


@dataclass
class Experiment:
    cfg: DictConfig
    data: PreparedData
    session: Session
    notes: list[str]

    def batches(self, part: str):
        """Evaluation batches of one split part, in order."""
        return self.data.batches(part, self.session.device, training=False)


def targets_at_least_one(data) -> bool:
    """Are all targets, in their own units, at least 1 (log-RMSE clips predictions there)?"""
    targets = data.targets.astype(float)
    if data.target_scaler is not None:
        targets = data.target_scaler.inverse(targets)
    return bool((targets >= 1 - 1e-5).all())  # targets come back from float32 (and a log): 1 may read 0.99999994


def train_targets(data):
    """The train split's class indices (what balanced class weights count), or None for regression."""
    if data.task != "classification":
        return None

    return np.asarray(data.targets)[data.split.train]


def build_experiment(cfg: DictConfig, restoring: bool = False) -> Experiment:
    """`restoring`: a checkpoint of the run is loaded next (eval, resume, inspect), so the model's
    start weights (model.weights=RUN_DIR of a dl model) are not read again."""
    check_config(cfg, saved=restoring)
    with settings_checked():  # every setting, just now: what is built is not checked again
        return _built_experiment(cfg, restoring)


def _built_experiment(cfg: DictConfig, restoring: bool) -> Experiment:
    device = select_device(cfg.trainer.device)
    check_devices(int(cfg.trainer.get("devices", 1)), device, bool(cfg.trainer.get("sync_batchnorm", False)),
                  int(cfg.trainer.batch_size))
    notes = []
    brought = list(cfg.model.get("train_with") or [])
    if brought and not restoring:
        notes.append(f"this model brings its own training defaults (model.train_with): {', '.join(brought)}; "
                     "whatever you set yourself wins")
    if isinstance(cfg.get("recipe"), DictConfig) and not restoring:
        notes.append(swapped_recipe_note(cfg))
    precision = training_precision(cfg, device, notes)
    speed_switches(cfg, device, notes)
    torch.manual_seed(cfg.seed)  # model init, then dropout, repeat for the same seed
    # a run made before data.cache read its folder's files every epoch: it goes on doing so
    unset_cache = "none" if restoring and "cache" not in cfg.data else None
    data = prepare_data(cfg.data, cfg.split, cfg.seed, device, unset_cache, int(cfg.trainer.get("devices", 1)), saved=restoring)
    check_settings_fit_the_task(cfg, data.task)
    notes += dormant_settings(cfg)
    if getattr(data, "cache", None) is not None and cfg.data.get("cache") != data.cache:
        # data.cache=auto decided: the run keeps the decision (config.yaml), so that its resume, its
        # evaluation and its other processes read the folder the same way whatever memory is free then
        OmegaConf.update(cfg, "data.cache", data.cache, force_add=True)
    checked_views((cfg.get("eval") or {}).get("tta"), data.input_shape)  # before training, not at the test look
    validated = len(data.split.val) > 0
    if not validated:
        _check_no_validation(cfg)
    loss_cfg = cfg.get("loss")
    try:
        model = build_model(cfg.model, data.input_shape, head_size(loss_cfg, data.num_outputs), start_weights=not restoring,
                            vocab_size=getattr(data, "vocab_size", None), task=data.task).to(device)
        if one_logit(loss_cfg):
            present_as_two_logits(model)
        if getattr(model, "start_note", None):
            notes.append(model.start_note)
        if cfg.trainer.get("channels_last"):
            if len(data.input_shape) != 3:
                raise UserError(f"trainer.channels_last=true orders image activations (channels, height, width), and this "
                                f"data's inputs are {'x'.join(map(str, data.input_shape))}: drop it")
            model = model.to(memory_format=torch.channels_last)
    except InputTooSmall as exc:  # the fix is in the data config, which only this level sees
        raise exc.with_hint(can_resize="resize" in cfg.data) from None
    optimizer = build_optimizer(cfg.optim, model, int(cfg.trainer.batch_size), notes)
    l1, l1_params = l1_penalty(cfg.optim, model)
    if any(cfg.optim._target_ == name for name in FULL_BATCH_ONLY) and int(cfg.trainer.batch_size) < len(data.split.train):
        notes.append(f"optim={cfg.optim._target_.rsplit('.', 1)[-1].lower()} is meant for full-batch training (it steps on gradient "
                     f"signs): set trainer.batch_size={len(data.split.train)} or more")
    monitor = monitor_for(cfg, data.task)
    metric = metric_for(cfg, data.task)
    if metric == "log_rmse" and not targets_at_least_one(data):
        raise UserError("trainer.metric=log_rmse needs targets of at least 1, such as prices (it compares logarithms): use rmse or mae")
    batch_size = int(cfg.trainer.batch_size)
    steps_per_epoch = math.ceil(len(data.split.train) / batch_size)
    schedule = build_scheduler(cfg.sched, optimizer, steps_per_epoch, monitor_mode(monitor), int(cfg.trainer.epochs), notes)
    early = cfg.trainer.early_stopping
    scaler = data.target_scaler
    session = Session(
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        loss_fn=build_loss(loss_cfg, data.task, data.num_outputs, train_targets(data), float(cfg.trainer.label_smoothing)).to(device),
        device=device,
        step=StepConfig(batch_size, precision, cfg.trainer.grad_clip, cfg.trainer.grad_clip_mode, l1, tuple(l1_params)),
        generator=torch.Generator().manual_seed(int(cfg.seed)),
        train_data=data.batches("train", device, training=True),
        val_data=data.batches("val", device) if validated else None,
        task=data.task,
        metric=metric,
        epochs=int(cfg.trainer.epochs),
        eval_batch_size=int(cfg.trainer.eval_batch_size),
        monitor=monitor,
        mode=monitor_mode(monitor),
        patience=int(early.patience) if early.enabled else None,
        min_delta=float(early.min_delta),
        target_mean=scaler.mean if scaler else 0.0,
        target_std=scaler.std if scaler else 1.0,
        target_transform=scaler.transform_name if scaler else "none",
        scaler=torch.amp.GradScaler("cuda") if precision == "16" else None,
    )
    return Experiment(cfg=cfg, data=data, session=session, notes=notes + data.notes)


def swapped_recipe_note(cfg: DictConfig) -> str:
    """What the run log says when the user chose another model than the recipe's (dlcli.config.recipes)."""
    recipe = OmegaConf.to_container(cfg.recipe, resolve=True)
    made_for, gave = recipe.get("made_for"), ", ".join(map(str, recipe.get("gave_way") or [])) or "none"
    chosen = option_name("model", OmegaConf.to_container(cfg.model, resolve=True))
    optimizer = option_name("optim", OmegaConf.to_container(cfg.optim, resolve=True))
    return (f"experiment={recipe.get('name')} was made for model={made_for}; with model={chosen} its settings for "
            f"{made_for} gave way ({gave}): model={chosen} trains as its own option makes it, with optim={optimizer} "
            f"at optim.lr={cfg.optim.get('lr')} unless you set one")


def training_precision(cfg: DictConfig, device: torch.device, notes: list[str]) -> str:
    """trainer.precision on this device: 16 (float16 autocast with a GradScaler) needs CUDA, bf16 a
    GPU that has bfloat16 or the CPU; trainer.amp=true is precision=16, and off CUDA it trains in
    float32 and says so, as it always has."""
    precision = str(cfg.trainer.get("precision", "32"))
    if cfg.trainer.amp and precision == "32":
        if device.type != "cuda":
            notes.append(f"trainer.amp=true needs CUDA: training in float32 on {device}")
            return "32"
        return "16"
    if precision == "16" and device.type != "cuda":
        raise UserError(f"trainer.precision=16 (float16 with a GradScaler) needs CUDA, and this run trains on {device}: "
                        "use trainer.precision=bf16 on a CPU, or 32")
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError(f"trainer.precision=bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use trainer.precision=16")
        if device.type == "mps":
            raise UserError("trainer.precision=bf16 on MPS: this PyTorch has no bfloat16 autocast there; use 32")
        support = cpu_bf16_support() if device.type == "cpu" else None
        if support == "none":
            notes.append("trainer.precision=bf16: this CPU has no native bfloat16 (no AVX512-BF16, AMX or Arm BF16), so every "
                         "bfloat16 operation is converted to float32 and back: expect it slower than trainer.precision=32")
        elif support == "dot products":
            notes.append("trainer.precision=bf16: this CPU has bfloat16 dot products (AVX512-BF16 or Arm BF16) but no matrix "
                         "units (AMX): small models often train slower than at trainer.precision=32; compare samples/s")
    return precision


def speed_switches(cfg: DictConfig, device: torch.device, notes: list[str]) -> None:
    """TF32 and cudnn.benchmark on CUDA GPUs (trainer.tf32, on by default; off turns both off), said
    in the run log."""
    if device.type != "cuda":
        return
    tf32 = bool(cfg.trainer.get("tf32", True))
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = tf32  # the fastest kernels, found by timing: one switch with TF32
    if tf32:
        notes.append("TF32 matmuls and convolutions and cudnn.benchmark are on (trainer.tf32=false turns both off)")


def _check_no_validation(cfg: DictConfig) -> None:
    """Training without a validation split (split.val=0, as a refit does) keeps the last epoch:
    nothing may depend on a validation metric."""
    if float(cfg.split.val) > 0:
        raise UserError(f"the validation split is empty with split.val={cfg.split.val}: raise split.val")
    if cfg.trainer.early_stopping.enabled:
        raise UserError("trainer.early_stopping watches the validation split, and split.val=0 has none: "
                        "set trainer.early_stopping.enabled=false and a fixed trainer.epochs (or keep a split.val)")
    if cfg.sched.get("_target_") and "ReduceLROnPlateau" in str(cfg.sched._target_):
        raise UserError("sched=plateau steps on a validation metric, and split.val=0 has none: choose another schedule")


def check_config(cfg: DictConfig, saved: bool = False) -> None:
    """The checks `build_experiment` makes before it loads anything: every value against its
    declared constraint (dlcli.config.constraints: the schema's, each component's, the keys dl handles
    itself), the relations between settings, and every component's settings against its class.
    `saved`: a run that exists is opened (validate_config).
    Cheap enough to run on every trial of a sweep before the first one starts."""
    validate_config(cfg, saved)
    check_settings_take_effect(cfg)
    check_model_reads_sequences(cfg)
    check_components(cfg)  # data, model, loss, optim, sched: each one's table (dlcli.config.own_settings.GROUPS)
    parse_scheme(cfg.model.get("init", "default"))
    tta_views((cfg.get("eval") or {}).get("tta"))
    build_callbacks(cfg.get("callbacks"), check_only=True)
    build_loggers(cfg.get("logger"), check_only=True)  # a logger whose package is missing says which pip install fixes it
