"""Image data through the real loaders: IDX and CIFAR fixtures, PNG folders, transforms, k-fold."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import only_run, quiet_reporter, read, run_cli
from dlcli.config.compose import compose
from dlcli.engine.batches import LoaderBatches, TensorBatches
from dlcli.experiment import build_experiment
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest
from image_fixtures import write_cifar10, write_image_folder, write_mnist

FAST_CNN = ["model=lenet", "model.activation=relu", "optim=adam", "trainer.progress=false"]


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    write_mnist(root)
    write_mnist(root, "FashionMNIST")
    write_cifar10(root)
    return root


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_lenet_trains_on_an_mnist_format_fixture_through_the_cli(workdir, image_root):
    result = run_cli("train", "data=mnist", f"data.root={image_root}", "data.download=false", *FAST_CNN[:3], "trainer.epochs=3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["test"]["accuracy"] > 0.9
    split = read(only_run(workdir) / "split.json")
    assert split["sizes"] == {"train": 540, "val": 60, "test": 100}  # the official test split stays the test split


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_lenet_with_its_defaults_learns_real_digits_from_png_folders_in_the_first_epochs(workdir):
    """Real handwriting in the real format: scikit-learn's digits upsampled to 28x28 grey PNGs in
    class folders. `model=lenet` with nothing else learns in the first epochs (the classic sigmoid
    LeNet stays at chance at the default rate: see conf/model/lenet.yaml)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = workdir / "digits"
    for index, (image, label) in enumerate(zip(digits.images[:800], digits.target[:800])):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = Image.fromarray((image * 255 / 16).astype(np.uint8), mode="L").resize((28, 28), Image.BILINEAR)
        pixels.save(folder / f"{index}.png")
    result = run_cli("train", "data=imagefolder", f"data.root={root}", "model=lenet", "trainer.epochs=3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["best_val_accuracy"] > 0.6 and summary["test"]["accuracy"] > 0.6, summary  # chance is 0.1


def test_fashion_mnist_and_the_official_split(image_root):
    experiment = build_experiment(compose(["data=fashion_mnist", f"data.root={image_root}", "data.download=false", *FAST_CNN]))
    data = experiment.data
    assert data.input_shape == (1, 28, 28) and data.num_outputs == 10
    assert set(data.split.test) == set(range(600, 700)) and not set(data.split.val) & set(range(600, 700))
    x, _ = next(experiment.batches("val").in_order(16))
    assert x.dtype == torch.float32 and abs(x.mean().item()) < 3  # normalized with the published statistics


def test_cifar_pickles_train_and_the_checksum_is_explained(workdir, image_root):
    base = ["data=cifar10", f"data.root={image_root}", "data.download=false", "model=cifar_cnn", "optim=adam", "trainer.epochs=2"]
    refused = run_cli("train", *base)
    assert refused.exit_code == 2 and "data.verify=false" in refused.stderr and not (workdir / "runs").exists()
    result = run_cli("train", *base, "data.verify=false", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test"]["samples"] == 100


def test_image_folder_of_pngs_trains(workdir, tmp_path):
    folder = write_image_folder(tmp_path / "animals")
    result = run_cli("train", "data=imagefolder", f"data.root={folder}", "data.num_workers=0", "model=cifar_cnn", "optim=adam", "trainer.epochs=4", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["test"]["accuracy"] >= 0.8 and summary["data"] == "animals"
    experiment = build_experiment(compose(["data=imagefolder", f"data.root={folder}", "data.grayscale=true", "data.resize=16"]))
    assert experiment.data.input_shape == (1, 16, 16) and experiment.data.class_names == ["cat", "dog", "fox"]


def test_image_folder_with_mixed_sizes_needs_resize(workdir, tmp_path):
    folder = write_image_folder(tmp_path / "mixed", sizes=((24, 24), (30, 20)))
    result = run_cli("train", "data=imagefolder", f"data.root={folder}")
    assert result.exit_code == 2 and "set data.resize=N" in result.stderr
    ok = run_cli("train", "data=imagefolder", f"data.root={folder}", "data.resize=24", "data.num_workers=0", "model=cifar_cnn", "trainer.epochs=1")
    assert ok.exit_code == 0, ok.output


def _regrey(folder: Path, mode: str, keep_rgb: int = 0) -> Path:
    """Re-save the PNGs of an image folder in PIL mode `mode` (grey kinds), all but `keep_rgb` of them."""
    from PIL import Image

    for index, path in enumerate(sorted(folder.rglob("*.png"))):
        if index < keep_rgb:
            continue
        with Image.open(path) as image:
            grey = image.convert("L")
        if mode.startswith("I;16"):
            grey = Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)  # full 16-bit range
        elif mode != "L":
            grey = grey.convert(mode)
        grey.save(path)
    return folder


@pytest.mark.parametrize("mode", ["L", "LA", "I;16", "1"])
def test_a_folder_of_grey_images_loads_as_one_channel_and_says_so(tmp_path, mode):
    from dlcli.data.images import load_imagefolder

    folder = _regrey(write_image_folder(tmp_path / "grey", per_class=4), mode)
    images = load_imagefolder(str(folder))
    assert images.image_shape == (1, 24, 24)
    assert images.notes == ["all 12 images are single-channel (grey): loading them as 1 channel; data.grayscale=false loads them as RGB"]
    pixels, _ = images.files[0]
    assert pixels.shape == (1, 24, 24) and pixels.dtype == torch.uint8
    assert int(pixels.min()) < 100 and int(pixels.max()) > 200  # 16-bit grey is scaled, not clipped to white
    forced = load_imagefolder(str(folder), grayscale=False)
    assert forced.image_shape == (3, 24, 24) and forced.files[0][0].shape == (3, 24, 24) and forced.notes == []


def test_grey_folder_trains_as_1xhxw_and_the_note_reaches_the_run_log(workdir, tmp_path):
    folder = _regrey(write_image_folder(tmp_path / "grey", per_class=10), "L")
    cfg = compose(["data=imagefolder", f"data.root={folder}", "data.num_workers=0", *FAST_CNN, "trainer.epochs=1"])
    experiment = build_experiment(cfg)
    assert experiment.data.input_shape == (1, 24, 24)
    x, _ = next(experiment.batches("val").in_order(4))
    assert x.shape[1:] == (1, 24, 24)
    result = train(RunRequest(cfg, [], quiet_reporter()))
    assert result.status == "completed"
    assert "note: all 30 images are single-channel (grey): loading them as 1 channel" in (result.run_dir / "train.log").read_text()


def test_rgb_and_mixed_folders_stay_three_channels(tmp_path):
    from dlcli.data.images import load_imagefolder

    rgb = load_imagefolder(str(write_image_folder(tmp_path / "rgb", per_class=4)))
    mixed = load_imagefolder(str(_regrey(write_image_folder(tmp_path / "mixed", per_class=4), "L", keep_rgb=1)))
    for images in (rgb, mixed):
        assert images.image_shape == (3, 24, 24) and images.notes == [] and images.files[0][0].shape == (3, 24, 24)
    assert load_imagefolder(str(tmp_path / "rgb"), grayscale=True).image_shape == (1, 24, 24)
    assert load_imagefolder(str(tmp_path / "rgb"), grayscale="auto").image_shape == (3, 24, 24)


def test_an_unknown_grayscale_value_is_a_one_line_error(workdir, tmp_path):
    folder = _regrey(write_image_folder(tmp_path / "grey", per_class=4), "L")
    for value in ("maybe", "2"):
        result = run_cli("train", "data=imagefolder", f"data.root={folder}", f"data.grayscale={value}")
        assert result.exit_code == 2, result.output
        assert f"data.grayscale={value} is not valid: choose one of auto, true, false" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (workdir / "runs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["data=mnist", "data.root={missing}", "data.download=false"], "no usable MNIST files in {missing}/MNIST/raw: copy the original files there, or fetch them with dl train data.download=true"),
        (["data=imagefolder", "data.root={missing}"], "no such directory"),
        (["data=fashion_mnist", "data.root={root}", "data.download=false", "model=vgg"], "model=vgg cannot take 28x28 images: they shrink to nothing at the 5th pooling layer"),
        (["data=fashion_mnist", "data.root={root}", "data.download=false", "data.normalize=zscore"], "data.normalize=zscore is not valid"),
        (["data=fashion_mnist", "data.root={root}", "data.download=false", "+data.augment.mixup=1"], "data.augment has an unknown setting"),
    ],
)
def test_missing_files_and_bad_shapes_are_one_line_errors(workdir, image_root, args, message):
    missing = workdir / "nothing-here"
    args = [a.format(missing=missing, root=image_root) for a in args]
    result = run_cli("train", *args)
    assert result.exit_code == 2, result.output
    assert message.format(missing=missing) in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (workdir / "runs").exists()


@pytest.mark.slow  # starts DataLoader worker processes and trains
def test_batchable_augmentation_runs_on_the_device_and_per_image_work_through_a_dataloader(workdir, image_root):
    overrides = ["data=fashion_mnist", f"data.root={image_root}", "data.download=false", "data.augment.crop_padding=2",
                 "data.augment.hflip=true", "data.augment.rotation=10", "data.augment.random_erasing=0.3", "data.num_workers=2", *FAST_CNN]
    experiment = build_experiment(compose(overrides))
    assert isinstance(experiment.session.train_data, TensorBatches) and experiment.session.train_data.augment is not None
    assert any("augmenting whole batches on the device" in note for note in experiment.notes)
    assert isinstance(experiment.session.val_data, TensorBatches) and experiment.session.val_data.augment is None  # never augmented
    x, y = next(experiment.session.train_data.shuffled(8, torch.Generator().manual_seed(0)))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (8,)
    summary = train(RunRequest(compose(overrides + ["trainer.epochs=2"]), [], quiet_reporter())).summary
    assert summary["status"] == "completed" and summary["test"]["accuracy"] > 0.5

    per_image = build_experiment(compose(overrides + ["data.augment.color_jitter=0.2"]))
    assert isinstance(per_image.session.train_data, LoaderBatches)
    assert isinstance(per_image.session.val_data, TensorBatches)
    assert any("data.augment.color_jitter=0.2 works image by image" in note for note in per_image.notes)
    x, y = next(per_image.session.train_data.shuffled(8, torch.Generator().manual_seed(0)))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (8,)


def test_resize_and_computed_normalization(image_root):
    experiment = build_experiment(compose(["data=mnist", f"data.root={image_root}", "data.download=false", "data.resize=32",
                                           "data.normalize=computed", "model=cifar_cnn"]))
    assert experiment.data.input_shape == (1, 32, 32)
    x = torch.cat([b[0] for b in experiment.batches("train").in_order(128)])
    assert x.shape[1:] == (1, 32, 32)
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05  # statistics of the train split


def test_kfold_trains_k_runs_and_aggregates(workdir):
    result = run_cli("train", "split.kfold=3", "trainer.epochs=2", "--json")
    assert result.exit_code == 0, result.output
    parent = only_run(workdir)
    assert sorted(p.name for p in parent.iterdir() if p.is_dir()) == ["fold-1", "fold-2", "fold-3"]
    report = read(parent / "kfold.json")
    values = [row["val_accuracy"] for row in report["per_fold"]]
    assert report["mean"] == pytest.approx(np.mean(values)) and report["std"] == pytest.approx(np.std(values, ddof=1))
    splits = [read(parent / f"fold-{k}" / "split.json") for k in (1, 2, 3)]
    assert len({s["hashes"]["test"] for s in splits}) == 1  # the same held-out test split for every fold
    assert len({s["hashes"]["val"] for s in splits}) == 3
    assert sum(s["sizes"]["val"] for s in splits) == splits[0]["sizes"]["val"] + splits[0]["sizes"]["train"]
    assert read(parent / "summary.json")["status"] == "completed"
    assert run_cli("eval", str(parent / "fold-2")).exit_code == 0


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_kfold_interrupted_resumes_the_missing_folds(workdir):
    from test_engine import InterruptAt

    stopped = train(RunRequest(compose(["split.kfold=2", "trainer.epochs=3", "trainer.progress=false"]), [], quiet_reporter(), callbacks=[InterruptAt(epoch=2, batch=3)]))
    assert stopped.status == "interrupted" and "resume=" in stopped.summary["message"]
    resumed = train(RunRequest(compose([f"resume={stopped.run_dir}"]), [f"resume={stopped.run_dir}"], quiet_reporter()))
    assert resumed.status == "completed"
    assert [row["status"] for row in read(stopped.run_dir / "kfold.json")["per_fold"]] == ["completed", "completed"]


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_every_experiment_composes_and_the_small_ones_run(workdir, image_root):
    from dlcli.config.compose import compose as compose_cfg

    names = sorted(p.stem for p in Path(__file__).parents[1].joinpath("conf/experiment").glob("*.yaml"))
    assert {"softmax_fashion", "mlp_fashion", "lenet_fashion", "vgg_small_fashion", "cifar_cnn", "linreg_synthetic", "house_prices_kfold"} <= set(names)
    for name in names:
        assert compose_cfg([f"experiment={name}"]).name
    linreg = train(RunRequest(compose(["experiment=linreg_synthetic", "trainer.progress=false"]), [], quiet_reporter()))
    weights = torch.load(linreg.run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert torch.allclose(weights["net.1.weight"], torch.tensor([[2.0, -3.4]]), atol=0.05)
    assert abs(weights["net.1.bias"].item() - 4.2) < 0.05
    lenet = train(RunRequest(compose(["experiment=lenet_fashion", f"data.root={image_root}", "data.download=false", "trainer.epochs=1", "trainer.progress=false"]), [], quiet_reporter()))
    assert lenet.status == "completed" and lenet.run_dir.parent.name == "lenet_fashion"


def test_house_prices_kfold_recipe_on_a_csv(workdir):
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({"Id": range(n), "LotArea": rng.normal(9000, 2000, n), "OverallQual": rng.integers(1, 11, n),
                          "Neighborhood": rng.choice(["A", "B", None], n)})
    frame["SalePrice"] = (50000 + 8 * frame.LotArea + 15000 * frame.OverallQual) * np.exp(rng.normal(0, 0.05, n))
    frame.to_csv("train.csv", index=False)
    result = train(RunRequest(compose(["experiment=house_prices_kfold", "data.path=train.csv", "trainer.epochs=20", "trainer.progress=false"]), [], quiet_reporter()))
    report = read(result.run_dir / "kfold.json")
    assert report["folds"] == 5 and report["monitor"] == "val_log_rmse" and 0 < report["mean"] < 0.2


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_a_table_of_signal_columns_as_a_sequence(workdir):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 40)
    rows = [np.sin(2 * np.pi * (1 + (i % 2) * 3) * t) + rng.normal(0, 0.1, 40) for i in range(200)]
    frame = pd.DataFrame(rows, columns=[f"s{i}" for i in range(40)])
    frame["kind"] = ["slow" if i % 2 == 0 else "fast" for i in range(200)]
    frame.to_csv("signals.csv", index=False)
    for model in ("gru", "cnn1d"):
        summary = train(RunRequest(compose(["data=csv", "data.path=signals.csv", "data.target=kind", "+data.as_sequence=true", f"model={model}",
                                            "optim=adam", "optim.lr=0.01", "trainer.epochs=8", "trainer.progress=false"]), [], quiet_reporter())).summary
        assert summary["test"]["accuracy"] >= 0.9, (model, summary["test"])
