"""Data: load a source named by the config, split it, and encode it into tensors."""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig

from dlcli.config.schema import CONSTRAINTS
from dlcli.data import modalities  # noqa: F401  (registers every modality: dlcli.data.modality)
from dlcli.data.fingerprint import content_fingerprint
from dlcli.data.modality import Placement, modality_of_source, refuse_settings_of_other_modalities, source_types
from dlcli.data.prepared import PreparedData  # noqa: F401  (the package's public names)
from dlcli.data.record import PREPROCESSING_FILE, PREPROCESSING_FORMAT  # noqa: F401  (the package's public names)
from dlcli.data.split import Split, split_dataset
from dlcli.config.constraints import Interval, check
from dlcli.errors import UserError
from dlcli.config.own_settings import OWN_SETTINGS
from dlcli.config.build import call_target


def prepare_data(data_cfg: DictConfig, split_cfg: DictConfig, seed: int, device=None, cache: str | None = None,
                 copies: int = 1, saved: bool = False):
    """Load, split (seeded, stratified for classification) and encode the configured data.
    For a folder of images: `device` is where the run trains and `copies` the processes that each
    hold the set (decoded pixels must fit there too); `cache` stands in for data.cache. `saved`: the
    config was read from a run directory, which may have come from anyone, so its data.cache_dir is
    not where dl writes (the user's own cache directory is).

    The data set's modality (dlcli.data.modality) prepares it: PreparedData for tables and arrays,
    ImageData for images; each hands the engine batch sources.
    """
    options = {k: data_cfg[k] for k in OWN_SETTINGS["data"] if k in data_cfg}  # what dl reads itself, not the source
    raw = call_target(data_cfg, "data", inject={"seed": seed}, expect=source_types(),
                      expect_name=f"data set ({' or '.join(f'{t.__module__}.{t.__qualname__}' for t in source_types())})")
    task = getattr(raw, "task", "classification")
    if task == "classification":
        classes = np.unique(np.asarray(raw.targets).astype(str))
        if len(classes) < 2:
            which = f"data.target={data_cfg.target}" if "target" in data_cfg else "the data"
            raise UserError(f"{which} has only one class ({classes[0] if len(classes) else 'none'}): classification needs "
                            "at least two (for a numeric target, data.task=regression)")
    modality = modality_of_source(raw)
    split = modality.split(raw, split_cfg)
    if split is None:
        split = _split(split_cfg, raw.targets, task, getattr(raw, "test_rows", None))
    modality.check_options(options)
    refuse_settings_of_other_modalities(modality, options, raw.name)
    prepared = modality.prepare(raw, split, options, Placement(device, cache, copies, saved))
    # the content as the source returned it, before the split and the encoding (which the config
    # explains): what a new run records, so that `dl runs diff` can say whether two runs saw the same data
    prepared.fingerprint = content_fingerprint(raw)
    return prepared


def _split(split_cfg: DictConfig, targets: np.ndarray, task: str, fixed_test) -> Split:
    stratify = np.asarray(targets).astype(str) if task == "classification" and split_cfg.stratify else None
    kfold, fold = split_cfg.get("kfold"), split_cfg.get("fold")
    if kfold is not None:
        # a config is checked whole before data is read (dlcli.config.validate); this guards a caller of
        # the Python API with the same declared constraints and the same words
        fold = 1 if fold is None else fold
        check("split.kfold", kfold, CONSTRAINTS["split.kfold"])
        check("split.fold", fold, Interval(1, kfold, integer=True))
    return split_dataset(len(targets), float(split_cfg.val), float(split_cfg.test), int(split_cfg.seed), stratify, fixed_test, kfold, fold)
