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


# the instruction sets that compute in bfloat16 (x86's AVX512-BF16 and AMX, Arm's BF16 extension);
# without one of them a CPU converts every bfloat16 operand to float32 and back, slower than float32
NATIVE_BF16 = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_has_native_bf16() -> bool | None:
    """Does this CPU compute in bfloat16 itself? None when this PyTorch cannot tell."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:
        return None
    found = capabilities()
    return any(bool(found.get(name)) for name in NATIVE_BF16)
