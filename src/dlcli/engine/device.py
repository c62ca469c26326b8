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


# What a CPU has for bfloat16, best first: matrix units (Intel AMX), then dot-product instructions
# (x86 AVX512-BF16; Arm's BF16 extension); without either, every bfloat16 operand is converted to
# float32 and back, slower than float32. With dot products only, small models (LeNet on this
# project's CI CPU: 4,760 vs 7,520 samples/s) still train slower in bfloat16 than in float32.
BF16_UNITS = (("amx_bf16", "matrix units"), ("avx512_bf16", "dot products"), ("bf16", "dot products"))


def cpu_bf16_support() -> str | None:
    """"matrix units", "dot products" or "none" for this CPU's bfloat16; None when this PyTorch cannot tell."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:
        return None
    found = capabilities()
    return next((kind for name, kind in BF16_UNITS if found.get(name)), "none")
