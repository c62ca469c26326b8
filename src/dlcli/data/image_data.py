"""Prepared image data: the split, the transforms, and batch sources for the engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from dlcli.data.batch_augment import DeviceAugment, per_sample_settings
from dlcli.data.images import KNOWN_STATS, ImageSet
from dlcli.data.record import data_record
from dlcli.data.split import Split
from dlcli.data.transforms import Augment, Normalization, batch_transform, channel_stats, sample_transform
from dlcli.config.constraints import NUMBER, POSITIVE, ListOf, check
from dlcli.engine.batches import LoaderBatches, TensorBatches
from dlcli.errors import UserError
from dlcli.system.machine import usable_cores

NORMALIZE = ("dataset", "computed", "none")
STATS_SAMPLE = 2000  # images read to compute statistics of a folder of files
STATS_CHUNK = 2**22  # pixels (x channels) of in-memory images taken at once for statistics (as float64: 32 MB)


class TransformedSamples(Dataset):
    """Rows of an ImageSet with a per-sample transform (what DataLoader workers run)."""

    def __init__(self, source: ImageSet, rows: np.ndarray, transform):
        self.source, self.rows, self.transform = source, rows, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        row = int(self.rows[index])
        if self.source.images is not None:
            image, label = self.source.images[row], int(self.source.targets[row])
        else:
            image, label = self.source.files[row]
        return self.transform(image), label


@dataclass
class ImageData:
    source: ImageSet
    split: Split
    input_shape: tuple[int, int, int]
    resize: int | None
    normalization: Normalization | None
    augment: Augment
    num_workers: int
    notes: list[str] = field(default_factory=list)
    task: str = "classification"
    target_scaler: None = None
    # the modality (dlcli.data.modality), and what its preprocessing record says of every image set
    kind: ClassVar[str] = "images"
    stored_shape: ClassVar[None] = None  # images are resized as they are read, never batch by batch
    target_name: ClassVar[str] = "label"
    id_columns: ClassVar[tuple] = ()  # listed by file name

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def targets(self) -> np.ndarray:
        return self.source.targets

    @property
    def num_outputs(self) -> int:
        return len(self.source.class_names)

    @property
    def cache(self) -> str | None:
        """How a folder of images is read (data.cache as this run resolved it): memory (decoded
        once) or none (the files, every epoch); None for sets that are not folders."""
        if self.source.files is None:
            return None
        return "memory" if self.source.images is not None else "none"

    def preprocessing(self) -> dict:
        """What `dl predict` needs to feed new images to the model (the run's preprocessing.json)."""
        return data_record(self)

    def batches(self, part: str, device: torch.device, training: bool = False):
        rows = self.split.part(part)
        targets = torch.as_tensor(self.source.targets[rows], dtype=torch.long)
        augmenting = training and self.augment.active
        if self.source.images is not None and not (augmenting and per_sample_settings(self.augment)):
            images = self.source.images[torch.as_tensor(rows, dtype=torch.long)]
            augment = DeviceAugment(self.augment, self.resize, self.normalization) if augmenting else None
            return TensorBatches(images.to(device), targets.to(device), batch_transform(self.resize, self.normalization), augment)
        transform = sample_transform(self.input_shape[1:], self.resize, self.normalization, self.augment if augmenting else None)
        return LoaderBatches(TransformedSamples(self.source, rows, transform), targets, device, self.num_workers)


def prepare_images(source: ImageSet, split: Split, resize, normalize: str, augment: dict, num_workers: int) -> ImageData:
    if resize is not None and (not isinstance(resize, int) or isinstance(resize, bool) or resize < 1):
        raise UserError(f"data.resize={resize} must be a positive image size in pixels (or null)")
    given = None
    if isinstance(normalize, Mapping):  # explicit statistics: {mean: [...], std: [...]}
        given, normalize = normalize, "given"
    elif normalize not in NORMALIZE:
        raise UserError(f"data.normalize={normalize} is not valid: choose one of {', '.join(NORMALIZE)}, "
                        "or give statistics: 'data.normalize={mean: [0.5,0.5,0.5], std: [0.5,0.5,0.5]}'")
    try:
        augmentation = Augment(**(augment or {}))
    except TypeError:
        valid = ", ".join(Augment.__dataclass_fields__)
        raise UserError(f"data.augment has an unknown setting ({', '.join(augment)}): valid settings are {valid}") from None
    augmentation.validate()
    if source.image_shape is None and resize is None:
        raise UserError("the images in data.root differ in size: set data.resize=N to bring them all to NxN (e.g. data.resize=64)")
    channels, height, width = source.image_shape if source.image_shape else (1 if source.files.mode == "L" else 3, resize, resize)
    input_shape = (channels, resize, resize) if resize else (channels, height, width)
    _check_blur_fits(augmentation, input_shape)
    notes = list(source.notes)
    stats = _given_stats(given, channels) if given is not None else None
    if normalize == "dataset":
        if source.name in KNOWN_STATS:
            stats = Normalization(*KNOWN_STATS[source.name])
        else:
            notes.append(f"no published statistics for {source.name}: normalizing with statistics computed from the train split")
            normalize = "computed"
    if normalize == "computed":
        stats = _train_stats(source, split, channels, resize)
    cores = usable_cores()
    if num_workers > cores:  # more loader processes than cores only queue for them (and torch warns)
        notes.append(f"data.num_workers={num_workers} is more than this machine's {cores} cores: using {cores}")
        num_workers = cores
    if augmentation.active:
        notes.append(_augmentation_path(source, augmentation, num_workers))
    return ImageData(source, split, input_shape, resize, stats, augmentation, num_workers, notes)


def _check_blur_fits(augment: Augment, input_shape: tuple[int, int, int]) -> None:
    """A blur kernel pads the image by half its size, mirrored, which needs that many pixels."""
    blur = augment.blur_settings()
    side = min(input_shape[1:])
    if blur is not None and blur["kernel"] // 2 >= side:
        raise UserError(f"data.augment.gaussian_blur kernel {blur['kernel']} is too large for {input_shape[1]}x{input_shape[2]} "
                        f"images: at most {2 * side - 1} (or a larger data.resize)")


def _augmentation_path(source: ImageSet, augment: Augment, num_workers: int) -> str:
    """Where the training batches are augmented, and why (a line of the run log)."""
    workers = f"{num_workers} DataLoader worker process{'es' if num_workers != 1 else ''}" if num_workers else "the DataLoader's main process"
    per_sample = per_sample_settings(augment)
    if source.images is None:
        return f"augmenting each image in {workers}: the images are read from files (data.cache=memory decodes them once)"
    if per_sample:
        return (f"augmenting each image in {workers}: data.augment.{', '.join(per_sample)} works image by image; "
                "without it the augmentation runs on whole batches on the device")
    return "augmenting whole batches on the device (batched tensor operations, drawn from the run's seed)"


def _given_stats(given, channels: int) -> Normalization:
    """data.normalize={mean: [...], std: [...]}: one value per channel (or one for all), std above 0."""
    keys = set(given)
    if keys != {"mean", "std"}:
        raise UserError(f"data.normalize needs exactly mean and std (got {', '.join(sorted(map(str, keys))) or 'nothing'})")
    values = {}
    for key in ("mean", "std"):
        raw = given[key]
        numbers = list(raw) if isinstance(raw, (list, tuple)) or type(raw).__name__ == "ListConfig" else [raw]
        if len(numbers) == 1:
            numbers = numbers * channels
        check(f"data.normalize.{key}", numbers, ListOf(POSITIVE if key == "std" else NUMBER, channels, channels))  # one per channel
        values[key] = tuple(float(v) for v in numbers)
    return Normalization(values["mean"], values["std"])


def _train_stats(source: ImageSet, split: Split, channels: int, resize: int | None) -> Normalization:
    """Statistics of the train images as the model sees them (after resizing, which smooths them)."""
    rows = split.train
    to_size = v2.Resize([resize, resize], antialias=True) if resize else (lambda x: x)
    if source.files is not None:  # a folder: the same sample of images, decoded once or read from the files
        sample = rows[np.linspace(0, len(rows) - 1, min(len(rows), STATS_SAMPLE)).astype(int)]
        if source.images is not None:  # decoded at the model's size already
            return channel_stats((source.images[int(r)].unsqueeze(0) for r in sample), channels)
        return channel_stats((to_size(source.files[int(r)][0]).unsqueeze(0) for r in sample), channels)
    if source.images is not None:
        step = max(1, STATS_CHUNK // int(np.prod(source.images.shape[1:])))  # images per chunk: bounded in bytes, not count
        chunks = (to_size(source.images[torch.as_tensor(rows[i : i + step], dtype=torch.long)]) for i in range(0, len(rows), step))
        return channel_stats(chunks, channels)
    raise ValueError(f"{source.name} holds neither images nor files")
