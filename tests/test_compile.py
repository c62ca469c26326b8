"""trainer.compile=true: steps compiled before the first epoch (reported apart), no trace of the
warm-up in what is trained, plain checkpoints, exact resume, and a stated fallback where it fails.

torch.compile's default backend (inductor) takes tens of seconds to compile even a small model
on the CPU, so these tests compile with its `eager` backend, which runs dynamo's capture and
guards (what trips a model) without generating kernels; benchmarks/gpu.py compiles for real."""

import csv
import functools

import pytest
import torch

from conftest import quiet_reporter, run_cli
from dlcli.config.compose import compose
from dlcli.engine.checkpoint import load_checkpoint
from dlcli.engine.compiled import batch_sizes
from dlcli.engine.distributed import World
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest
from test_engine import InterruptAt

STEPS = ["trainer.epochs=3", "trainer.progress=false", "model.dropout=0.3", "model.batch_norm=true", "trainer.batch_size=50"]


@pytest.fixture
def eager_compile(monkeypatch):
    import torch._dynamo as dynamo

    dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    yield
    dynamo.reset()


def rows(run) -> list[dict]:
    return list(csv.DictReader((run.run_dir / "metrics.csv").open()))


@pytest.mark.slow  # compiles and trains twice: 2.1-5.2 s in the fast lane
def test_a_compiled_run_trains_what_the_plain_one_does_and_saves_a_plain_checkpoint(workdir, eager_compile):
    plain = train(RunRequest(compose([*STEPS, "name=plain"]), [], quiet_reporter()))
    compiled = train(RunRequest(compose([*STEPS, "trainer.compile=true"]), [], quiet_reporter()))
    log = (compiled.run_dir / "train.log").read_text()
    assert "trainer.compile=true: compiled the training and evaluation steps in" in log
    for a, b in zip(rows(plain), rows(compiled), strict=True):  # the warm-up moved no statistics and drew no dropout
        assert [a[k] for k in ("train_loss", "val_loss")] == [b[k] for k in ("train_loss", "val_loss")]
    weights = load_checkpoint(compiled.run_dir / "checkpoints" / "best.pt")["model"]
    assert not any("_orig_mod" in key for key in weights)
    assert compiled.summary["test"] == plain.summary["test"]
    assert run_cli("eval", str(compiled.run_dir)).exit_code == 0  # loads without compile


@pytest.mark.slow  # compiles and trains: 2.7-5.8 s in the fast lane
def test_a_compiled_run_resumes_exactly(workdir, eager_compile):
    overrides = [*STEPS, "trainer.compile=true", "trainer.epochs=4"]
    reference = train(RunRequest(compose([*overrides, "name=reference"]), [], quiet_reporter()))
    stopped = train(RunRequest(compose(overrides), [], quiet_reporter(), callbacks=[InterruptAt(epoch=3, batch=5)]))
    assert stopped.status == "interrupted"
    resumed = train(RunRequest(compose([f"resume={stopped.run_dir}"]), [f"resume={stopped.run_dir}"], quiet_reporter()))
    for a, b in zip(rows(reference), rows(resumed), strict=True):
        assert [a[k] for k in ("epoch", "train_loss", "val_loss")] == [b[k] for k in ("epoch", "train_loss", "val_loss")]
    assert resumed.summary["test"] == reference.summary["test"]


@pytest.mark.slow  # the first torch.compile in a process: 4.8 s in the fast lane
def test_where_compiling_fails_the_run_trains_without_it_says_why_and_keeps_no_trace(workdir, monkeypatch):
    """The compiler fails at the evaluation step, after a training step of the warm-up moved the
    batch-norm statistics and drew dropout: the run trains as a plain one would."""
    real_compile = torch.compile

    def failing_compile(module, **settings):
        if not isinstance(module, torch.nn.Module) or module.training is False:
            return real_compile(module, backend="eager", **settings)

        class FailsInEval(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = module

            def forward(self, x):
                if not self.inner.training:
                    raise RuntimeError("no C++ compiler found for the inductor backend\nmore detail")
                return self.inner(x)

        return FailsInEval()

    monkeypatch.setattr(torch, "compile", failing_compile)
    plain = train(RunRequest(compose([*STEPS, "name=plain"]), [], quiet_reporter()))
    result = train(RunRequest(compose([*STEPS, "trainer.compile=true"]), [], quiet_reporter()))
    assert result.summary["status"] == "completed"
    log = (result.run_dir / "train.log").read_text()
    assert ("trainer.compile=true: torch.compile failed here (RuntimeError: no C++ compiler found for the inductor backend): "
            "training without it") in log
    for a, b in zip(rows(plain), rows(result), strict=True):
        assert [a[k] for k in ("train_loss", "val_loss")] == [b[k] for k in ("train_loss", "val_loss")]


@pytest.mark.slow  # compiles: 4.9 s in the fast lane
def test_an_unreadable_image_during_the_warm_up_is_the_runs_failure_not_the_compilers(workdir, monkeypatch, eager_compile):
    from dlcli.engine.batches import TensorBatches
    from dlcli.errors import UserError

    def unreadable(self, count):
        raise UserError("photos/cat/003.png cannot be decoded (OSError: truncated): remove it or replace it")

    monkeypatch.setattr(TensorBatches, "peek", unreadable)
    result = train(RunRequest(compose([*STEPS, "trainer.compile=true"]), [], quiet_reporter()))
    assert result.summary["status"] == "failed" and "003.png cannot be decoded" in result.summary["message"]


def test_the_batch_sizes_an_epoch_has_are_the_ones_compiled():
    assert batch_sizes(100, 32, World(), training=True) == [32, 4]
    assert batch_sizes(97, 32, World(), training=True) == [32]  # a lone last sample is dropped
    assert batch_sizes(96, 32, World(), training=True) == [32]
    assert batch_sizes(10, 32, World(), training=True) == [10]
    assert batch_sizes(97, 32, World(), training=False) == [32, 1]
    assert batch_sizes(100, 32, World(rank=1, size=2), training=True) == [16, 2]
    # evaluation: the rank's contiguous shard (distributed.shard), batched within it
    assert batch_sizes(101, 64, World(rank=0, size=2), training=False) == [50]
    assert batch_sizes(101, 64, World(rank=1, size=2), training=False) == [51]
    # every rank warms up as many steps as the others, even where its parts of two batches are alike
    assert batch_sizes(23, 12, World(rank=0, size=2), training=True) == [6, 6]
    assert batch_sizes(23, 12, World(rank=1, size=2), training=True) == [6, 5]
