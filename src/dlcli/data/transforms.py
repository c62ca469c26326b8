"""Image transforms from config, all torchvision.transforms.v2.

Evaluation: uint8 -> float in [0, 1] -> resize -> normalize, run per batch on the device.
Training with augmentation: the same, per sample in DataLoader workers, with random crop (with
padding), horizontal flip, rotation and colour jitter before, and random erasing after.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dlcli.errors import UserError


@dataclass
class Augment:
    crop_padding: int = 0  # random crop back to the image size after padding this many pixels
    hflip: bool = False
    rotation: float = 0.0  # degrees, drawn in [-rotation, rotation]
    color_jitter: float = 0.0  # brightness, contrast and saturation strength
    random_erasing: float = 0.0  # probability of erasing a random rectangle

    @property
    def active(self) -> bool:
        return bool(self.crop_padding or self.hflip or self.rotation or self.color_jitter or self.random_erasing)

    def validate(self) -> None:
        if self.crop_padding < 0:
            raise UserError(f"data.augment.crop_padding={self.crop_padding} must be at least 0")
        if not 0 <= self.random_erasing <= 1:
            raise UserError(f"data.augment.random_erasing={self.random_erasing} must be a probability in [0, 1]")
        if self.rotation < 0 or self.color_jitter < 0:
            raise UserError("data.augment.rotation and data.augment.color_jitter must be at least 0")


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
    if augment is not None and augment.active:
        if augment.crop_padding:
            steps.append(v2.RandomCrop(list(size), padding=augment.crop_padding))
        if augment.hflip:
            steps.append(v2.RandomHorizontalFlip())
        if augment.rotation:
            steps.append(v2.RandomRotation(augment.rotation))
        if augment.color_jitter:
            s = augment.color_jitter
            steps.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if norm is not None:
        steps.append(v2.Normalize(list(norm.mean), list(norm.std)))
    if augment is not None and augment.random_erasing:
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
