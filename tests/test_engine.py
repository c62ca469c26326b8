import csv

import pytest
import torch

from conftest import quiet_reporter, read
from dlcli.config.compose import compose
from dlcli.engine.callbacks import Callback
from dlcli.engine.checkpoint import load_checkpoint
from dlcli.engine.device import select_device
from dlcli.engine.optim import parameter_groups
from dlcli.errors import UserError
from dlcli.experiment import build_experiment
from dlcli.models import MLP
from dlcli.tracking.plots import wait_for_pictures
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest


@pytest.mark.slow  # trains: over 3 CPU seconds in the fast lane
def test_default_experiment_learns_digits(workdir):
    result = train(RunRequest(compose(["trainer.progress=false"]), [], quiet_reporter()))
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    assert float(rows[-1]["train_loss"]) < 0.5 * float(rows[0]["train_loss"])
    assert result.summary["test"]["accuracy"] >= 0.95


@pytest.mark.slow  # trains: over 3 CPU seconds in the fast lane
def test_same_seed_repeats_exactly_and_another_seed_differs(workdir, fast):
    first = train(RunRequest(fast(), [], quiet_reporter())).summary
    second = train(RunRequest(fast(), [], quiet_reporter())).summary
    other = train(RunRequest(fast("seed=1"), [], quiet_reporter())).summary
    assert first["test"] == second["test"]
    assert first["best_val_accuracy"] == second["best_val_accuracy"]
    assert other["test"]["loss"] != first["test"]["loss"]


class InterruptAt(Callback):
    """Simulates Ctrl-C in the middle of an epoch."""

    def __init__(self, epoch, batch):
        self.at, self.epoch, self.batches = (epoch, batch), 0, 0

    def on_epoch_start(self, epoch):
        self.epoch, self.batches = epoch, 0

    def on_batch_end(self, batch_size, loss):
        self.batches += 1
        if (self.epoch, self.batches) == self.at:
            raise KeyboardInterrupt


@pytest.mark.slow  # trains: over 3 CPU seconds in the fast lane
def test_a_raw_keyboard_interrupt_keeps_what_last_pt_holds_and_resumes_exactly(workdir):
    # Not a Ctrl-C signal (see test_callbacks): KeyboardInterrupt raised mid-epoch, so the run
    # keeps what is saved (the start, or the best epoch's snapshot) and metrics.csv matches it.
    overrides = ["trainer.epochs=5", "model.dropout=0.3", "sched=onecycle", "trainer.progress=false"]
    reference = train(RunRequest(compose(overrides + ["name=reference"]), [], quiet_reporter()))
    stopped = train(RunRequest(compose(overrides), [], quiet_reporter(), callbacks=[InterruptAt(epoch=3, batch=7)]))
    assert stopped.status == "interrupted"
    kept = load_checkpoint(stopped.run_dir / "checkpoints" / "last.pt")["state"]["epoch"]
    assert kept == stopped.summary["epochs_completed"] <= 2
    assert len((stopped.run_dir / "metrics.csv").read_text().strip().splitlines()) == kept + 1
    resumed = train(RunRequest(compose([f"resume={stopped.run_dir}"]), [f"resume={stopped.run_dir}"], quiet_reporter()))
    assert resumed.status == "completed"
    ref_rows = list(csv.DictReader((reference.run_dir / "metrics.csv").open()))
    res_rows = list(csv.DictReader((resumed.run_dir / "metrics.csv").open()))
    for a, b in zip(ref_rows, res_rows, strict=True):
        assert [a[k] for k in ("epoch", "lr", "train_loss", "val_loss")] == [b[k] for k in ("epoch", "lr", "train_loss", "val_loss")]
    assert resumed.summary["test"] == reference.summary["test"]
    ref_weights = load_checkpoint(reference.run_dir / "checkpoints" / "last.pt")["model"]
    res_weights = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(ref_weights[k], res_weights[k]) for k in ref_weights)


@pytest.mark.slow  # trains: over 3 CPU seconds in the fast lane
def test_resume_refuses_a_completed_run_and_changed_settings(workdir, fast):
    done = train(RunRequest(fast(), [], quiet_reporter()))
    with pytest.raises(UserError, match="already completed"):
        train(RunRequest(compose([f"resume={done.run_dir}"]), [f"resume={done.run_dir}"], quiet_reporter()))
    with pytest.raises(UserError, match="cannot apply"):
        train(RunRequest(compose([f"resume={done.run_dir}", "optim.lr=1"]), [f"resume={done.run_dir}", "optim.lr=1"], quiet_reporter()))


