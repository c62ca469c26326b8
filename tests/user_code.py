"""Classes a user might plug in from config (+callbacks.NAME._target_=user_code.X, model._target_=...),
used by the tests as a user's own module would be."""

import gc
import json
import os
import signal
import time
from pathlib import Path

from dlcli.engine.callbacks import Callback


class Recorder(Callback):
    """Writes every hook call to a JSON file as the run goes (so another process can read it)."""

    def __init__(self, path: str):
        self.path, self.calls, self.seen = Path(path), [], set()

    def _note(self, *call):
        self.calls.append(list(call))
        self.path.write_text(json.dumps(self.calls))

    def on_fit_start(self, session, state):
        self._note("fit_start", state.epoch)

    def on_epoch_start(self, epoch):
        self.seen.clear()  # batch hooks are noted once per epoch
        self._note("epoch_start", epoch)

    def on_after_backward(self, model):
        if "after_backward" not in self.seen:
            self.seen.add("after_backward")
            self._note("after_backward", all(p.grad is not None for p in model.parameters() if p.requires_grad))

    def on_batch_end(self, batch_size, loss):
        if "batch_end" not in self.seen:
            self.seen.add("batch_end")
            self._note("batch_end", batch_size, float(loss) > 0)

    def on_epoch_end(self, state, row, improved):
        self._note("epoch_end", row["epoch"], state.epoch, improved)

    def on_fit_end(self, state, status):
        self._note("fit_end", status)


class RaiseAt(Callback):
    """A buggy callback: raises ZeroDivisionError at the end of `epoch`."""

    def __init__(self, epoch: int = 2):
        self.epoch = epoch

    def on_epoch_end(self, state, row, improved):
        if row["epoch"] == self.epoch:
            1 / 0


class KillAt(Callback):
    """SIGKILLs its own process at the end of `epoch` (once: `marker` remembers), after pausing
    `pause` seconds at the end of `pause_at` so that a checkpoint write falls in between."""

    def __init__(self, epoch: int, marker: str, pause_at: int = 0, pause: float = 0.0):
        self.epoch, self.marker, self.pause_at, self.pause = epoch, Path(marker), pause_at, pause

    def on_epoch_end(self, state, row, improved):
        if self.marker.exists():
            return
        if row["epoch"] == self.pause_at:
            time.sleep(self.pause)
        if row["epoch"] == self.epoch:
            self.marker.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)


class CtrlCAt(Callback):
    """Presses Ctrl-C (a real SIGINT) in the middle of `epoch`."""

    def __init__(self, epoch: int, batch: int = 2, marker: str | None = None):
        self.epoch, self.batch, self.current, self.seen = epoch, batch, 0, 0
        self.marker = Path(marker) if marker else None  # once only: a resumed run is not stopped again

    def on_epoch_start(self, epoch):
        self.current, self.seen = epoch, 0

    def on_batch_end(self, batch_size, loss):
        self.seen += 1
        if (self.current, self.seen) == (self.epoch, self.batch) and not (self.marker and self.marker.exists()):
            if self.marker:
                self.marker.write_text("pressed")
            signal.raise_signal(signal.SIGINT)


class NotACallback:
    def __init__(self):
        pass


class BuggyNet(__import__("torch").nn.Module):
    """A user's model with a bug in its constructor."""

    def __init__(self, input_shape, num_outputs, width: int = 8):
        super().__init__()
        self.layers = [width] + None  # TypeError: the user's bug, which must keep its traceback


class NetThatBreaksInForward(__import__("torch").nn.Module):
    """A user's model whose forward pass fails once training starts (after the dry run)."""

    def __init__(self, input_shape, num_outputs):
        super().__init__()
        import torch

        self.linear = torch.nn.Linear(int(__import__("math").prod(input_shape)), num_outputs)

    def forward(self, x):
        if self.training:
            raise ValueError("the user's forward pass has a bug")
        return self.linear(x.flatten(1))


