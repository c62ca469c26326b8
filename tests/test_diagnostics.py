"""Each diagnostic check fires on a run that has its problem, with its suggestion, and none fires
on healthy runs."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import only_run, read, run_cli
from dlcli.diagnostics import thresholds

THRESHOLDS = thresholds()


def diagnosed(*overrides, name="train"):
    result = run_cli("train", *overrides, "--name", name)
    assert result.exit_code in (0, 1), result.output
    return read(only_run_named(name) / "diagnostics.json")["findings"], result


def only_run_named(name):
    from pathlib import Path

    return only_run(Path.cwd(), name)


def codes(findings):
    return [f["code"] for f in findings]


def test_a_run_that_finished_no_epoch_says_nothing_was_checked():
    """Stopped before its first epoch ended, a run had nothing to diagnose: the line says so rather
    than list the checks as if they had found nothing."""
    from dlcli.diagnostics.report import diagnosis_lines

    assert diagnosis_lines([], epochs=0) == ["diagnosis: no epoch finished, so nothing was checked"]
    assert diagnosis_lines([], epochs=3)[0].startswith("diagnosis: nothing wrong found")


@pytest.mark.slow  # trains six runs
def test_the_default_run_and_healthy_runs_find_nothing(workdir):
    result = run_cli("train")
    assert "diagnosis: nothing wrong found" in result.stdout
    assert read(only_run(workdir) / "summary.json")["diagnosis"] == []
    for data in ("iris", "wine", "diabetes", "linreg_synthetic"):
        summary = json.loads(run_cli("train", f"data={data}", "--name", data, "--json").stdout)
        assert summary["diagnosis"] == [], (data, summary["diagnosis"])
    summary = json.loads(run_cli("train", "experiment=linreg_synthetic", "--json").stdout)
    assert summary["diagnosis"] == []


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_overfitting(workdir):
    findings, _ = diagnosed("data=classification_synthetic", "data.num_samples=200", "data.class_sep=0.5", "data.informative=2",
                            "model.hidden=[512,512]", "trainer.epochs=60", "optim.lr=0.1")
    found = next(f for f in findings if f["code"] == "overfitting")
    assert "model.dropout" in found["suggestion"] and found["evidence"]["last_val_loss"] > found["evidence"]["best_val_loss"]


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_underfitting_of_a_model_too_small(workdir):
    findings, _ = diagnosed("model.hidden=[2]", "trainer.epochs=15")
    assert codes(findings) == ["underfitting"] and "larger model" in findings[0]["suggestion"]


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_learning_rate_too_high_and_too_low(workdir):
    high, result = diagnosed("optim.lr=1", name="high")
    assert "lr_too_high" in codes(high) and "optim.lr=0.1" in high[0]["suggestion"]
    assert "the learning rate looks too high" in result.stdout
    low, _ = diagnosed("optim.lr=0.0001", "trainer.epochs=6", name="low")
    assert codes(low) == ["lr_too_low"] and "optim.lr=0.001" in low[0]["suggestion"]
    nan, failed = diagnosed("data=diabetes", "optim.lr=0.1", name="nan")
    assert failed.exit_code == 1 and codes(nan)[0] == "lr_too_high" and nan[0]["severity"] == "error"


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_classic_sigmoid_lenet_stuck_at_chance_is_named_within_three_epochs(workdir):
    """The classic LeNet (sigmoid) at a small rate does not leave chance level: the diagnosis names
    the activations, with evidence, after 3 epochs, and its advice is LeNet's own setting."""
    findings, result = diagnosed("model=lenet", "model.activation=sigmoid", "data.resize=28", "optim.lr=0.01",
                                 "trainer.epochs=3")
    found = next(f for f in findings if f["code"] == "saturating_activations")
    assert "model.activation=relu" in found["suggestion"] and "model.hidden" not in found["suggestion"]
    assert set(found["evidence"]["saturated_share"]) and found["evidence"]["first_to_last_gradient"] is not None
    assert "lr_too_low" not in codes(findings) and "underfitting" not in codes(findings)
    assert "sigmoid/tanh activations keep the model from learning" in result.stdout


def test_underfitting_names_the_models_own_size_settings(workdir):
    """(Other models' size settings, model.width for ResNet among them, are applied by
    test_fuzz_config's test of every diagnosis suggestion.)"""
    findings, _ = diagnosed("model.hidden=[2]", "trainer.epochs=15")
    assert codes(findings) == ["underfitting"] and "model.hidden=[4]" in findings[0]["suggestion"]


def test_vanishing_gradients_in_a_deep_sigmoid_mlp(workdir):
    findings, _ = diagnosed("model.hidden=[32,32,32,32,32,32,32,32,32,32]", "model.activation=sigmoid", "trainer.epochs=3")
    found = next(f for f in findings if f["code"] == "vanishing_gradients")
    assert found["evidence"]["ratio"] < THRESHOLDS["vanishing_gradients.ratio"] and "model.activation=relu" in found["suggestion"]