@pytest.mark.slow  # trains: over 3 CPU seconds in the fast lane
@pytest.mark.pictures
def test_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(workdir):
    # SGD with momentum at lr 0.1 diverges on diabetes after a good first epoch.
    result = train(RunRequest(compose(["data=diabetes", "optim.lr=0.1", "trainer.epochs=10", "trainer.progress=false"]), [], quiet_reporter()))
    assert result.status == "failed"
    assert "optim.lr" in result.summary["message"] and "nan" in result.summary["message"].lower()
    last = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    best = load_checkpoint(result.run_dir / "checkpoints" / "best.pt")
    assert 1 <= last["state"]["epoch"] <= result.summary["epochs_completed"]  # a whole, resumable epoch
    assert best["state"]["epoch"] == result.summary["best_epoch"] >= 1
    assert all(torch.isfinite(t).all() for t in last["model"].values())
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    assert len(rows) == result.summary["epochs_completed"]  # every finished epoch explains the failure
    wait_for_pictures()
    assert (result.run_dir / "curves.png").exists()


@pytest.mark.slow  # trains: over 3 CPU seconds in the fast lane
def test_early_stopping_stops_on_a_stalled_validation_metric(workdir):
    cfg = compose(["trainer.epochs=60", "trainer.early_stopping.enabled=true", "trainer.early_stopping.patience=2", "trainer.progress=false"])
    summary = train(RunRequest(cfg, [], quiet_reporter())).summary
    assert summary["stopped_early"] is True
    assert summary["epochs_completed"] == summary["best_epoch"] + 2 < 60


@pytest.mark.slow  # trains: over 3 CPU seconds in the fast lane
@pytest.mark.parametrize("sched", ["step", "exponential", "cosine", "linear", "warmup_cosine", "onecycle", "plateau"])
def test_every_scheduler_changes_or_keeps_lr_as_documented(workdir, fast, sched):
    result = train(RunRequest(fast(f"sched={sched}", "trainer.epochs=4"), [], quiet_reporter()))
    lrs = [float(r["lr"]) for r in csv.DictReader((result.run_dir / "metrics.csv").open())]
    assert result.status == "completed"
    if sched in ("exponential", "cosine", "linear"):
        assert lrs[-1] < lrs[0]
    if sched == "onecycle":
        assert lrs[0] < max(lrs)  # rises from max_lr / 25, then anneals
    if sched == "warmup_cosine":
        assert lrs[0] < lrs[1]  # warming up


@pytest.mark.slow  # trains: over 3 CPU seconds in the fast lane
@pytest.mark.parametrize("optim", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_every_optimizer_trains(workdir, fast, optim):
    summary = train(RunRequest(fast(f"optim={optim}"), [], quiet_reporter())).summary
    assert summary["status"] == "completed" and summary["test"]["accuracy"] > 0.5


def test_weight_decay_skips_biases_and_norms_unless_asked():
    model = MLP((8,), 2, hidden=[4], batch_norm=True)
    groups = parameter_groups(model, 0.1, decay_bias_and_norm=False)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert all(p.ndim > 1 for p in groups[0]["params"]) and all(p.ndim == 1 for p in groups[1]["params"])
    assert len(parameter_groups(model, 0.1, decay_bias_and_norm=True)) == 1


@pytest.mark.slow  # trains: over 3 CPU seconds in the fast lane
@pytest.mark.parametrize("mode", ["norm", "value"])
def test_gradient_clipping_runs(workdir, fast, mode):
    result = train(RunRequest(fast("trainer.grad_clip=0.5", f"trainer.grad_clip_mode={mode}", "trainer.label_smoothing=0.1"), [], quiet_reporter()))
    assert result.status == "completed"


def test_regression_reports_rmse_mae_r2_in_target_units(workdir):
    summary = train(RunRequest(compose(["data=linreg_synthetic", "model=linreg", "optim.lr=0.03", "optim.momentum=0", "trainer.batch_size=10", "trainer.epochs=5", "trainer.progress=false"]), [], quiet_reporter())).summary
    assert summary["monitor"] == "val_rmse"
    assert summary["test"]["rmse"] < 0.05 and summary["test"]["r2"] > 0.999 and summary["test"]["mae"] < 0.05


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match=r"trainer.device=cuda:1 is not available: this machine has cpu"):
            select_device("cuda:1")
    with pytest.raises(UserError, match="is not a device"):
        select_device("tpu")


