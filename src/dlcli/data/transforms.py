"""Image transforms from config, all torchvision.transforms.v2.

Evaluation: uint8 -> float in [0, 1] -> resize -> normalize, run per batch on the device.
Training with augmentation: the same, per sample in DataLoader workers, with random resized crop,
random crop (with padding), flips, rotation, an AutoAugment / TrivialAugment policy, colour jitter
and blur before the conversion to floats, Gaussian noise after it, and random erasing last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from dlcli.config.constraints import (
    BOOLEAN,
    NON_NEGATIVE,
    PROBABILITY,
    Anything,
    Interval,
    ListOf,
    Null,
    Options,
    check,
    one_of,
    show,
)
from dlcli.errors import UserError


POLICIES = ("none", "autoaugment", "trivialaugment")
CROP_DEFAULTS = {"scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3]}  # torchvision's RandomResizedCrop
BLUR_DEFAULTS = {"kernel": 3, "sigma": [0.1, 2.0]}


PAIR = ListOf(Interval(0, None, closed="neither"), 2, 2)  # [lo, hi], each above 0
SETTING_CONSTRAINTS = {"random_resized_crop": {"scale": ListOf(Interval(0, 1, closed="right"), 2, 2), "ratio": PAIR},
                       "gaussian_blur": {"kernel": Interval(1, 99, integer=True), "sigma": PAIR}}
SWITCH = one_of(BOOLEAN, Null(), Anything())  # true/false, or a mapping of settings (checked by _settings)


@dataclass
class Augment:
    crop_padding: int = 0  # random crop back to the image size after padding this many pixels
    hflip: bool = False
    vflip: bool = False
    rotation: float = 0.0  # degrees, drawn in [-rotation, rotation]
    color_jitter: float = 0.0  # brightness, contrast and saturation strength
    random_erasing: float = 0.0  # probability of erasing a random rectangle
    random_resized_crop: Any = False  # true, or {scale: [lo, hi], ratio: [lo, hi]}: crop a random part, resize back
    gaussian_noise: float = 0.0  # std of noise added to pixels in [0, 1] (clipped back to [0, 1])
    gaussian_blur: Any = False  # true, or {kernel: odd size, sigma: [lo, hi]}
    policy: str = "none"  # autoaugment (the ImageNet policy) | trivialaugment (TrivialAugmentWide)

    @property
    def active(self) -> bool:
        return bool(self.crop_padding or self.hflip or self.vflip or self.rotation or self.color_jitter or self.random_erasing
                    or self.random_resized_crop or self.gaussian_noise or self.gaussian_blur or self.policy != "none")

    def validate(self) -> None:
        """Each setting against its constraint (AUGMENT_CONSTRAINTS), then the crop's and the
        blur's own settings and their order (lo <= hi)."""
        for key, constraint in AUGMENT_CONSTRAINTS.items():
            check(f"data.augment.{key}", getattr(self, key), constraint)
        crop = self.crop_settings()
        if crop is not None and not (crop["scale"][0] <= crop["scale"][1] and crop["ratio"][0] <= crop["ratio"][1]):
            raise UserError(f"data.augment.random_resized_crop={show(self.random_resized_crop)}: scale and ratio are [lo, hi] with lo <= hi")
        blur = self.blur_settings()
        if blur is not None and (blur["kernel"] % 2 == 0 or not blur["sigma"][0] <= blur["sigma"][1]):
            raise UserError(f"data.augment.gaussian_blur={show(self.gaussian_blur)}: kernel must be an odd size (3, 5, ...) "
                            "and sigma [lo, hi] with lo <= hi")

    def crop_settings(self) -> dict | None:
        return _settings("random_resized_crop", self.random_resized_crop, CROP_DEFAULTS)

    def blur_settings(self) -> dict | None:
        return _settings("gaussian_blur", self.gaussian_blur, BLUR_DEFAULTS)


AUGMENT_CONSTRAINTS = {
    "crop_padding": Interval(0, 1024, integer=True), "hflip": BOOLEAN, "vflip": BOOLEAN, "rotation": Interval(0, 360),
    "color_jitter": NON_NEGATIVE, "random_erasing": PROBABILITY, "random_resized_crop": SWITCH,
    "gaussian_noise": NON_NEGATIVE,  # the std of noise on pixels in [0, 1]
    "gaussian_blur": SWITCH, "policy": Options(POLICIES),
}


