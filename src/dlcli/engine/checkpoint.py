"""Checkpoints: model, optimizer, scheduler, grad scaler, RNG and run progress, in one file.

Everything saved is a tensor or a plain container, so checkpoints load with
torch.load(weights_only=True): opening someone's run never executes their pickled code.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import torch

from dlcli.engine.fit import FitState, Session
from dlcli.errors import UserError

FORMAT = 1


def save_checkpoint(path: Path, session: Session, state: FitState) -> None:
    payload = {
        "format": FORMAT,
        "model": session.model.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "scheduler": session.schedule.state_dict(),
        "scaler": session.scaler.state_dict() if session.scaler is not None else {},
        "state": dataclasses.asdict(state),
        "rng": {
            "torch": torch.get_rng_state(),
            "shuffle": session.generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if session.device.type == "cuda" else [],
        },
    }
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)  # never leave a half-written checkpoint


def copy_checkpoint(source: Path, target: Path) -> None:
    temporary = target.with_suffix(".tmp")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"checkpoint {path} cannot be read: {str(exc).splitlines()[0]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a dl checkpoint (format {FORMAT})")
    return payload


def restore(session: Session, payload: dict) -> FitState:
    """Put the model, optimizer, scheduler, scaler and RNGs back exactly as they were saved."""
    session.model.load_state_dict(payload["model"])
    session.optimizer.load_state_dict(payload["optimizer"])
    session.schedule.load_state_dict(payload["scheduler"])
    if session.scaler is not None and payload["scaler"]:
        session.scaler.load_state_dict(payload["scaler"])
    torch.set_rng_state(payload["rng"]["torch"])
    session.generator.set_state(payload["rng"]["shuffle"])
    if session.device.type == "cuda" and payload["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
    return FitState(**payload["state"])
