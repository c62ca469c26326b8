"""Callbacks: how anything reacts to training without a branch inside `fit`.

Checkpointing, metrics.csv, the printed epoch lines, progress bars, sweep pruning and a user's own
class (`+callbacks.mine._target_=mypkg.MyCallback`) all implement the same few hooks. `fit` calls
them in a plain loop, in the order given; a hook that is not overridden costs nothing, and the
per-batch hooks are only called when some callback overrides them.
"""

from __future__ import annotations

import inspect
import traceback
from typing import TYPE_CHECKING, Iterable

from dlcli.config.build import call_target, checked_target, settings_checked
from dlcli.errors import RunFailed, TrialPruned, UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from dlcli.engine.state import FitState, Session


class Callback:
    """Override the hooks you need; each does nothing by default.

    Order within one epoch: on_epoch_start, then per batch on_after_backward (gradients exist,
    before the optimizer step) and on_batch_end, then on_epoch_end once validation is scored.
    on_fit_end always runs, with the run's status: completed, interrupted, failed or pruned.
    """

    def on_fit_start(self, session: Session, state: FitState) -> None:
        """Before the first epoch (state.epoch > 0 when a run is resumed)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Before the epoch's first batch."""

    def on_after_backward(self, model: nn.Module) -> None:
        """After loss.backward() and gradient clipping, before optimizer.step()."""

    def on_batch_end(self, batch_size: int, loss: torch.Tensor) -> None:
        """After the optimizer step. `loss` is the batch's mean loss, still on the device:
        reading it (float(loss)) waits for the device, so do it sparingly."""

    def on_epoch_end(self, state: FitState, row: dict, improved: bool) -> None:
        """After validation: `row` is the epoch's metrics.csv row; `improved` is True when this
        epoch is the best so far on the monitored metric. Raise TrialPruned to stop a sweep trial."""

    def on_fit_end(self, state: FitState, status: str) -> None:
        """Once, however the fit ended: completed, interrupted, failed or pruned."""


class CallbackFailed(RunFailed):
    """A callback raised: the run is marked failed and the traceback kept for train.log."""

    def __init__(self, callback: Callback, hook: str, error: BaseException):
        self.callback, self.hook, self.error = callback, hook, error
        self.traceback = "".join(traceback.format_exception(error))
        super().__init__(f"callback {type(callback).__name__}.{hook} raised {type(error).__name__}: {error}")


# Exceptions a callback raises on purpose; anything else is a bug in the callback.
_PASS_THROUGH = (KeyboardInterrupt, TrialPruned, RunFailed, UserError)


HOOKS = ("on_fit_start", "on_epoch_start", "on_after_backward", "on_batch_end", "on_epoch_end", "on_fit_end")


def _overrides(callback, hook: str) -> bool:
    """Does the callback do something in this hook? (A class need not subclass Callback.)"""
    return _class_overrides(type(callback), hook)


def _class_overrides(cls: type, hook: str) -> bool:
    method = getattr(cls, hook, None)
    return method is not None and method is not getattr(Callback, hook)


class CallbackList:
    """Calls each hook on every callback that overrides it, in order."""

    def __init__(self, callbacks: Iterable[Callback]):
        self.callbacks = list(callbacks)
        self._hooks = {
            hook: [c for c in self.callbacks if _overrides(c, hook)]
            for hook in HOOKS
        }

    def _call(self, hook: str, *args) -> None:
        for callback in self._hooks[hook]:
            try:
                getattr(callback, hook)(*args)
            except _PASS_THROUGH:
                raise
            except Exception as exc:
                raise CallbackFailed(callback, hook, exc) from exc

    def on_fit_start(self, session, state) -> None:
        self._call("on_fit_start", session, state)

    def on_epoch_start(self, epoch: int) -> None:
        self._call("on_epoch_start", epoch)

    def on_epoch_end(self, state, row: dict, improved: bool) -> None:
        self._call("on_epoch_end", state, row, improved)

    def on_fit_end(self, state, status: str) -> None:
        """Every callback's on_fit_end runs (one may release what another holds: a terminal, a
        signal handler, a file) even when an earlier one raises; the first error is raised after."""
        first_error = None
        for callback in self._hooks["on_fit_end"]:
            try:
                callback.on_fit_end(state, status)
            except _PASS_THROUGH as exc:
                first_error = first_error or exc
            except Exception as exc:
                first_error = first_error or CallbackFailed(callback, "on_fit_end", exc)
        if first_error is not None:
            raise first_error

    @property
    def batch_end(self):
        """A per-batch function for the inner loop, or None when no callback wants batches."""
        if not self._hooks["on_batch_end"]:
            return None
        return lambda batch_size, loss: self._call("on_batch_end", batch_size, loss)

    @property
    def after_backward(self):
        if not self._hooks["on_after_backward"]:
            return None
        return lambda model: self._call("on_after_backward", model)


def build_callbacks(node, group: str = "callbacks", check_only: bool = False) -> list[Callback]:
    """The user's callbacks from the config's `callbacks:` mapping (name -> node with _target_),
    in the mapping's order. An entry set to null is skipped, so an experiment can switch one off.
    With `check_only`, each entry's settings are checked against its class and nothing is built."""
    if node is None:
        return []
    callbacks = []
    for name, entry in node.items():
        if entry is None:
            continue
        target = checked_target(entry, f"{group}.{name}")
        # what the target is, known before it is called: a class with some hook (a function such
        # as os.system is never called in the hope that it returns a callback)
        if not inspect.isclass(target) or not any(_class_overrides(target, hook) for hook in HOOKS):
            kind = f"a {target.__name__} class" if inspect.isclass(target) else "not a class"
            raise UserError(
                f"{group}.{name}._target_={entry._target_} is {kind} with none of the hooks {', '.join(HOOKS)}: "
                "name a subclass of dlcli.engine.callbacks.Callback that overrides some"
            )
        if not check_only:
            with settings_checked():  # just now
                callbacks.append(call_target(entry, f"{group}.{name}"))
    return callbacks