def test_exploding_gradients_at_a_spike(workdir):
    findings, _ = diagnosed("model._target_=user_code.SpikeNet", "~model.hidden", "~model.activation", "~model.dropout",
                            "~model.batch_norm", "~model.init", "~model.freeze", "trainer.diagnostics_every=1", "trainer.epochs=3")
    found = next(f for f in findings if f["code"] == "exploding_gradients")
    assert found["evidence"]["step"] == 60 and "trainer.grad_clip" in found["suggestion"]


SPIKE = ["model._target_=user_code.SpikeNet", "~model.hidden", "~model.activation", "~model.dropout", "~model.batch_norm",
         "~model.init", "~model.freeze", "trainer.diagnostics_every=1", "trainer.progress=false"]


@pytest.mark.slow  # trains three runs
def test_a_resumed_run_names_the_steps_an_uninterrupted_run_names(workdir):
    """Steps go on counting across a resume (from the checkpoint's count): the spike at step 150
    (epoch 4, about 45 steps an epoch) is found at step 150 by a run stopped after epoch 2 and
    resumed, as by one that ran through. (It was step 60 after the resume: counted from it.)"""
    from conftest import quiet_reporter
    from dlcli.config.compose import compose
    from dlcli.engine.checkpoint import load_checkpoint
    from dlcli.run.dispatch import train
    from dlcli.run.request import RunRequest
    from user_code import CtrlCAt

    overrides = [*SPIKE, "+model.spike_at=150", "trainer.epochs=5"]
    through = train(RunRequest(compose([*overrides, "name=through"]), [], quiet_reporter()))
    stopped = train(RunRequest(compose(overrides), [], quiet_reporter(), callbacks=[CtrlCAt(epoch=2)]))
    assert stopped.status == "interrupted"
    steps = load_checkpoint(stopped.run_dir / "checkpoints" / "last.pt")["state"]["steps"]
    assert 0 < steps < 150  # epochs 1 and 2, counted
    resume = [f"resume={stopped.run_dir}"]
    resumed = train(RunRequest(compose(resume), resume, quiet_reporter(), trust=["user_code"]))
    assert resumed.status == "completed"

    def spike(run):
        return next(f for f in read(run / "diagnostics.json")["findings"] if f["code"] == "exploding_gradients")

    assert spike(through.run_dir)["evidence"]["step"] == spike(resumed.run_dir)["evidence"]["step"] == 150
    assert spike(through.run_dir)["message"] == spike(resumed.run_dir)["message"]
    assert (load_checkpoint(through.run_dir / "checkpoints" / "last.pt")["state"]["steps"]
            == load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["state"]["steps"] == 5 * steps // 2)


def test_a_checkpoint_without_a_step_count_counts_its_epochs_batches():
    """Checkpoints written before steps were counted hold epochs only: each epoch counts its
    batches (a lone trailing sample is none, as training skips it)."""
    from dlcli.engine.state import FitState, steps_taken

    assert steps_taken(FitState(epoch=3), samples=100, batch_size=32) == 12  # 32, 32, 32, 4
    assert steps_taken(FitState(epoch=3), samples=97, batch_size=32) == 9  # the 97th sample alone: skipped
    assert steps_taken(FitState(epoch=2), samples=1, batch_size=32) == 2
    assert steps_taken(FitState(epoch=3, steps=7), samples=100, batch_size=32) == 7  # counted: as counted
    assert steps_taken(FitState(), samples=100, batch_size=32) == 0


@pytest.mark.slow  # trains a default run
def test_dead_relus(workdir):
    findings, _ = diagnosed("optim.lr=1")
    found = next(f for f in findings if f["code"] == "dead_relus")
    assert max(found["evidence"]["dead_share"].values()) > THRESHOLDS["dead_relus.share"]


def test_a_softmax_before_cross_entropy_is_warned_before_training(workdir):
    findings, result = diagnosed("model._target_=user_code.SoftmaxNet", "~model.hidden", "~model.activation", "~model.dropout",
                                 "~model.batch_norm", "~model.init", "~model.freeze", "trainer.epochs=2")
    assert "activation_before_loss" in codes(findings)
    assert "cross-entropy wants raw scores" in result.stderr.split("epoch")[0]  # said before the first epoch


def test_unnormalized_table_columns(workdir):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"area": rng.normal(8000, 3000, 300), "rooms": rng.integers(1, 9, 300)})
    frame["label"] = np.where(frame.area > 8000, "big", "small")
    frame.to_csv("houses.csv", index=False)
    findings, _ = diagnosed("data=csv", "data.path=houses.csv", "data.target=label", "data.standardize=false",
                            "optim.lr=0.0001", "trainer.epochs=3")
    found = next(f for f in findings if f["code"] == "unnormalized_inputs")
    assert found["evidence"]["max_std"] > 1000 and "data.standardize=true" in found["suggestion"]