def test_amp_without_cuda_is_a_note_not_an_error(fast):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    experiment = build_experiment(fast("trainer.amp=true", "trainer.device=cpu"))
    assert any("amp" in note for note in experiment.notes) and experiment.session.scaler is None


def test_bf16_autocasts_on_the_cpu_and_float16_there_is_one_line(workdir, fast):
    from dlcli.engine.loop import autocast

    experiment = build_experiment(fast("trainer.precision=bf16", "trainer.device=cpu"))
    assert experiment.session.step.precision == "bf16" and experiment.session.scaler is None  # no scaler for bf16
    with autocast(torch.device("cpu"), "bf16"):
        assert experiment.session.model(torch.zeros(2, 1, 8, 8)).dtype == torch.bfloat16
    summary = train(RunRequest(fast("trainer.precision=bf16", "trainer.device=cpu"), [], quiet_reporter())).summary
    assert summary["status"] == "completed" and summary["best_val_accuracy"] > 0.5
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="trainer.precision=16 .* needs CUDA"):
            build_experiment(fast("trainer.precision=16", "trainer.device=cpu"))


@pytest.mark.parametrize("support, said", [("none", "this CPU has no native bfloat16"),
                                           ("dot products", "has bfloat16 dot products (AVX512-BF16 or Arm BF16) but no matrix units"),
                                           ("matrix units", None), (None, None)])
def test_bf16_on_a_cpu_without_bfloat16_matrix_units_says_it_may_be_slower(workdir, fast, monkeypatch, support, said):
    import dlcli.experiment

    monkeypatch.setattr(dlcli.experiment, "cpu_bf16_support", lambda: support)
    notes = "\n".join(build_experiment(fast("trainer.precision=bf16", "trainer.device=cpu")).notes)
    assert ("trainer.precision=bf16: this CPU" in notes) is (said is not None) and (said is None or said in notes)
    assert "bfloat16" not in "\n".join(build_experiment(fast("trainer.device=cpu")).notes)  # float32 says nothing
    if support == "none":  # in the run log, as compile's time is
        result = train(RunRequest(fast("trainer.precision=bf16", "trainer.device=cpu", "trainer.epochs=1"), [], quiet_reporter()))
        assert "expect it slower than trainer.precision=32" in (result.run_dir / "train.log").read_text()


@pytest.mark.parametrize("capabilities, support", [
    ({"avx512_bf16": True, "amx_bf16": True}, "matrix units"), ({"avx512_bf16": True, "amx_bf16": False}, "dot products"),
    ({"bf16": True, "architecture": "arm64"}, "dot products"), ({"avx512_bf16": False, "avx2": True}, "none"), ({}, "none"),
])
def test_bfloat16_support_is_read_from_the_cpu_capabilities(monkeypatch, capabilities, support):
    from dlcli.engine.device import cpu_bf16_support

    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert cpu_bf16_support() == support
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    assert cpu_bf16_support() is None  # an older PyTorch: nothing said rather than a guess


def test_settings_that_wait_on_a_switch_that_is_off_are_a_note_and_sequence_models_take_sequences(workdir, fast):
    from dlcli.config.no_effect import dormant_settings

    quiet = "\n".join(build_experiment(fast("data=iris")).notes)
    assert "no effect" not in quiet  # the defaults say nothing
    waiting = ["trainer.early_stopping.patience=3", "trainer.grad_clip_mode=value", "trainer.diagnostics=false",
               "trainer.diagnostics_every=3", "trainer.max_restarts=2"]
    result = train(RunRequest(fast("data=iris", "trainer.epochs=1", *waiting), [], quiet_reporter()))
    assert result.summary["status"] == "completed"
    log = (result.run_dir / "train.log").read_text()
    for line in ("trainer.early_stopping.patience=3 has no effect while trainer.early_stopping.enabled=false",
                 "trainer.grad_clip_mode=value has no effect while trainer.grad_clip is null",
                 "trainer.diagnostics_every=3 has no effect while trainer.diagnostics=false",
                 "trainer.max_restarts=2 has no effect while the run has one process"):
        assert line in log, line
    switched_on = compose(["trainer.early_stopping.enabled=true", "trainer.early_stopping.patience=3", "trainer.grad_clip=1.0",
                           "trainer.grad_clip_mode=value"])
    assert dormant_settings(switched_on) == []  # the switch on: each acts
    for model in ("lstm", "cnn1d"):  # what data.as_sequence is for
        assert build_experiment(fast("data=iris", f"model={model}", "+data.as_sequence=true")).data.input_shape == (1, 4)
    from dlcli.models.build import check_model_reads_sequences

    check_model_reads_sequences(compose(["data=iris", "+data.as_sequence=true", "model._target_=mypkg.SignalNet"]))  # yours: not judged
    with pytest.raises(UserError, match="model=mlp does not read one"):
        check_model_reads_sequences(compose(["data=iris", "+data.as_sequence=true"]))


