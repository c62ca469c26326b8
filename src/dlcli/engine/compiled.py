"""trainer.compile=true: the model's training and evaluation steps through `torch.compile`.

torch.compile compiles on the first call, which would make the first epoch look slow and hide the
cost. So both steps are compiled here, before training, on one batch of the run's own data: a
training forward and backward, then an evaluation forward. That warm-up must leave no trace: the
global random state is forked (dropout), the model's buffers (batch-norm statistics) are put back
and the gradients dropped, so the warm-up changes nothing the training starts from. (The compiled
kernels themselves may round differently from eager ones, and draw dropout masks their own way.)

The compiled modules wrap the model without changing it: checkpoints hold the plain model's
weights, which load (and resume, predict, export) with or without compile. Where compiling fails
(no C++ compiler for the CPU backend, an operation the compiler cannot take) a one-process run
trains without it and its log says why; with several processes it is a one-line failure.
"""

from __future__ import annotations

import contextlib
import logging
import time

import torch

from dlcli.engine.distributed import World, shard
from dlcli.engine.loop import autocast
from dlcli.engine.state import Session
from dlcli.errors import UserError, first_line


def compile_session(session: Session) -> str:
    """Compile the session's steps now; the line for the run log (the seconds it took, or why not).
    With several processes a failure is the run's (one line): a rank that fell back alone would
    take steps the others do not."""
    # torch's C++ builder warns that a CPU-only machine has no CUDA runtime: true, and no concern of the run's
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    # a process that trained before (k-fold's folds, a sweep worker's trials) starts clean; the public
    # reset loads the compiler (~1.7 s of imports) only here, not in every process that imports this module
    torch.compiler.reset()
    plain_train, plain_eval = session.train_model, session.eval_model
    started = time.perf_counter()
    try:
        # static shapes: an epoch has at most two batch sizes per step kind (full, and a short last
        # one), each compiled now; dynamic shapes would recompile everything when the second comes
        session.train_model = torch.compile(session.training_module, dynamic=False)
        session.eval_model = torch.compile(session.model, dynamic=False)
        _warm_up(session)
    except (UserError, torch.OutOfMemoryError):
        raise  # an image that cannot be read, a GPU too small: the run's own failures, not the compiler's
    except Exception as exc:  # the compiler's own errors are many (BackendCompilerFailed, InductorError, ...)
        session.train_model, session.eval_model = plain_train, plain_eval
        torch.compiler.reset()
        reason = f"{type(exc).__name__}: {first_line(exc, limit=160)}"
        if session.world.active:
            raise UserError(f"trainer.compile=true: torch.compile failed here ({reason}): train without it") from None
        return f"trainer.compile=true: torch.compile failed here ({reason}): training without it"
    seconds = time.perf_counter() - started
    return (f"trainer.compile=true: compiled the training and evaluation steps in {seconds:.1f}s before the first epoch "
            "(not counted in its samples/s)")


def batch_sizes(count: int, batch_size: int, world: World, training: bool) -> list[int]:
    """The sizes of the batches one pass over `count` samples gives this process: the full one and
    a shorter last one (training drops a lone last sample; several processes split each batch)."""
    sizes = {min(batch_size, count), count % batch_size} - {0}
    if training:
        sizes.discard(1)
    if world.active and training:
        # one size per global batch size, on every rank alike: each warm-up step is a step every rank
        # takes together (DistributedDataParallel's forward may broadcast buffers)
        return [len(torch.tensor_split(torch.arange(size), world.size)[world.rank])
                for size in sorted(sizes, reverse=True) if size >= 2 * world.size]
    if world.active:  # evaluation: this rank's contiguous shard, batched within it (no collective in its forward)
        part = len(shard(count, world))
        sizes = {size for size in (min(batch_size, part), part % batch_size) if size}
    return sorted(sizes, reverse=True)


def _warm_up(session: Session) -> None:
    """The training step's forward and backward and the evaluation forward at every batch size an
    epoch has, leaving no trace: the random state forked, the buffers put back and the gradients
    dropped however it ends."""
    model = session.model
    saved = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    device = session.device
    accelerator = device.type in ("cuda", "mps", "xpu")
    forked = torch.random.fork_rng(devices=[device.index or 0] if accelerator else [],
                                   device_type=device.type if accelerator else "cuda")
    train_sizes = batch_sizes(len(session.train_data), session.step.batch_size, session.world, training=True)
    try:
        with forked, _no_sync(session.train_model):
            if train_sizes:
                x, y = session.train_data.peek(train_sizes[0])
                model.train()
                for size in train_sizes:
                    with autocast(x.device, session.step.precision):
                        loss = session.loss_fn(session.train_model(x[:size]), y[:size])
                    loss.backward()
            if session.val_data is not None:
                eval_sizes = batch_sizes(len(session.val_data), session.eval_batch_size, session.world, training=False)
                if eval_sizes:
                    x, _ = session.val_data.peek(eval_sizes[0])
                    model.eval()
                    with torch.no_grad(), autocast(device, session.step.precision):
                        for size in eval_sizes:
                            session.eval_model(x[:size])
    finally:
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(saved[name])
        model.train()


def _no_sync(module):
    """DistributedDataParallel's no_sync: the warm-up's gradients are thrown away, so they need not
    be averaged over the processes (each compiles on its own)."""
    inner = getattr(module, "_orig_mod", module)
    return inner.no_sync() if hasattr(inner, "no_sync") else contextlib.nullcontext()
