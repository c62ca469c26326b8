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

from dlcli.errors import UserError


POLICIES = ("none", "autoaugment", "trivialaugment")
CROP_DEFAULTS = {"scale": [0.08, 1.0], "ratio": [3 / 4, 4 / 3]}  # torchvision's RandomResizedCrop
BLUR_DEFAULTS = {"kernel": 3, "sigma": [0.1, 2.0]}


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
        if self.crop_padding < 0:
            raise UserError(f"data.augment.crop_padding={self.crop_padding} must be at least 0")
        if not 0 <= self.random_erasing <= 1:
            raise UserError(f"data.augment.random_erasing={self.random_erasing} must be a probability in [0, 1]")
        if self.rotation < 0 or self.color_jitter < 0:
            raise UserError("data.augment.rotation and data.augment.color_jitter must be at least 0")
        if isinstance(self.gaussian_noise, bool) or not isinstance(self.gaussian_noise, (int, float)) or self.gaussian_noise < 0:
            raise UserError(f"data.augment.gaussian_noise={self.gaussian_noise} must be a standard deviation of at least 0 (pixels in [0, 1])")
        if self.policy not in POLICIES:
            raise UserError(f"data.augment.policy={self.policy} is not valid: choose one of {', '.join(POLICIES)}")
        crop = self.crop_settings()
        if crop is not None and not (0 < crop["scale"][0] <= crop["scale"][1] <= 1 and 0 < crop["ratio"][0] <= crop["ratio"][1]):
            raise UserError(f"data.augment.random_resized_crop={self.random_resized_crop}: scale must be 0 < lo <= hi <= 1 "
                            "and ratio 0 < lo <= hi")
        blur = self.blur_settings()
        if blur is not None and (not isinstance(blur["kernel"], int) or blur["kernel"] < 1 or blur["kernel"] % 2 == 0
                                 or not 0 < blur["sigma"][0] <= blur["sigma"][1]):
            raise UserError(f"data.augment.gaussian_blur={self.gaussian_blur}: kernel must be an odd size (3, 5, ...) "
                            "and sigma 0 < lo <= hi")

    def crop_settings(self) -> dict | None:
        return _settings("random_resized_crop", self.random_resized_crop, CROP_DEFAULTS)

    def blur_settings(self) -> dict | None:
        return _settings("gaussian_blur", self.gaussian_blur, BLUR_DEFAULTS)


def _settings(key: str, value, defaults: dict) -> dict | None:
    """false/null: off; true: the defaults; a mapping: the defaults with those settings."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(defaults)
    if not isinstance(value, Mapping):
        raise UserError(f"data.augment.{key}={value} must be true, false, or settings such as {defaults}")
    unknown = [k for k in value if k not in defaults]
    if unknown:
        raise UserError(f"data.augment.{key} has no setting '{unknown[0]}': its settings are {', '.join(defaults)}")
    merged = {**defaults, **dict(value)}
    for k, v in merged.items():
        if isinstance(defaults[k], list):
            v = list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "ListConfig" else [v, v]
            if len(v) != 2 or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
                raise UserError(f"data.augment.{key}.{k}={v} must be two numbers [lo, hi]")
            merged[k] = [float(x) for x in v]
    return merged


@dataclass
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]


def batch_transform(resize: int | None, norm: Normalization | None):
    """uint8 N x C x H x W batch on the device -> normalized float batch at the model's size."""
    from torchvision.transforms.v2 import functional as F

    def transform(x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0)
        if resize is not None and tuple(x.shape[-2:]) != (resize, resize):
            x = F.resize(x, [resize, resize], antialias=True)
        if norm is not None:
            x = F.normalize(x, list(norm.mean), list(norm.std))
        return x

    return transform


def sample_transform(size: tuple[int, int], resize: int | None, norm: Normalization | None, augment: Augment | None):
    """Per-sample pipeline for DataLoader workers: uint8 C x H x W -> normalized float tensor."""
    from torchvision.transforms import v2

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