def test_channels_last_orders_image_weights_and_is_refused_for_tables(workdir, fast):
    experiment = build_experiment(fast("model=lenet", "data.resize=28", "trainer.channels_last=true", "trainer.device=cpu"))
    conv = next(m for m in experiment.session.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(UserError, match="trainer.channels_last=true orders image activations"):
        build_experiment(fast("data=iris", "trainer.channels_last=true"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_amp_trains_on_cuda(workdir, fast):
    summary = train(RunRequest(fast("trainer.device=cuda", "trainer.amp=true"), [], quiet_reporter())).summary
    assert summary["status"] == "completed" and summary["device"].startswith("cuda")


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.epochs=0", "trainer.epochs=0 must be at least 1"),
        ("trainer.batch_size=abc", "trainer.batch_size=abc must be an integer"),
        ("optim.lr=-1", "optim.lr=-1 must be above 0"),
        ("trainer.monitor=val_f1", "trainer.monitor=val_f1 is not valid: choose one of auto, val_loss, val_accuracy"),
        ("trainer.grad_clip_mode=both", "choose one of norm, value"),
        ("optim.nesterov=true optim.momentum=0", "optim settings rejected by torch.optim.SGD: Nesterov momentum requires a momentum"),
        ("optim=adam optim.betas=[2,0.9]", "optim.betas=[2,0.9] must be a list of exactly 2 numbers in [0, 1): element 0 (2) must be in [0, 1)"),
        ("model.hidden=64", "model.hidden=64 must be a list of any number of whole numbers in [1, 1000000], e.g. [64]"),
        ("sched=step sched.step_size=0", "sched.step_size=0 must be a whole number of at least 1 or a share of the run in (0, 1)"),
        ("trainer.metric=log_rmse", "trainer.metric=log_rmse is not valid"),
    ],
)
def test_bad_values_are_named(override, message):
    with pytest.raises(UserError) as info:
        build_experiment(compose(override.split()))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_numeric_run_name(workdir, fast):
    assert train(RunRequest(fast("name=42", "trainer.epochs=1"), [], quiet_reporter())).run_dir.parent.name == "42"


def test_onecycle_peaks_at_each_groups_own_lr(fast):
    experiment = build_experiment(fast("sched=onecycle", "optim.lr=0.1", "optim.head_lr=0.01"))
    assert [g["max_lr"] for g in experiment.session.optimizer.param_groups] == [0.1, 0.01]  # body, head


def test_nan_validation_loss_is_not_a_best_epoch(workdir):
    result = train(RunRequest(compose(["trainer.batch_size=4096", "optim.lr=1e30", "trainer.epochs=2", "trainer.progress=false"]), [], quiet_reporter()))
    assert result.status == "failed" and "validation loss became nan" in result.summary["message"]
    assert result.summary["best_epoch"] is None and not (result.run_dir / "checkpoints" / "best.pt").exists()


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_an_early_stopped_run_resumed_trains_no_further(workdir):
    cfg = compose(["trainer.epochs=60", "trainer.early_stopping.enabled=true", "trainer.early_stopping.patience=2", "trainer.progress=false"])
    done = train(RunRequest(cfg, [], quiet_reporter()))
    summary = read(done.run_dir / "summary.json")
    summary["status"] = "interrupted"  # as if Ctrl-C came during the final test evaluation
    (done.run_dir / "summary.json").write_text(__import__("json").dumps(summary))
    resumed = train(RunRequest(compose([f"resume={done.run_dir}"]), [f"resume={done.run_dir}"], quiet_reporter()))
    assert resumed.status == "completed" and resumed.summary["epochs_completed"] == summary["epochs_completed"]