class SoftmaxNet(__import__("torch").nn.Module):
    """The classic mistake: a Softmax at the end of a model trained with cross-entropy."""

    def __init__(self, input_shape, num_outputs):
        from torch import nn

        super().__init__()
        features = int(__import__("math").prod(input_shape))
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, num_outputs), nn.Softmax(dim=1))

    def forward(self, x):
        return self.net(x)


class SpikeNet(__import__("torch").nn.Module):
    """An MLP whose outputs are blown up on one training step: a gradient spike. The training steps
    are counted in a buffer, which checkpoints keep: a resumed run spikes at the same step."""

    def __init__(self, input_shape, num_outputs, spike_at: int = 60):
        import torch
        from torch import nn

        super().__init__()
        features = int(__import__("math").prod(input_shape))
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, num_outputs))
        self.spike_at = spike_at
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if int(self.calls) == self.spike_at:
                return out * 1000.0
        return out


class BreaksInEval(__import__("torch").nn.Module):
    """Trains fine; refuses to run in eval mode outside validation's no-grad batches of its own size."""

    def __init__(self, input_shape, num_outputs):
        from torch import nn

        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(__import__("math").prod(input_shape)), num_outputs))

    def forward(self, x):
        if not self.training and len(x) == 256:  # the diagnostics' look at one batch of 256
            raise RuntimeError("this model cannot be looked at like that")
        return self.net(x)


class NanOnRankOne(__import__("torch").nn.Module):
    """A linear model whose outputs become NaN on rank 1 only, from its `after`-th training batch:
    one rank's divergence, which every rank must agree to stop on."""

    def __init__(self, input_shape, num_outputs: int, after: int = 20):
        super().__init__()
        import torch

        self.linear = torch.nn.Linear(int(torch.tensor(input_shape).prod()), num_outputs)
        self.after, self.calls = after, 0

    def forward(self, x):
        import torch.distributed as dist

        out = self.linear(x.flatten(1))
        if self.training and dist.is_initialized() and dist.get_rank() == 1:
            self.calls += 1
            if self.calls >= self.after:
                return out * float("nan")
        return out


class RaiseOnBatch(Callback):
    """A buggy callback that fails in the middle of an epoch (not at its end)."""

    def __init__(self, batch: int = 3):
        self.batch, self.seen = batch, 0

    def on_batch_end(self, batch_size, loss):
        self.seen += 1
        if self.seen == self.batch:
            raise ValueError("the callback broke mid-epoch")


class NextTokenTable(__import__("torch").nn.Module):
    """The smallest language model: an embedding of each token read straight out as the next
    token's logits (a learned bigram table). Causal by construction (position t reads token t only)."""

    def __init__(self, input_shape, num_outputs: int, vocab_size: int | None = None, causal: bool = True):
        super().__init__()
        import torch

        assert vocab_size is not None, "dl passes vocab_size for token data"
        self.vocab_size = vocab_size  # what dl's dry run reads to give it token ids
        self.table = torch.nn.Embedding(vocab_size, num_outputs)

    def forward(self, x):
        return self.table(x)


class DescribeProcess(Callback):
    """Writes what a process is as it starts training (its arguments, import path, main module,
    signal handlers, environment) to a JSON file: tests/forked_dl.py's forked `dl` against a real one."""

    def __init__(self, path: str):
        self.path = path

    def on_fit_start(self, session, state):
        import sys

        main = sys.modules["__main__"]
        handlers = {name: getattr(handler, "__qualname__", repr(handler))
                    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGPIPE", "SIGCHLD") if (handler := signal.getsignal(getattr(signal, name)))}
        Path(self.path).write_text(json.dumps({
            "argv": sys.argv, "path": sys.path, "main": [getattr(main, "__file__", None), main.__spec__.name if main.__spec__ else None],
            "handlers": handlers, "mask": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
            "cwd": os.getcwd(), "session": os.getsid(0) == os.getpid(), "marker": os.environ.get("DL_TEST_MARKER"),
            "gc_threshold": gc.get_threshold()}))