def test_imbalanced_classes(workdir):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    frame["label"] = np.where(rng.random(400) < 0.9, "common", "rare")
    frame.to_csv("rare.csv", index=False)
    findings, _ = diagnosed("data=csv", "data.path=rare.csv", "data.target=label", "trainer.epochs=5")
    found = next(f for f in findings if f["code"] == "imbalanced_classes")
    assert found["evidence"]["majority_share"] > 0.85 and "macro-F1" in found["suggestion"]


def test_diagnose_reads_the_file_and_re_analyzes_a_run_that_was_not_watched(workdir):
    assert run_cli("train", "optim.lr=1", "trainer.diagnostics=false").exit_code == 0
    run = only_run(workdir)
    assert not (run / "diagnostics.json").exists()
    shown = run_cli("diagnose", str(run))
    assert shown.exit_code == 0 and "no diagnostics.json" in shown.stdout and "learning rate looks too high" in shown.stdout
    report = json.loads(run_cli("diagnose", str(run), "--json").stdout)
    assert report["from"] == "metrics.csv" and report["findings"][0]["code"] == "lr_too_high"
    bad = run_cli("diagnose", str(workdir))
    assert bad.exit_code == 2 and "is not a dl run directory" in bad.stderr


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_eval_and_runs_show_the_diagnosis(workdir):
    """A run at optim.lr=1 diverges, and which secondary checks fire on a diverging run depends on
    the last bits of floating point (vector units, threads, torch version). What holds on every
    machine: the rate is named first (the first epoch already ends above the untrained loss, by
    ~15%), the ReLUs die (99% of them, against a 50% threshold), and `dl runs` shows exactly what
    the run found, whatever that is."""
    assert run_cli("train", "optim.lr=1").exit_code == 0
    run = only_run(workdir)
    assert "learning rate looks too high" in run_cli("eval", str(run)).stdout
    found = read(run / "summary.json")["diagnosis"]
    assert found[0] == "lr_too_high" and "dead_relus" in found and "lr_too_low" not in found
    assert json.loads(run_cli("runs", "--json").stdout)[0]["diagnosis"] == ",".join(found)


def test_a_dead_network_is_not_said_to_explode():
    """Once every unit is dead the sampled gradient norms are 1e-18 or 0; a blip of 1e-5 against
    that is noise, not an explosion. A spike in a network that still passes gradient still is."""
    from dlcli.diagnostics import Evidence, analyze

    start = [3.1, 2.6, 2.0, 1.9, 0.57, 0.99, 1.2, 1.9, 0.18, 0.47]
    dead = [1e-18, 0.0, 4e-21, 2e-19, 0.0, 3e-20, 1e-18, 5e-22, 0.0, 1e-20] * 3
    for blip_at in (5, 15, 25):
        norms = start + dead[:blip_at] + [2.7e-05] + dead[blip_at:]
        evidence = Evidence(grad_norms=norms, grad_steps=[10 * (i + 1) for i in range(len(norms))])
        assert "exploding_gradients" not in codes(analyze([], {"task": "regression"}, evidence))
    living = start + [0.3, 0.2, 0.25, 0.22, 0.2, 60.0, 0.2]
    evidence = Evidence(grad_norms=living, grad_steps=list(range(len(living))))
    found = [f for f in analyze([], {"task": "regression"}, evidence) if f.code == "exploding_gradients"]
    assert found and found[0].evidence["max_grad_norm"] == 60.0


@pytest.mark.slow  # decodes 256x256 images every epoch, twice
def test_an_input_pipeline_that_keeps_the_model_waiting(workdir):
    from image_fixtures import write_image_folder

    write_image_folder(workdir / "photos", per_class=30, sizes=((256, 256),))  # decoding dwarfs a linear model
    findings, _ = diagnosed("data=imagefolder", "data.root=photos", "data.resize=32", "data.num_workers=0", "model=softmax",
                            "trainer.epochs=3", "data.cache=none")  # the files read every epoch
    found = next(f for f in findings if f["code"] == "input_pipeline_bound")
    assert found["evidence"]["median_share_waiting"] > THRESHOLDS["input_pipeline_bound.share"]
    assert "data.cache=memory" in found["suggestion"] and "data.num_workers" in found["suggestion"]
    cached, _ = diagnosed("data=imagefolder", "data.root=photos", "data.resize=32", "data.num_workers=0", "model=softmax",
                          "trainer.epochs=3", name="cached")  # decoded once: the model no longer waits
    assert not any(f["code"] == "input_pipeline_bound" for f in cached)


def test_a_check_that_cannot_be_made_never_costs_the_run(workdir):
    """A model the pre-training look cannot run (it breaks in eval mode) trains as it would without
    diagnostics: the checks step aside."""
    result = run_cli("train", "model._target_=user_code.BreaksInEval", "~model.hidden", "~model.activation", "~model.dropout",
                     "~model.batch_norm", "~model.init", "~model.freeze", "trainer.epochs=2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "completed"
