"""Checkpoints: model, optimizer, scheduler, grad scaler, RNG and run progress, in one file.

Everything saved is a tensor or a plain container, so checkpoints load with
torch.load(weights_only=True): opening someone's run never executes their pickled code.

When they are written (the `Checkpointer` callback), so that a 3 ms epoch does not pay for a
full torch.save and nothing per epoch copies the model:
- an epoch that ends `trainer.checkpoint_every` seconds or more after the last write is written
  to last.pt at once (and to best.pt first when it is the best so far);
- a best epoch in between is kept as an in-memory snapshot (its weights could not be recovered
  later) and written with the next write;
- the end of the run writes the final epoch (completed, or stopped between epochs), or moves
  last.pt up to the best snapshot when the live weights are mid-epoch (Ctrl-C, failure);
- Ctrl-C loses no finished epoch: it stops at once when last.pt is up to date, else the epoch in
  progress finishes (epochs are short then: that is why last.pt lagged) and is written first;
- a write (best.pt, last.pt and the progress they record) is one step a Ctrl-C cannot split, and
  so is an epoch's bookkeeping in `fit` and the final write: a Ctrl-C there, first or second, is
  held until the step is done (dlcli.system.interrupts), so the end of a run never loses an epoch;
- SIGKILL (or a second Ctrl-C mid-epoch) loses at most the epochs since the last write: about
  `trainer.checkpoint_every` seconds. Resume continues from last.pt and cuts metrics.csv back to it.
- files are written fresh and renamed into place (dlcli.system.files): never half a checkpoint, never
  through a link; a full disk is one line (DiskFull) and the run stays resumable.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import time
import warnings
from pathlib import Path

import torch

from dlcli.engine.callbacks import Callback
from dlcli.engine.checkpoint_shape import check_checkpoint, layout_problem, optimizer_state_problem
from dlcli.engine.state import FitState, Session
from dlcli.errors import UserError, first_line
from dlcli.system.files import copy_file, write_atomically
from dlcli.system.interrupts import GracefulStop, ctrl_c_deferred, reached

FORMAT = 2  # 2: run progress without the per-epoch history (that is metrics.csv)


def checkpoint_payload(session: Session, state: FitState) -> dict:
    """The live state of the run, by reference (torch.save serializes it; `snapshot` copies it)."""
    return {
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


def snapshot(session: Session, state: FitState, reuse: dict | None = None) -> dict:
    """A copy of the payload that later training steps cannot change. Tensors go to the CPU (where
    a saved checkpoint lives anyway), so a snapshot never takes accelerator memory; the tensors
    of `reuse`, an older snapshot no longer needed, are overwritten in place where they fit,
    which spares an allocation per tensor per epoch."""
    return _copy(checkpoint_payload(session, state), reuse)


def _copy(value, reuse=None):
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if (isinstance(reuse, torch.Tensor) and reuse.shape == value.shape and reuse.dtype == value.dtype
                and reuse.device.type == "cpu"):
            return reuse.copy_(value)
        return value.clone() if value.device.type == "cpu" else value.to("cpu")
    if isinstance(value, dict):
        reuse = reuse if isinstance(reuse, dict) else {}
        return {k: _copy(v, reuse.get(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        reuse = reuse if isinstance(reuse, (list, tuple)) and len(reuse) == len(value) else [None] * len(value)
        return type(value)(_copy(v, r) for v, r in zip(value, reuse))
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    return copy.deepcopy(value)


def write_payload(path: Path, payload: dict) -> None:
    """A whole checkpoint or none: a fresh temporary file replaces `path` (never a half-written
    checkpoint, never a write through a link); a full disk is a DiskFull error naming the size."""
    write_atomically(path, lambda file: torch.save(payload, file), binary=True, size_hint=_payload_bytes(payload))


def _payload_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_payload_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_payload_bytes(v) for v in value)
    return 0


def save_checkpoint(path: Path, session: Session, state: FitState) -> None:
    write_payload(path, checkpoint_payload(session, state))


def copy_checkpoint(source: Path, target: Path) -> None:
    copy_file(source, target)


def load_checkpoint(path: Path) -> dict:
    """A dl checkpoint, read with weights_only=True: tensors and plain containers, never code;
    and of a dl checkpoint's shape (dlcli.engine.checkpoint_shape) before anything uses it."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's advice on refusing a file is not for our users
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"checkpoint {path} cannot be read safely: it holds pickled Python objects besides tensors, and dl "
            "never unpickles those (they can run code); it was not written by dl"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:  # truncated, corrupt or not a torch file
        detail = first_line(exc)
        raise UserError(f"checkpoint {path} cannot be read: {detail}") from None
    return check_checkpoint(payload, path)


def saved_state(payload: dict) -> FitState:
    fields = {k: v for k, v in payload["state"].items() if k in FitState.__dataclass_fields__}
    return FitState(**fields)  # format 1 also held the history, which now lives in metrics.csv


def load_weights(model, payload: dict, config_path: Path | str) -> None:
    """The checkpoint's weights into a model built from the run's config; a config edited since
    (another width, another model) is the user's to fix, in one line."""
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as exc:
        detail = first_line(exc)
        raise UserError(f"the checkpoint does not fit the model built from {config_path} (was it edited?): {detail}") from None


