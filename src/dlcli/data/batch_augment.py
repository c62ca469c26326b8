"""Augmentation of whole batches on the device, for image sets held in memory.

A per-sample pipeline in DataLoader workers costs far more than the model on small images: the
batch is cut into single images, each goes through Python, and the results are stacked again.
Here the common augmentations are tensor operations on the batch where it already is (the GPU, or
the CPU's vector units):

- random_resized_crop and rotation: one affine resampling per batch (`grid_sample`), bilinear
  (rotation alone: nearest, as torchvision's RandomRotation); the crop's size is drawn as
  torchvision's (area share in `scale`, log-uniform aspect in `ratio`) and clipped to the image
  instead of redrawn, so that every draw is one tensor operation;
- crop_padding: zero padding and a random window per image (on the uint8 pixels when no
  resampling comes first);
- hflip / vflip: each image flipped with probability 1/2;
- gaussian_noise: added to pixels in [0, 1], clipped back;
- random_erasing (cutout): with its probability, a rectangle of 2-33% of the image with aspect
  0.3-3.3 (torchvision's RandomErasing defaults, clipped to fit) set to 0 after normalizing.

Every random number of an epoch comes from one seed drawn from the run's generator (the one saved
in checkpoints), so a resumed run draws exactly what the uninterrupted one did. Per-image draws
are made for every sample at the epoch's start and looked up by sample index, so several
processes (each taking its part of a batch) agree on every image's augmentation.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from dlcli.data.transforms import Augment, Normalization, Normalizer, batch_transform
from dlcli.engine.distributed import World

# data.augment settings that need per-image work in PIL-style steps: they keep the DataLoader path
PER_SAMPLE_ONLY = ("color_jitter", "gaussian_blur", "policy")
ERASE_SCALE, ERASE_RATIO = (0.02, 0.33), (0.3, 3.3)  # torchvision's RandomErasing defaults
# the columns of an epoch's uniform draws, one row per sample: each random choice has its own
DRAWS = ("crop_area", "crop_aspect", "crop_x", "crop_y", "angle", "shift_y", "shift_x", "hflip", "vflip",
         "erase", "erase_area", "erase_aspect", "erase_top", "erase_left")
COLUMN = {name: index for index, name in enumerate(DRAWS)}


def per_sample_settings(augment: Augment) -> list[str]:
    """The active settings that cannot run on a batch (empty: the device path can take them all)."""
    return [f"{key}={getattr(augment, key)}" for key in PER_SAMPLE_ONLY
            if getattr(augment, key) not in (0, 0.0, False, None, "none")]


class DeviceAugment:
    """The training transform of an in-memory image set: uint8 batch -> float at the model's size
    -> augmentations -> normalized, all on the batch's device."""

    def __init__(self, augment: Augment, resize: int | None, norm: Normalization | None):
        self.augment, self.resize, self.norm = augment, resize, norm
        self._to_float = batch_transform(resize, None)
        self.normalize = Normalizer(norm) if norm is not None else None
        self._crop = augment.crop_settings()

    def epoch(self, count: int, generator: torch.Generator, device: torch.device, world: World = World()):
        """This epoch's draws for `count` samples (one seed from the run's generator); returns the
        function that augments the batch of the given sample rows."""
        seed = int(torch.randint(2**62, (1,), generator=generator))
        draws = EpochDraws(self, count, seed, device, world)
        return draws.apply


