"""Every technique of the classic notes as one config switch: each test shows the switch has its
effect (on the loss, the weights, the learning-rate curve or the images), not only that a run ends."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import quiet_reporter, read, run_cli
from dlcli.config.compose import compose
from dlcli.errors import UserError
from dlcli.experiment import build_experiment
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest
from image_fixtures import write_image_folder


def experiment(*overrides: str):
    return build_experiment(compose(["trainer.progress=false", *overrides]))


def trained(*overrides: str):
    result = train(RunRequest(compose(["trainer.progress=false", *overrides]), [], quiet_reporter()))
    assert result.status == "completed", result.summary
    return result


def lr_column(result) -> list[float]:
    import csv

    with (result.run_dir / "metrics.csv").open() as f:
        return [float(row["lr"]) for row in csv.DictReader(f)]


# -- losses ---------------------------------------------------------------------------------------
def test_bce_trains_one_logit_and_answers_as_two_classes(workdir):
    result = trained("data=breast_cancer", "loss=bce", "loss.pos_weight=2.0", "trainer.epochs=3")
    weights = torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert weights["net.3.weight"].shape[0] == 1  # one output unit
    assert result.summary["test"]["accuracy"] > 0.85
    session = experiment("data=breast_cancer", "loss=bce", "loss.pos_weight=2.0").session
    logits = session.model(torch.zeros(4, 30))
    assert logits.shape == (4, 2) and torch.all(logits[:, 0] == 0)  # [0, z]: softmax is [1 - sigmoid(z), sigmoid(z)]
    y = torch.tensor([0, 1, 1, 0])
    z = logits[:, 1]
    expected = nn.functional.binary_cross_entropy_with_logits(z, y.float(), pos_weight=torch.tensor(2.0))
    assert torch.allclose(session.loss_fn(logits, y), expected)


def test_focal_loss_down_weights_easy_examples():
    from dlcli.engine.losses import FocalLoss

    logits = torch.tensor([[4.0, 0.0], [0.2, 0.0]])  # an easy and a hard example, both of class 0
    targets = torch.tensor([0, 0])
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, targets), nn.functional.cross_entropy(logits, targets))
    per_example_ce = nn.functional.cross_entropy(logits, targets, reduction="none")
    focal = FocalLoss(gamma=2.0)
    easy, hard = (focal(logits[i : i + 1], targets[i : i + 1]) for i in range(2))
    assert easy / per_example_ce[0] < 0.01 and hard / per_example_ce[1] > 0.2  # the easy one nearly vanishes
    assert experiment("data=iris", "loss=focal", "loss.gamma=1.5").session.loss_fn.gamma == 1.5


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_balanced_class_weights_and_regression_losses():
    from sklearn.utils.class_weight import compute_class_weight

    exp = experiment("data=breast_cancer", "loss=cross_entropy", "loss.weight=balanced")
    train_targets = exp.data.targets[exp.data.split.train]
    assert np.allclose(exp.session.loss_fn.weight.numpy(), compute_class_weight("balanced", classes=np.arange(2), y=train_targets))
    assert torch.equal(experiment("data=iris", "loss=cross_entropy", "loss.weight=[1,2,3]").session.loss_fn.weight, torch.tensor([1.0, 2, 3]))
    for name, kind in (("mse", nn.MSELoss), ("l1", nn.L1Loss), ("huber", nn.HuberLoss), ("smooth_l1", nn.SmoothL1Loss)):
        assert isinstance(experiment("data=diabetes", f"loss={name}").session.loss_fn, kind)
    huber = experiment("data=diabetes", "loss=huber", "loss.delta=0.5").session.loss_fn
    assert huber(torch.tensor([3.0]), torch.tensor([0.0])).item() == pytest.approx(0.5 * (3.0 - 0.25))


@pytest.mark.parametrize("overrides, message", [
    (["data=iris", "loss=mse"], "loss=mse does not fit classification: choose one of cross_entropy, focal, bce"),
    (["data=iris", "loss=bce"], "loss=bce is for two classes, and this data has 3"),
    (["data=diabetes", "loss=focal"], "loss=focal does not fit regression"),
    (["data=iris", "loss=cross_entropy", "loss.weight=[1,2]"], "loss.weight=[1, 2] gives 2 weight(s) for 3 classes: give 3"),
    (["data=iris", "optim.l1=-1"], "optim.l1=-1 must be at least 0"),
    (["data=iris", "model.activation=swish"], "choose one of relu, sigmoid, tanh, leaky_relu, silu, gelu, elu, prelu, mish"),
    (["data=iris", "model.init=glorot"], "model.init=glorot is not an init scheme"),
    (["data=iris", "model.init={scheme: uniform, std: 2}"], "uniform has no setting 'std' (its settings: bound)"),
    (["data=iris", "model.hidden=[32,32]", "model.dropout=[0.2]"], "gives 1 rate(s) for 2 hidden layer(s)"),
    (["data=digits", "model=nin", "data.resize=32", "model.dropout=[0.2,0.5]"], "model.dropout=[0.2,0.5] must be a number in [0, 1)"),
    (["data=iris", "eval.tta=hflip"], "eval.tta=hflip flips images"),
    (["data=iris", "loss=focal", "trainer.label_smoothing=0.1"], "loss=focal has no label smoothing"),
    (["data=iris", "model.init={scheme: kaiming_uniform, nonlinearity: gelu}"], "model.init.nonlinearity=gelu is not valid: choose one of relu"),
    (["data=iris", "sched=inverse_time", "sched.decay=-1"], "sched.decay=-1 must be at least 0"),
])
def test_settings_that_make_no_sense_are_one_line(workdir, overrides, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        experiment(*overrides)


# -- regularization -------------------------------------------------------------------------------
@pytest.mark.slow  # trains: over 3 CPU seconds in the fast lane
def test_l1_penalty_shrinks_weights_but_not_biases(workdir):
    plain = trained("data=wine", "model=softmax", "trainer.epochs=15", "name=plain")
    sparse = trained("data=wine", "model=softmax", "trainer.epochs=15", "optim.l1=0.03", "name=sparse")
    load = lambda r: torch.load(r.run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    w_plain, w_sparse = load(plain)["net.1.weight"], load(sparse)["net.1.weight"]
    assert w_sparse.abs().sum() < 0.75 * w_plain.abs().sum()
    assert (w_sparse.abs() < 1e-2).float().mean() > (w_plain.abs() < 1e-2).float().mean()  # more weights near zero
    session = experiment("data=wine", "model=softmax", "optim.l1=0.01").session
    assert session.step.l1 == 0.01 and all(p.ndim > 1 for p in session.step.l1_params)  # biases are not penalized


def test_mlp_takes_one_dropout_rate_per_hidden_layer():
    model = experiment("data=iris", "model.hidden=[32,16]", "model.dropout=[0.2,0.5]").session.model
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.5]


# -- activations and initialization ---------------------------------------------------------------
@pytest.mark.parametrize("name, kind", [("silu", nn.SiLU), ("gelu", nn.GELU), ("elu", nn.ELU), ("prelu", nn.PReLU), ("mish", nn.Mish)])
def test_activations_are_built_where_models_take_one(name, kind):
    mlp = experiment("data=iris", f"model.activation={name}").session.model
    assert any(isinstance(m, kind) for m in mlp.modules())
    lenet = experiment("data=digits", "model=lenet", "data.resize=28", f"model.activation={name}").session.model
    assert any(isinstance(m, kind) for m in lenet.modules())
    if name == "prelu":  # its slope is a parameter that trains
        assert any(isinstance(m, nn.PReLU) and m.weight.requires_grad for m in mlp.modules())


def test_init_schemes_give_their_distributions():
    def weight(init: str) -> torch.Tensor:
        return experiment("data=digits", "model.hidden=[512]", f"model.init={init}").session.model.net[1].weight.detach()

    assert weight("{scheme: normal, std: 0.02}").std().item() == pytest.approx(0.02, rel=0.05)
    assert weight("normal").std().item() == pytest.approx(0.01, rel=0.05)
    uniform = weight("{scheme: uniform, bound: 0.1}")
    assert uniform.abs().max() <= 0.1 and uniform.std().item() == pytest.approx(0.1 / math.sqrt(3), rel=0.05)
    assert weight("xavier_normal").std().item() == pytest.approx(math.sqrt(2 / (64 + 512)), rel=0.05)
    assert weight("kaiming_normal").std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.05)
    assert weight("kaiming_uniform").abs().max().item() <= math.sqrt(6 / 64) + 1e-6
    orthogonal = weight("orthogonal")  # 512 x 64: orthonormal columns
    assert torch.allclose(orthogonal.T @ orthogonal, torch.eye(64), atol=1e-4)
    assert torch.all(experiment("data=digits", "model.init=orthogonal").session.model.net[1].bias == 0)


# -- data -----------------------------------------------------------------------------------------
@pytest.fixture
def shapes(workdir):
    return write_image_folder(workdir / "shapes", per_class=12)


def test_explicit_normalization_statistics(shapes):
    data = experiment("data=imagefolder", f"data.root={shapes}", "model=lenet",
                      "data.normalize={mean: [0.5,0.5,0.5], std: [0.25,0.25,0.25]}").data
    assert data.normalization.mean == (0.5, 0.5, 0.5) and data.normalization.std == (0.25, 0.25, 0.25)
    x, _ = data.batches("val", torch.device("cpu")).peek(2)
    raw = torch.stack([data.source.files[int(r)][0] for r in data.split.val[:2]]).float() / 255
    assert torch.allclose(x, (raw - 0.5) / 0.25, atol=1e-5)
    with pytest.raises(UserError, match="must be a list of exactly 3 numbers"):
        experiment("data=imagefolder", f"data.root={shapes}", "data.normalize={mean: [0.5,0.5], std: [1,1,1]}")


def augmented(settings: dict, seed: int, image: torch.Tensor) -> torch.Tensor:
    from dlcli.data.transforms import Augment, sample_transform

    augment = Augment(**settings)
    augment.validate()
    torch.manual_seed(seed)
    return sample_transform(tuple(image.shape[1:]), None, None, augment)(image)


@pytest.mark.parametrize("settings", [
    {"vflip": True}, {"random_resized_crop": True}, {"random_resized_crop": {"scale": [0.3, 0.6]}}, {"gaussian_noise": 0.1},
    {"gaussian_blur": True}, {"gaussian_blur": {"kernel": 5, "sigma": [1.0, 2.0]}}, {"policy": "autoaugment"},
    {"policy": "trivialaugment"},
])
def test_each_augmentation_changes_the_images(settings):
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8, generator=generator)
    plain = image.float() / 255
    changed = [not torch.allclose(augmented(settings, seed, image), plain) for seed in range(8)]
    assert any(changed)
    if settings == {"vflip": True}:  # either as it was or upside down, nothing else
        for seed in range(8):
            out = augmented(settings, seed, image)
            assert torch.allclose(out, plain) or torch.allclose(out, plain.flip(-2))
    if settings == {"gaussian_noise": 0.1}:
        difference = augmented(settings, 0, image) - plain
        assert 0.05 < difference.std().item() < 0.1 and augmented(settings, 0, image).min() >= 0  # clipped to [0, 1]


def test_augmentations_train_only_and_bad_settings_are_refused(shapes):
    result = trained("data=imagefolder", f"data.root={shapes}", "model=lenet", "data.num_workers=0", "trainer.epochs=1",
                     "data.augment.vflip=true", "data.augment.policy=trivialaugment", "data.augment.gaussian_noise=0.05",
                     "data.augment.random_resized_crop={scale: [0.5, 1.0]}", "data.augment.gaussian_blur=true")
    assert result.summary["test"] is not None
    for bad, message in (("data.augment.policy=randaugment", "data.augment.policy=randaugment is not valid"),
                         ("data.augment.gaussian_blur={kernel: 4}", "kernel must be an odd size"),
                         ("data.augment.random_resized_crop={scale: [0.9, 0.2]}", "scale and ratio are [lo, hi] with lo <= hi")):
        with pytest.raises(UserError, match=message.replace("[", r"\[")):
            experiment("data=imagefolder", f"data.root={shapes}", bad)


def test_test_time_augmentation_averages_flipped_views(shapes):
    from dlcli.engine.tta import TestTimeAugmented

    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.randn(2, 1, 3, 4)
    averaged = TestTimeAugmented(model, ["hflip"], classification=True)(x).exp()
    expected = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    assert torch.allclose(averaged, expected, atol=1e-6)
    result = trained("data=imagefolder", f"data.root={shapes}", "model=lenet", "trainer.epochs=1", "eval.tta=[hflip,vflip]")
    assert read(result.run_dir / "eval-test.json")["tta"] == ["hflip", "vflip"]
    plain = run_cli("eval", str(result.run_dir), "--tta", "none", "--json")
    assert plain.exit_code == 0 and '"tta"' not in plain.stdout


# -- schedules and optimizers ---------------------------------------------------------------------
@pytest.mark.slow  # trains: over half a second in the fast lane
def test_schedules_give_their_learning_rate_curves(workdir):
    multistep = trained("data=iris", "sched=multistep", "sched.milestones=[2,4]", "sched.gamma=0.5", "trainer.epochs=5", "optim.lr=0.1")
    assert lr_column(multistep) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    inverse = trained("data=iris", "sched=inverse_time", "sched.decay=0.5", "trainer.epochs=4", "optim.lr=0.1")
    assert lr_column(inverse) == pytest.approx([0.1 / (1 + 0.5 * t) for t in range(4)])
    polynomial = trained("data=iris", "sched=polynomial", "sched.power=2.0", "trainer.epochs=4", "optim.lr=0.1")
    assert lr_column(polynomial) == pytest.approx([0.1 * (1 - t / 4) ** 2 for t in range(4)])
    cyclic = experiment("data=iris", "sched=cyclic", "sched.base_lr=0.01", "sched.max_lr=0.1", "sched.step_size_up=4")
    optimizer, scheduler = cyclic.session.optimizer, cyclic.session.schedule.scheduler
    rates = []
    for _ in range(9):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.01, 0.0325, 0.055, 0.0775, 0.1, 0.0775, 0.055, 0.0325, 0.01])  # up 4 batches, down 4


@pytest.mark.parametrize("epochs", [1, 2, 3, 100])
@pytest.mark.parametrize("sched", ["step", "multistep", "exponential", "inverse_time", "polynomial", "cosine", "linear",
                                   "warmup_cosine", "onecycle", "cyclic", "plateau"])
def test_every_schedule_s_defaults_fit_a_run_of_any_length(workdir, sched, epochs):
    built = experiment("data=iris", f"sched={sched}", f"trainer.epochs={epochs}")
    scheduler = built.session.schedule.scheduler
    length = epochs * (4 if sched in ("cyclic", "onecycle") else 1)  # iris: 120 train rows, 4 batches of 32 per epoch
    if sched == "multistep":
        assert max(scheduler.milestones) <= max(1, epochs - 1)  # every milestone acts within a run of two epochs or more
        assert "sched.milestones=[0.5, 0.75] of the run's" in "\n".join(built.notes)
    if sched == "step":
        assert 1 <= scheduler.step_size <= max(1, epochs // 2 + 1)
    if sched == "cyclic":  # four cycles over the run's batches, not 200 batches up whatever its length
        assert scheduler.total_size <= max(2, length // 4 + 1)
    if sched == "warmup_cosine":  # warms up at least one epoch where the run has a second to anneal in
        assert isinstance(scheduler, torch.optim.lr_scheduler.SequentialLR) is (epochs > 1)


def test_shares_of_the_run_become_epochs_and_typed_epochs_past_the_run_are_refused(workdir):
    assert lr_column(trained("data=iris", "sched=multistep", "trainer.epochs=4", "optim.lr=0.1")) == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert lr_column(trained("data=iris", "sched=multistep", "trainer.epochs=8", "optim.lr=0.1")) == pytest.approx(
        [0.1] * 4 + [0.01] * 2 + [0.001] * 2)  # 0.5 and 0.75 of 8: epochs 4 and 6
    assert lr_column(trained("data=iris", "sched=step", "sched.step_size=0.25", "trainer.epochs=4", "optim.lr=0.1")) == pytest.approx(
        [0.1, 0.01, 0.001, 0.0001])
    mixed = trained("data=iris", "sched=multistep", "sched.milestones=[1,0.75]", "trainer.epochs=4", "optim.lr=0.1")
    assert lr_column(mixed) == pytest.approx([0.1, 0.01, 0.01, 0.001])  # an epoch and a share together
    assert "sched.milestones=[1, 0.75] of the run's 4 epochs: [1, 3]" in (mixed.run_dir / "train.log").read_text()
    for typed, words in ((["sched=multistep", "sched.milestones=[2,5]"], "lowers the rate at epoch 5"),
                         (["sched=step", "sched.step_size=3"], "sched.step_size=3 lowers the rate every 3 epochs")):
        result = run_cli("train", "data=iris", "trainer.epochs=3", *typed)
        assert result.exit_code == 2 and words in result.stderr and "trainer.epochs=3" in result.stderr
    # a schedule that steps every batch counts batches: milestones past the epoch count are its own
    by_batch = experiment("data=iris", "sched=multistep", "+sched.interval=step", "sched.milestones=[6,0.5]", "trainer.epochs=3")
    assert by_batch.session.schedule.scheduler.milestones == {6: 2}  # 0.5 of 12 batches, beside batch 6


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_a_run_with_shares_of_its_length_cannot_simply_go_on_longer(workdir):
    first = trained("data=iris", "sched=multistep", "trainer.epochs=2", "name=shares")
    longer = run_cli("train", f"resume={first.run_dir}", "trainer.epochs=4")
    assert longer.exit_code == 2 and "sched=multistep is planned over the run's 2 epochs" in longer.stderr
    typed = trained("data=iris", "sched=multistep", "sched.milestones=[1]", "trainer.epochs=2", "name=typed")
    assert run_cli("train", f"resume={typed.run_dir}", "trainer.epochs=4").exit_code == 0  # epochs go on as they were


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_optimizers_and_the_linear_scaling_rule(workdir):
    for name, kind in (("nadam", torch.optim.NAdam), ("radam", torch.optim.RAdam), ("rprop", torch.optim.Rprop)):
        assert isinstance(experiment("data=iris", f"optim={name}").session.optimizer, kind)
    notes = experiment("data=iris", "optim=rprop").notes
    assert any("full-batch" in note for note in notes)
    scaled = trained("data=iris", "optim.lr=0.1", "optim.scale_lr_with_batch=true", "trainer.batch_size=64", "trainer.epochs=1")
    assert lr_column(scaled) == pytest.approx([0.1 * 64 / 256])
    assert "the linear scaling rule" in (scaled.run_dir / "train.log").read_text()


# -- models and fine-tuning -----------------------------------------------------------------------
@pytest.mark.slow  # trains: over half a second in the fast lane
def test_a_dl_model_starts_from_an_earlier_runs_weights(workdir):
    source = trained("data=classification_synthetic", "data.num_classes=2", "trainer.epochs=2", "name=source")
    weights = torch.load(source.run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    same = experiment("data=classification_synthetic", "data.num_classes=2", f"+model.weights={source.run_dir}").session.model
    assert all(torch.equal(same.state_dict()[k], v) for k, v in weights.items())
    other = experiment("data=classification_synthetic", "data.num_classes=3", f"+model.weights={source.run_dir}")
    state = other.session.model.state_dict()
    assert torch.equal(state["net.1.weight"], weights["net.1.weight"]) and state["net.3.weight"].shape[0] == 3
    assert any("start fresh" in note and "net.3.weight" in note for note in other.notes)
    with pytest.raises(UserError, match="does not fit this model"):
        experiment("data=classification_synthetic", "model.hidden=[64]", f"+model.weights={source.run_dir}")
    with pytest.raises(UserError, match=r"other shapes \['net.1.weight'\]"):  # another input width: not only the head
        experiment("data=classification_synthetic", "data.num_features=10", f"+model.weights={source.run_dir}")
    torch.save(weights, workdir / "bare.pt")  # a bare state dict works too
    bare = experiment("data=classification_synthetic", "data.num_classes=2", f"+model.weights={workdir / 'bare.pt'}").session.model
    assert torch.equal(bare.state_dict()["net.3.weight"], weights["net.3.weight"])
    tuned = trained("data=classification_synthetic", "data.num_classes=2", "trainer.epochs=1", f"+model.weights={source.run_dir}",
                    "name=tuned")
    source.run_dir.rename(workdir / "moved")  # the source run is gone: dl eval rebuilds without reading it again
    evaluated = run_cli("eval", str(tuned.run_dir))
    assert evaluated.exit_code == 0, evaluated.output


@pytest.mark.slow  # builds each of 80 torchvision classifiers
def test_every_torchvision_classifier_gets_a_ten_class_head():
    """On the meta device (no memory, no compute); RegNet's constructor computes with tensors, so
    its parameters are moved to meta as they are registered instead."""
    import torchvision.models as tvm

    from dlcli.models.pretrained import TorchvisionModel

    from dlcli.models.pretrained import _head_size, _last_linear

    names = tvm.list_models(module=tvm)
    assert len(names) > 70 and "squeezenet1_1" in names
    # a forward pass (the output really has 10 columns) for a model of each kind of head; the
    # others are checked by their head, which is what was replaced
    forward = {"squeezenet1_1", "googlenet", "inception_v3", "vit_b_16", "swin_t", "maxvit_t", "convnext_tiny", "resnet18",
               "mobilenet_v3_small", "efficientnet_b0", "densenet121", "regnet_x_400mf", "vgg11", "alexnet"}
    for name in names:
        size = 299 if name.startswith("inception") else 224
        with _on_meta(name):
            model = TorchvisionModel((3, size, size), 10, name).eval()
            assert _head_size(_last_linear(model.net)[1]) == 10, name
            if name in forward:
                assert tuple(model(torch.empty(2, 3, size, size, device="meta")).shape) == (2, 10), name
    for name in ("vit_b_16", "maxvit_t"):
        with pytest.raises(UserError, match=f"model.name={name} takes 224x224 images, and the data's are 32x32: set data.resize=224"):
            with torch.device("meta"):
                TorchvisionModel((3, 32, 32), 10, name)


def _on_meta(name: str):
    import contextlib

    if not name.startswith("regnet"):
        return torch.device("meta")

    @contextlib.contextmanager
    def parameters_on_meta():
        register, buffer = nn.Module.register_parameter, nn.Module.register_buffer

        def parameter_on_meta(module, key, param):
            register(module, key, None if param is None else nn.Parameter(param.to("meta"), param.requires_grad))

        def buffer_on_meta(module, key, tensor, persistent=True):
            buffer(module, key, None if tensor is None else tensor.to("meta"), persistent)

        nn.Module.register_parameter, nn.Module.register_buffer = parameter_on_meta, buffer_on_meta
        try:
            with torch.no_grad():
                yield
        finally:
            nn.Module.register_parameter, nn.Module.register_buffer = register, buffer

    return parameters_on_meta()


def test_the_cifar_cnn_recipe_trains_ten_epochs():
    assert compose(["experiment=cifar_cnn"]).trainer.epochs == 10


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_lr_find_suggests_the_rate_before_the_linear_scaling(workdir):
    result = run_cli("lr-find", "data=iris", "optim.scale_lr_with_batch=true", "trainer.batch_size=64", "--steps", "20", "--json")
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)
    suggested = float(report["override"].split("=")[1])
    assert suggested == pytest.approx(report["suggested_lr"] * 256 / 64, rel=0.01)
