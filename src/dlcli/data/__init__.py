"""Data: load a source named by the config, split it, and encode it into tensors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig

from dlcli.data.preprocess import ArrayEncoding, TableEncoding, TargetScaler, encode_features, encode_targets
from dlcli.data.split import Split, split_dataset
from dlcli.config.constraints import Interval, check, show
from dlcli.errors import UserError
from dlcli.config.own_settings import IMAGE_ONLY_KEYS, OWN_SETTINGS, TABLE_ONLY_KEYS
from dlcli.config.build import call_target

# Config keys of data/ that steer preprocessing rather than the source itself.
PREPROCESS_KEYS = ("standardize", "standardize_target", "target_transform", "as_sequence")
PREPROCESSING_FILE = "preprocessing.json"  # in every run: what it learned from its train rows
PREPROCESSING_FORMAT = 1  # of preprocessing.json; raise it when a reader could misread a new record
IMAGE_KEYS = ("resize", "normalize", "augment", "num_workers", "cache", "cache_dir")
DATA_KEY_CONSTRAINTS = OWN_SETTINGS["data"]  # what they may be


@dataclass
class PreparedData:
    """Encoded arrays for every row, the split, and what a model needs to know about them."""

    features: np.ndarray  # float32, one row per sample
    targets: np.ndarray  # int64 class indices or float32 values
    split: Split
    task: str
    name: str
    input_shape: tuple[int, ...]  # per-sample shape the model sees, e.g. (64,) or (1, 8, 8)
    num_outputs: int  # classes, or 1 for regression
    class_names: list[str] | None = None
    feature_names: list[str] = field(default_factory=list)
    target_scaler: TargetScaler | None = None
    notes: list[str] = field(default_factory=list)
    stored_shape: tuple[int, ...] | None = None  # a row's shape before data.resize (digits: 1x8x8)
    encoding: ArrayEncoding | TableEncoding | None = None
    target_name: str = "target"
    id_columns: list[str] = field(default_factory=list)

    def preprocessing(self) -> dict:
        """What the run learned from its train rows, as plain JSON (the run's preprocessing.json):
        everything `dl predict` needs to turn new rows into model inputs and outputs into answers."""
        return {
            "format": PREPROCESSING_FORMAT,
            "kind": "table" if isinstance(self.encoding, TableEncoding) else "array",
            "task": self.task,
            "data": self.name,
            "input_shape": list(self.input_shape),
            "stored_shape": list(self.stored_shape) if self.stored_shape else None,
            "features": self.encoding.to_json(),
            "id_columns": list(self.id_columns),
            "target": {"name": self.target_name, "classes": self.class_names,
                       "scaling": self.target_scaler.to_json() if self.target_scaler else None},
        }

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.split.part(name)
        return self.features[rows], self.targets[rows]

    def batches(self, name: str, device, training: bool = False):
        """The part as tensors on the device; rows take the sample shape (digits rows become 1x8x8)."""
        import torch

        from dlcli.engine.batches import TensorBatches

        features, targets = self.part(name)
        x = torch.as_tensor(features, dtype=torch.float32).reshape(-1, *(self.stored_shape or self.input_shape))
        if self.task == "classification":
            y = torch.as_tensor(targets, dtype=torch.long)
        else:
            y = torch.as_tensor(targets, dtype=torch.float32).reshape(-1, 1)
        return TensorBatches(x.to(device), y.to(device), self._resize_batch if self.stored_shape else None)

    def _resize_batch(self, x):
        """Upsample a batch on the device (bilinear): the set is stored small, each batch grows."""
        from torch.nn import functional

        return functional.interpolate(x, size=tuple(self.input_shape[1:]), mode="bilinear", align_corners=False)


def prepare_data(data_cfg: DictConfig, split_cfg: DictConfig, seed: int, device=None, cache: str | None = None,
                 copies: int = 1, saved: bool = False):
    """Load, split (seeded, stratified for classification) and encode the configured data.
    For a folder of images: `device` is where the run trains and `copies` the processes that each
    hold the set (decoded pixels must fit there too); `cache` stands in for data.cache. `saved`: the
    config was read from a run directory, which may have come from anyone, so its data.cache_dir is
    not where dl writes (the user's own cache directory is).

    Returns PreparedData for tables and ImageData for images; both hand the engine batch sources.
    """
    from dlcli.data.images import ImageSet

    options = {k: data_cfg[k] for k in PREPROCESS_KEYS + IMAGE_KEYS if k in data_cfg}
    from dlcli.data.sources import RawData

    raw = call_target(data_cfg, "data", skip=PREPROCESS_KEYS + IMAGE_KEYS, inject={"seed": seed}, own=DATA_KEY_CONSTRAINTS,
                      expect=(RawData, ImageSet),
                      expect_name="data set (dlcli.data.sources.RawData or dlcli.data.images.ImageSet)")
    task = getattr(raw, "task", "classification")
    if task == "classification":
        classes = np.unique(np.asarray(raw.targets).astype(str))
        if len(classes) < 2:
            which = f"data.target={data_cfg.target}" if "target" in data_cfg else "the data"
            raise UserError(f"{which} has only one class ({classes[0] if len(classes) else 'none'}): classification needs "
                            "at least two (for a numeric target, data.task=regression)")
    split = _split(split_cfg, raw.targets, task, getattr(raw, "test_rows", None))
    if isinstance(raw, ImageSet):
        if options.get("target_transform") not in (None, "none"):
            raise UserError(f"data.target_transform={options['target_transform']} applies to regression targets only: drop it")
        for key in TABLE_ONLY_KEYS:  # read only on the table path below: on images they would do nothing
            if options.get(key) is not None:
                raise UserError(f"data.{key}={show(options[key])} applies to tables, and {raw.name} is a set of images: drop it"
                                f"{' (data.normalize scales images)' if key == 'standardize' else ''}")
        from dlcli.data.image_cache import decoded_once
        from dlcli.data.image_data import prepare_images

        cache_dir = None if saved else options.get("cache_dir")
        raw = decoded_once(raw, cache or str(options.get("cache", "auto")), options.get("resize"), device, copies, cache_dir)
        return prepare_images(raw, split, options.get("resize"), options.get("normalize", "dataset"),
                              options.get("augment") or {}, int(options.get("num_workers", 0)))
    for key in IMAGE_ONLY_KEYS:  # read only on the image path above: on a table they would do nothing
        if options.get(key) is not None:
            raise UserError(f"data.{key}={show(options[key])} applies to image sets (data=imagefolder, mnist, fashion_mnist, "
                            f"cifar10), and {raw.name} is a table held in memory: drop it")
    features, feature_names, encoding = encode_features(raw, split.train, bool(options.get("standardize", True)))
    targets, class_names, scaler = encode_targets(raw, split.train, bool(options.get("standardize_target", False)),
                                                  str(options.get("target_transform") or "none"))
    is_image = raw.image_shape is not None and int(np.prod(raw.image_shape)) == features.shape[1]
    resize = options.get("resize")
    if resize is not None and (not is_image or options.get("as_sequence")):
        raise UserError(f"data.resize={resize} needs image data, and {raw.name} is a table of {features.shape[1]} features: drop it")
    if options.get("as_sequence"):
        input_shape = (1, features.shape[1])  # each row is a 1-channel signal over its columns
    elif is_image:
        input_shape = tuple(raw.image_shape)
    else:
        input_shape = (features.shape[1],)
    stored_shape = None
    if resize is not None:
        stored_shape, input_shape = input_shape, (input_shape[0], resize, resize)
    return PreparedData(
        features=features,
        targets=targets,
        split=split,
        task=raw.task,
        name=raw.name,
        input_shape=input_shape,
        num_outputs=len(class_names) if class_names else 1,
        class_names=class_names,
        feature_names=feature_names,
        target_scaler=scaler,
        notes=raw.notes,
        stored_shape=stored_shape,
        encoding=encoding,
        target_name=raw.target_name or ("label" if raw.task == "classification" else "target"),
        id_columns=list(raw.id_columns),
    )


def _split(split_cfg: DictConfig, targets: np.ndarray, task: str, fixed_test) -> Split:
    stratify = np.asarray(targets).astype(str) if task == "classification" and split_cfg.stratify else None
    kfold, fold = split_cfg.get("kfold"), split_cfg.get("fold")
    if kfold is not None:
        # a config is checked whole before data is read (dlcli.config.validate); this guards a caller of
        # the Python API with the same declared constraints and the same words
        from dlcli.config.schema import CONSTRAINTS

        fold = 1 if fold is None else fold
        check("split.kfold", kfold, CONSTRAINTS["split.kfold"])
        check("split.fold", fold, Interval(1, kfold, integer=True))
    return split_dataset(len(targets), float(split_cfg.val), float(split_cfg.test), int(split_cfg.seed), stratify, fixed_test, kfold, fold)
