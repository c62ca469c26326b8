"""Device selection: auto picks CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import re

import torch

from dlcli.errors import UserError


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def select_device(spec: str) -> torch.device:
    """The torch.device for auto | cpu | cuda | cuda:N | mps, or a one-line error listing what exists."""
    spec = str(spec).strip().lower()
    existing = available_devices()
    if spec == "auto":
        for preferred in ("cuda:0", "mps", "cpu"):
            if preferred in existing:
                return torch.device(preferred)
    if spec == "cuda":
        spec = "cuda:0"
    if spec in existing:
        return torch.device(spec)
    if spec in ("cpu", "mps") or re.fullmatch(r"cuda:\d+", spec):
        raise UserError(f"trainer.device={spec} is not available: this machine has {', '.join(existing)}")
    raise UserError(f"trainer.device={spec} is not a device: use auto, cpu, cuda, cuda:N or mps (here: {', '.join(existing)})")