def _settings(key: str, value, defaults: dict) -> dict | None:
    """false/null: off; true: the defaults; a mapping: the defaults with those settings (each
    checked against SETTING_CONSTRAINTS; one number where a [lo, hi] pair belongs means [v, v])."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(defaults)
    if not isinstance(value, Mapping):
        raise UserError(f"data.augment.{key}={show(value)} must be true, false, or settings such as {defaults}")
    unknown = [k for k in value if k not in defaults]
    if unknown:
        raise UserError(f"data.augment.{key} has no setting '{unknown[0]}': its settings are {', '.join(defaults)}")
    merged = {**defaults, **dict(value)}
    for k, v in merged.items():
        if isinstance(defaults[k], list) and not (isinstance(v, (list, tuple)) or type(v).__name__ == "ListConfig"):
            v = [v, v]
        v = list(v) if type(v).__name__ == "ListConfig" else v
        check(f"data.augment.{key}.{k}", v, SETTING_CONSTRAINTS[key][k])
        merged[k] = [float(x) for x in v] if isinstance(defaults[k], list) else v
    return merged


@dataclass
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]


def batch_transform(resize: int | None, norm: Normalization | None):
    """uint8 N x C x H x W batch on the device -> normalized float batch at the model's size."""
    normalize = Normalizer(norm) if norm is not None else None

    def transform(x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0)
        if resize is not None and tuple(x.shape[-2:]) != (resize, resize):
            x = F.resize(x, [resize, resize], antialias=True)
        return normalize(x) if normalize is not None else x

    return transform


class Normalizer:
    """(x - mean) / std per channel, in place, with mean and std made once per device: a tensor
    built from Python numbers for every batch is a copy from the host that waits for the GPU."""

    def __init__(self, norm: Normalization):
        self.norm = norm
        self._made: dict = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.device, x.dtype)
        if key not in self._made:
            self._made[key] = tuple(torch.tensor(values, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
                                    for values in (self.norm.mean, self.norm.std))
        mean, std = self._made[key]
        return x.sub_(mean).div_(std)


def sample_transform(size: tuple[int, int], resize: int | None, norm: Normalization | None, augment: Augment | None):
    """Per-sample pipeline for DataLoader workers: uint8 C x H x W -> normalized float tensor."""
    steps = []
    if resize is not None:
        steps.append(v2.Resize([resize, resize], antialias=True))
        size = (resize, resize)
    on = augment is not None and augment.active
    if on:  # on uint8 images: geometry, then the policies and colour (which expect uint8)
        crop = augment.crop_settings()
        if crop is not None:
            steps.append(v2.RandomResizedCrop(list(size), scale=tuple(crop["scale"]), ratio=tuple(crop["ratio"]), antialias=True))
        if augment.crop_padding:
            steps.append(v2.RandomCrop(list(size), padding=augment.crop_padding))
        if augment.hflip:
            steps.append(v2.RandomHorizontalFlip())
        if augment.vflip:
            steps.append(v2.RandomVerticalFlip())
        if augment.rotation:
            steps.append(v2.RandomRotation(augment.rotation))
        if augment.policy == "autoaugment":
            steps.append(v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET))
        elif augment.policy == "trivialaugment":
            steps.append(v2.TrivialAugmentWide())
        if augment.color_jitter:
            s = augment.color_jitter
            steps.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s))
        blur = augment.blur_settings()
        if blur is not None:
            steps.append(v2.GaussianBlur(blur["kernel"], sigma=tuple(blur["sigma"])))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if on and augment.gaussian_noise:
        steps.append(v2.GaussianNoise(mean=0.0, sigma=float(augment.gaussian_noise), clip=True))
    if norm is not None:
        steps.append(v2.Normalize(list(norm.mean), list(norm.std)))
    if on and augment.random_erasing:
        steps.append(v2.RandomErasing(p=augment.random_erasing))
    return v2.Compose(steps)


def channel_stats(batches, channels: int) -> Normalization:
    """Per-channel mean and std of float images in [0, 1], accumulated over uint8 batches."""
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for batch in batches:
        x = batch.to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if count == 0:
        raise UserError("cannot compute normalization statistics from an empty train split")
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(1e-12).sqrt()
    return Normalization(tuple(mean.tolist()), tuple(std.tolist()))