def restore(session: Session, payload: dict, config_path: Path | str = "config.yaml", source: Path | str = "the checkpoint") -> FitState:
    """Put the model, optimizer, scheduler, scaler and RNGs back exactly as they were saved (a
    payload load_checkpoint has checked; what torch checks itself inside its state dicts is one
    line here, naming the part that does not fit)."""
    load_weights(session.model, payload, config_path)
    steps = [("optimizer", lambda: _load_optimizer(session.optimizer, payload["optimizer"])),
             ("scheduler", lambda: _load_as_laid_out(session.schedule, payload["scheduler"], "scheduler"))]
    if session.scaler is not None and payload["scaler"]:
        steps.append(("scaler", lambda: _load_as_laid_out(session.scaler, payload["scaler"], "scaler")))
    steps += [("rng.torch", lambda: torch.set_rng_state(payload["rng"]["torch"])),
              ("rng.shuffle", lambda: session.generator.set_state(payload["rng"]["shuffle"]))]
    if session.device.type == "cuda" and payload["rng"]["cuda"]:
        steps.append(("rng.cuda", lambda: torch.cuda.set_rng_state_all(payload["rng"]["cuda"])))
    for part, step in steps:
        try:
            step()
        except (ValueError, RuntimeError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise UserError(f"{source}: its {part} does not fit the run built from {config_path} (was it edited?): "
                            f"{first_line(exc, default=type(exc).__name__)}") from None
    return saved_state(payload)


def _load_optimizer(optimizer, saved: dict) -> None:
    optimizer.load_state_dict(saved)  # torch checks the parameter groups against the optimizer's
    problem = optimizer_state_problem(optimizer)
    if problem:
        raise ValueError(problem)


def _load_as_laid_out(component, saved: dict, part: str) -> None:
    """A schedule or grad scaler's saved state, if it has the layout of the component's own
    (torch assigns every saved field as it is, checking nothing)."""
    problem = layout_problem(saved, component.state_dict(), part)
    if problem:
        raise ValueError(problem)
    component.load_state_dict(saved)


class Checkpointer(Callback):
    """last.pt and best.pt of a run, written at most every `every_seconds` (see the module doc),
    and the run's Ctrl-C: while it fits, the first Ctrl-C stops at once if last.pt holds the last
    finished epoch, else lets the epoch in progress finish and writes it first; a second Ctrl-C
    stops at once."""

    def __init__(self, directory: Path, session: Session, every_seconds: float):
        self.last, self.best = directory / "last.pt", directory / "best.pt"
        self.session, self.every_seconds = session, float(every_seconds)
        self._best_pending: dict | None = None  # a snapshot of a best epoch newer than best.pt
        self._live: FitState | None = None  # fit's own state: what has finished
        self._in_epoch = False  # between an epoch's start and its end the live weights are mid-epoch
        # The run's stop requests (Ctrl-C, SIGTERM, SIGHUP): the first waits for the epoch in progress
        # only while a finished epoch is unsaved (can_wait), since otherwise last.pt holds everything.
        self._stop = GracefulStop("this epoch", can_wait=self.unsaved_epoch)
        self._written_at = time.monotonic()
        self.saved_state: FitState | None = None  # the progress last.pt holds (known from fit start on)

    def on_fit_start(self, session, state) -> None:
        self._written_at = time.monotonic()
        self._live = state
        self.saved_state = dataclasses.replace(state)  # fit starts from what last.pt holds
        if not self.session.world.active:  # with several ranks, fit's own GracefulStop stops every rank together
            self._stop.begin()

    def unsaved_epoch(self) -> bool:
        """Has an epoch finished that last.pt does not hold yet?"""
        return self._live is not None and self.saved_state is not None and self._live.epoch > self.saved_state.epoch

    def on_epoch_start(self, epoch: int) -> None:
        self._in_epoch = True
        if self._stop.requested:  # Ctrl-C during the last epoch: keep it, then stop
            if self.unsaved_epoch():  # the weights are still exactly the finished epoch's
                self._write(best=self._best_pending, last=checkpoint_payload(self.session, self._live))
            raise KeyboardInterrupt

    def on_epoch_end(self, state: FitState, row: dict, improved: bool) -> None:
        if self._stop.requested or time.monotonic() - self._written_at >= self.every_seconds:
            live = checkpoint_payload(self.session, state)
            self._write(best=live if improved else self._best_pending, last=live)
        elif improved:  # the best weights cannot be recovered later: keep them now
            self._best_pending = snapshot(self.session, state, reuse=self._best_pending)
        self._in_epoch = False

    def on_fit_end(self, state: FitState, status: str) -> None:
        # The final write happens while Ctrl-C is still ours, and is held during it: a Ctrl-C now
        # (a first or a second) must find every finished epoch saved, never a half-updated pair.
        try:
            with ctrl_c_deferred():
                reached("checkpoint:final")
                if status == "completed" or (not self._in_epoch and self.unsaved_epoch()):
                    # the live weights are exactly the last finished epoch's (stopped between epochs)
                    if self.unsaved_epoch() or self._best_pending is not None:
                        self._write(best=self._best_pending, last=checkpoint_payload(self.session, state))
                elif self._best_pending is not None:
                    # The live weights are mid-epoch (or NaN): the newest whole state is the best snapshot,
                    # a complete checkpoint of its epoch, so last.pt moves up to it too.
                    self._write(best=self._best_pending, last=self._best_pending)
        finally:
            self._stop.end()
        if self._stop.requested and status == "completed":
            raise KeyboardInterrupt  # pressed during the last epoch, which is now saved

    def _write(self, best: dict | None, last: dict) -> None:
        """best.pt, last.pt and the progress they hold, as one step a Ctrl-C cannot split (it is
        held until the step is done, then acts)."""
        with ctrl_c_deferred():
            if best is not None:  # best.pt first: last.pt must never name a best epoch that best.pt lacks
                write_payload(self.best, best)
                reached("checkpoint:best_written")
            if last is best:
                copy_checkpoint(self.best, self.last)
            else:
                write_payload(self.last, last)
            reached("checkpoint:last_written")
            self.saved_state = saved_state(last)
            self._best_pending = None
            self._written_at = time.monotonic()
