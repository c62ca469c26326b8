"""trainer.compile=true: the model's training and evaluation steps through `torch.compile`.

torch.compile compiles on the first call, which would make the first epoch look slow and hide the
cost. So both steps are compiled here, before training, on one batch of the run's own data: a
training forward and backward, then an evaluation forward. That warm-up must leave no trace: the
global random state is forked (dropout), the model's buffers (batch-norm statistics) are put back
and the gradients dropped, so a compiled run trains exactly what it would have trained.

The compiled modules wrap the model without changing it: checkpoints hold the plain model's
weights, which load (and resume, predict, export) with or without compile. Where compiling fails
(no C++ compiler for the CPU backend, an operation the compiler cannot take) the run trains
without it and its log says why.
"""

from __future__ import annotations

import contextlib
import time

import torch

from dlcli.engine.distributed import World
from dlcli.engine.loop import autocast
from dlcli.engine.state import Session
from dlcli.errors import first_line


def compile_session(session: Session) -> str:
    """Compile the session's steps now; the line for the run log (the seconds it took, or why not)."""
    plain_train, plain_eval = session.train_model, session.eval_model
    started = time.perf_counter()
    try:
        # static shapes: an epoch has at most two batch sizes per step kind (full, and a short last
        # one), each compiled now; dynamic shapes would recompile everything when the second comes
        session.train_model = torch.compile(session.training_module, dynamic=False)
        session.eval_model = torch.compile(session.model, dynamic=False)
        _warm_up(session)
    except Exception as exc:  # the compiler's own errors are many (BackendCompilerFailed, InductorError, ...)
        session.train_model, session.eval_model = plain_train, plain_eval
        import torch._dynamo as dynamo

        dynamo.reset()
        return f"trainer.compile=true: torch.compile failed here ({type(exc).__name__}: {first_line(exc, limit=160)}): training without it"
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
    if world.active:  # evaluation: contiguous shards, batched within them (no collective in its forward)
        shard = len(torch.tensor_split(torch.arange(count), world.size)[world.rank])
        sizes = {size for size in (min(batch_size, shard), shard % batch_size) if size}
    return sorted(sizes, reverse=True)


def _warm_up(session: Session) -> None:
    """The training step's forward and backward and the evaluation forward at every batch size an
    epoch has, leaving no trace."""
    model = session.model
    saved = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    devices = [session.device.index or 0] if session.device.type == "cuda" else []
    train_sizes = batch_sizes(len(session.train_data), session.step.batch_size, session.world, training=True)
    with torch.random.fork_rng(devices=devices), _no_sync(session.train_model):
        if train_sizes:
            x, y = session.train_data.peek(train_sizes[0])
            model.train()
            for size in train_sizes:
                with autocast(x.device, session.step.precision):
                    loss = session.loss_fn(session.train_model(x[:size]), y[:size])
                loss.backward()
            model.zero_grad(set_to_none=True)
        if session.val_data is not None:
            eval_sizes = batch_sizes(len(session.val_data), session.eval_batch_size, session.world, training=False)
            x, _ = session.val_data.peek(eval_sizes[0]) if eval_sizes else (None, None)
            model.eval()
            with torch.no_grad(), autocast(session.device, session.step.precision):
                for size in eval_sizes:
                    session.eval_model(x[:size])
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(saved[name])
    model.train()


def _no_sync(module):
    """DistributedDataParallel's no_sync: the warm-up's gradients are thrown away, so they need not
    be averaged over the processes (each compiles on its own)."""
    inner = getattr(module, "_orig_mod", module)
    return inner.no_sync() if hasattr(inner, "no_sync") else contextlib.nullcontext()