class EpochDraws:
    """One epoch's random parameters for every sample, on the device, and their application."""

    def __init__(self, owner: DeviceAugment, count: int, seed: int, device: torch.device, world: World):
        augment = owner.augment
        self.owner = owner
        cpu = torch.Generator().manual_seed(seed)
        # the per-image numbers are few: drawn on the CPU (the same on every device), moved once
        self.u = torch.rand(count, len(DRAWS), generator=cpu).to(device)
        self.padding = int(augment.crop_padding)
        self.noise = None
        if augment.gaussian_noise:  # one number per pixel: drawn where the pixels are
            self.noise = _generator_on(device, (seed + 1 + world.rank) % 2**62)

    def apply(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        owner, augment = self.owner, self.owner.augment
        u = self.u[rows.to(self.u.device)]
        affine = owner._crop is not None or bool(augment.rotation)
        resizing = owner.resize is not None and tuple(x.shape[-2:]) != (owner.resize, owner.resize)
        early = not affine and not resizing  # shifts and flips on the uint8 pixels: a quarter of the bytes to move
        if early:
            x = self._shift_and_flip(x, u)
        x = owner._to_float(x)
        if affine:
            x = _affine(x, u, owner._crop, float(augment.rotation))
        if not early:
            x = self._shift_and_flip(x, u)
        if self.noise is not None:
            x = (x + float(augment.gaussian_noise) * torch.randn(x.shape, generator=self.noise[0], device=self.noise[1])
                 .to(x.device)).clamp_(0.0, 1.0)
        if owner.normalize is not None:
            x = owner.normalize(x)
        if augment.random_erasing:
            x = erase(x, u[:, COLUMN["erase"]] < float(augment.random_erasing), *(u[:, COLUMN[name]] for name in DRAWS[10:]))
        return x

    def _shift_and_flip(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        augment = self.owner.augment
        if self.padding:
            x = translate(x, self.padding, u[:, COLUMN["shift_y"]], u[:, COLUMN["shift_x"]])
        if augment.hflip:
            x = flip_where(x, u[:, COLUMN["hflip"]] < 0.5, dim=3)
        if augment.vflip:
            x = flip_where(x, u[:, COLUMN["vflip"]] < 0.5, dim=2)
        return x


def _generator_on(device: torch.device, seed: int) -> tuple[torch.Generator, torch.device]:
    """A generator on `device` where torch has one there, else on the CPU (numbers then moved)."""
    try:
        return torch.Generator(device=device).manual_seed(seed), device
    except RuntimeError:
        return torch.Generator().manual_seed(seed), torch.device("cpu")


def flip_where(x: torch.Tensor, chosen: torch.Tensor, dim: int) -> torch.Tensor:
    """Each image of the batch flipped along `dim` where `chosen` (a bool per image)."""
    return torch.where(chosen.view(-1, 1, 1, 1), x.flip(dim), x)


def translate(x: torch.Tensor, padding: int, uy: torch.Tensor, ux: torch.Tensor) -> torch.Tensor:
    """Random crop with padding: each image zero-padded by `padding` pixels and cut back to its size
    at an offset in [0, 2 * padding] per axis (uniform draws uy, ux in [0, 1) pick it)."""
    batch, channels, height, width = x.shape
    span = 2 * padding + 1
    dy = (uy * span).long().clamp_(max=span - 1)
    dx = (ux * span).long().clamp_(max=span - 1)
    if (height + 2 * padding) * (width + 2 * padding) <= 4 * height * width:
        # every window of the padded batch is a view; each image's window is copied out once
        windows = F.pad(x, (padding,) * 4).unfold(2, height, 1).unfold(3, width, 1)  # B, C, span, span, H, W
        return windows[torch.arange(batch, device=x.device), :, dy.to(x.device), dx.to(x.device)]
    # a padding large for the image: no padded copy, pixels gathered from the image and masked
    rows = (dy - padding).view(-1, 1).to(x.device) + torch.arange(height, device=x.device)  # each output row's source
    cols = (dx - padding).view(-1, 1).to(x.device) + torch.arange(width, device=x.device)
    out = x.gather(2, rows.clamp(0, height - 1).view(batch, 1, height, 1).expand(batch, channels, height, width))
    out = out.gather(3, cols.clamp(0, width - 1).view(batch, 1, 1, width).expand(batch, channels, height, width))
    outside = ((rows < 0) | (rows >= height)).view(batch, 1, height, 1) | ((cols < 0) | (cols >= width)).view(batch, 1, 1, width)
    return out.masked_fill(outside, 0)


def erase(x: torch.Tensor, chosen: torch.Tensor, u_area: torch.Tensor, u_ratio: torch.Tensor, u_top: torch.Tensor,
          u_left: torch.Tensor) -> torch.Tensor:
    """Random erasing (cutout): in each chosen image, a rectangle of ERASE_SCALE of its area with an
    aspect in ERASE_RATIO (log-uniform), at a uniform place, set to 0."""
    batch, _, height, width = x.shape
    area = (ERASE_SCALE[0] + (ERASE_SCALE[1] - ERASE_SCALE[0]) * u_area) * (height * width)
    log_lo, log_hi = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
    h = torch.sqrt(area * aspect).round().long().clamp_(1, height - 1 if height > 1 else 1)
    w = torch.sqrt(area / aspect).round().long().clamp_(1, width - 1 if width > 1 else 1)
    top = (u_top * (height - h + 1)).long()
    left = (u_left * (width - w + 1)).long()
    ys = torch.arange(height, device=x.device).view(1, height, 1)
    xs = torch.arange(width, device=x.device).view(1, 1, width)
    inside = ((ys >= top.view(-1, 1, 1)) & (ys < (top + h).view(-1, 1, 1))
              & (xs >= left.view(-1, 1, 1)) & (xs < (left + w).view(-1, 1, 1)) & chosen.view(-1, 1, 1))
    return x.masked_fill(inside.unsqueeze(1), 0.0)


def _affine(x: torch.Tensor, u: torch.Tensor, crop: dict | None, degrees: float) -> torch.Tensor:
    """Random resized crop and/or rotation as one resampling of the batch."""
    batch, _, height, width = x.shape
    theta = torch.zeros(batch, 2, 3, dtype=torch.float32, device=u.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if crop is not None:
        lo, hi = crop["scale"]
        area = lo + (hi - lo) * u[:, COLUMN["crop_area"]]
        log_lo, log_hi = math.log(crop["ratio"][0]), math.log(crop["ratio"][1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, COLUMN["crop_aspect"]])
        # the crop's width and height as shares of the image's (clipped to the image)
        w = torch.sqrt(area * aspect * height / width).clamp(max=1.0)  # the aspect in pixels, as torchvision's
        h = torch.sqrt(area / aspect * width / height).clamp(max=1.0)
        cx = (1 - w) * (2 * u[:, COLUMN["crop_x"]] - 1)  # the crop's centre in [-1, 1] coordinates, inside the image
        cy = (1 - h) * (2 * u[:, COLUMN["crop_y"]] - 1)
        theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = w, h, cx, cy
    if degrees:
        angle = torch.deg2rad(degrees * (2 * u[:, COLUMN["angle"]] - 1))
        cos, sin = torch.cos(angle), torch.sin(angle)
        # a rotation in pixels, written in the grid's [-1, 1] coordinates (which stretch a non-square image)
        rotation = torch.stack([torch.stack([cos, -sin * height / width]),
                                torch.stack([sin * width / height, cos])]).permute(2, 0, 1)
        theta[:, :, :2] = theta[:, :, :2] @ rotation
    grid = F.affine_grid(theta.to(device=x.device, dtype=x.dtype), list(x.shape), align_corners=False)
    mode = "bilinear" if crop is not None else "nearest"
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
