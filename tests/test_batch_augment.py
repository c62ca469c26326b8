"""Augmentation of whole batches on the device (dlcli.data.batch_augment): what each augmentation
does to a batch, its statistics, and exact resume of a run that uses it."""

import csv

import pytest
import torch

from conftest import quiet_reporter
from dlcli.config.compose import compose
from dlcli.data.batch_augment import DeviceAugment, erase, flip_where, translate
from dlcli.data.transforms import Augment, Normalization
from dlcli.engine.checkpoint import load_checkpoint
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest
from image_fixtures import write_mnist
from test_engine import InterruptAt

CPU = torch.device("cpu")


def epoch_of(settings: dict, count: int, seed: int = 0, norm=None):
    augment = Augment(**settings)
    augment.validate()
    return DeviceAugment(augment, None, norm).epoch(count, torch.Generator().manual_seed(seed), CPU)


def distinct_images(count: int, channels: int = 1, size: int = 12) -> torch.Tensor:
    return torch.randint(1, 256, (count, channels, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_a_flip_flips_about_half_of_the_images_and_leaves_the_rest():
    x = distinct_images(2000)
    out = epoch_of({"hflip": True}, len(x))(x, torch.arange(len(x)))
    plain = x.float() / 255
    flipped = torch.tensor([torch.equal(o, p.flip(2)) for o, p in zip(out, plain)])
    kept = torch.tensor([torch.equal(o, p) for o, p in zip(out, plain)])
    assert bool((flipped ^ kept).all())  # each image is itself or its mirror image
    assert 0.45 < flipped.float().mean() < 0.55
    vertical = epoch_of({"vflip": True}, len(x))(x, torch.arange(len(x)))
    assert all(torch.equal(o, p) or torch.equal(o, p.flip(1)) for o, p in zip(vertical, plain))
    assert torch.equal(flip_where(plain[:2], torch.tensor([True, False]), dim=3)[0], plain[0].flip(2))


@pytest.mark.parametrize("padding", [1, 3])
def test_a_crop_with_padding_is_a_shift_within_the_padding_and_every_shift_is_drawn(padding):
    x = distinct_images(600)
    out = epoch_of({"crop_padding": padding}, len(x))(x, torch.arange(len(x)))
    plain = torch.nn.functional.pad(x.float() / 255, (padding,) * 4)
    size = x.shape[-1]
    shifts = []
    for image, source in zip(out, plain):
        found = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
                 if torch.equal(image, source[:, dy : dy + size, dx : dx + size])]
        assert found, "the crop is not the image shifted by at most the padding"
        shifts.append(found[0])
    assert len(set(shifts)) == (2 * padding + 1) ** 2  # uniform over every offset the padding allows
    assert out.shape == x.shape


def test_a_padding_large_for_the_image_takes_the_gathering_path_with_the_same_meaning():
    x = distinct_images(300, size=6).float()
    u, v = torch.rand(300, generator=torch.Generator().manual_seed(2)), torch.rand(300, generator=torch.Generator().manual_seed(3))
    out = translate(x, 8, u, v)  # (6 + 16)^2 > 4 x 6^2: no padded copy
    padded = torch.nn.functional.pad(x, (8,) * 4)
    dy, dx = (u * 17).long(), (v * 17).long()
    assert torch.equal(out, torch.stack([padded[i, :, dy[i] : dy[i] + 6, dx[i] : dx[i] + 6] for i in range(300)]))
    assert (out == 0).all(dim=(1, 2, 3)).any()  # some windows lie wholly in the padding


def test_translate_pads_with_zeros_at_the_drawn_offsets():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(2, 1, 1, 1)
    out = translate(x, 1, torch.tensor([0.0, 0.99]), torch.tensor([0.0, 0.99]))
    assert torch.equal(out[0, 0, 1:, 1:], x[0, 0, :3, :3]) and out[0, 0, 0].abs().sum() == 0
    assert torch.equal(out[1, 0, :3, :3], x[1, 0, 1:, 1:]) and out[1, 0, 3].abs().sum() == 0


def test_cutout_masks_one_rectangle_of_the_stated_area_in_the_chosen_share_of_images():
    x = distinct_images(1000, channels=3, size=32)
    out = epoch_of({"random_erasing": 0.5}, len(x))(x, torch.arange(len(x)))
    zero = (out == 0).all(dim=1)  # erased pixels are 0 in every channel (the source has no zeros)
    erased = zero.flatten(1).any(dim=1)
    assert 0.44 < erased.float().mean() < 0.56
    for mask in zero[erased]:
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert int(mask.sum()) == height * width  # one solid rectangle
        assert 0.015 * 32 * 32 <= height * width <= 0.35 * 32 * 32
        assert 0.3 / 1.5 <= height / width <= 3.3 * 1.5  # the aspect range (rounding to pixels widens it a little)
    assert torch.equal(out[~erased], x[~erased].float() / 255)


def test_cutout_happens_after_normalizing_so_the_hole_is_the_mean():
    x = torch.full((4, 1, 10, 10), 200, dtype=torch.uint8)
    out = epoch_of({"random_erasing": 1.0}, 4, norm=Normalization((0.5,), (0.25,)))(x, torch.arange(4))
    values = out.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx((200 / 255 - 0.5) / 0.25)
    chosen = torch.tensor([True, False])
    half = torch.full((2,), 0.5)
    kept = erase(torch.ones(2, 1, 8, 8), chosen, half, half, half, half)
    assert kept[1].min() == 1 and kept[0].min() == 0


def test_random_resized_crop_keeps_its_aspect_in_pixels_on_a_wide_image():
    from dlcli.data.batch_augment import _affine

    x = torch.zeros(1, 1, 20, 40)
    x[..., 5:15, 10:30] = 1.0  # a 10 x 20 block in the middle
    u = torch.full((1, 14), 0.5)
    crop = {"scale": [0.25, 0.25], "ratio": [1.0, 1.0]}  # a square of a quarter of the area: 14.1 x 14.1 pixels
    out = _affine(x, u, crop, 0.0)
    # the middle square of the image, stretched back to 20 x 40: the block covers ~ 10/14.1 of its height
    # and its full width, so about 0.71 of the output; a crop of the aspect in [-1, 1] units would be 0.5
    assert 0.6 < float(out.mean()) < 0.8


def test_random_resized_crop_and_rotation_keep_the_shape_and_the_full_crop_is_the_image():
    x = distinct_images(16, channels=3, size=16)
    crop = epoch_of({"random_resized_crop": {"scale": [0.3, 0.6]}}, len(x))(x, torch.arange(len(x)))
    assert crop.shape == (16, 3, 16, 16) and not torch.allclose(crop, x.float() / 255)
    whole = epoch_of({"random_resized_crop": {"scale": [1.0, 1.0], "ratio": [1.0, 1.0]}}, len(x))(x, torch.arange(len(x)))
    assert torch.allclose(whole, x.float() / 255, atol=1e-5)
    turned = epoch_of({"rotation": 30}, len(x))(x, torch.arange(len(x)))
    assert turned.shape == x.shape and not torch.allclose(turned, x.float() / 255)
    still = epoch_of({"rotation": 1e-4}, len(x))(x, torch.arange(len(x)))
    assert torch.allclose(still, x.float() / 255)  # nearest sampling at a tiny angle: the image itself


def test_noise_stays_in_range_and_changes_pixels():
    x = distinct_images(32)
    out = epoch_of({"gaussian_noise": 0.1}, len(x))(x, torch.arange(len(x)))
    assert out.min() >= 0 and out.max() <= 1
    assert 0.05 < (out - x.float() / 255).std() < 0.15


def test_an_image_gets_the_same_draw_whichever_batch_or_process_holds_it():
    settings = {"crop_padding": 2, "hflip": True, "random_erasing": 0.5, "random_resized_crop": True, "rotation": 15}
    x = distinct_images(64, channels=3, size=16)
    augmented = epoch_of(settings, 64, seed=3)
    whole = augmented(x, torch.arange(64))
    rows = torch.tensor([5, 40, 17])
    assert torch.allclose(augmented(x[rows], rows), whole[rows])
    assert not torch.allclose(epoch_of(settings, 64, seed=4)(x, torch.arange(64)), whole)  # another epoch, other draws


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    return write_mnist(tmp_path_factory.mktemp("mnist"), train=400, test=100)


@pytest.mark.slow  # trains, interrupts and resumes: 11.7 s in the fast lane
def test_a_run_augmenting_on_the_device_resumes_exactly(workdir, mnist_root):
    overrides = ["data=mnist", f"data.root={mnist_root}", "data.download=false", "model=lenet", "optim=adam",
                 "trainer.progress=false", "trainer.epochs=3", "data.augment.crop_padding=2", "data.augment.hflip=true",
                 "data.augment.random_erasing=0.5", "data.augment.gaussian_noise=0.05"]
    reference = train(RunRequest(compose(overrides + ["name=reference"]), [], quiet_reporter()))
    assert "augmenting whole batches on the device" in (reference.run_dir / "train.log").read_text()
    stopped = train(RunRequest(compose(overrides), [], quiet_reporter(), callbacks=[InterruptAt(epoch=2, batch=3)]))
    assert stopped.status == "interrupted"
    resumed = train(RunRequest(compose([f"resume={stopped.run_dir}"]), [f"resume={stopped.run_dir}"], quiet_reporter()))
    ref_rows = list(csv.DictReader((reference.run_dir / "metrics.csv").open()))
    res_rows = list(csv.DictReader((resumed.run_dir / "metrics.csv").open()))
    for a, b in zip(ref_rows, res_rows, strict=True):
        assert [a[k] for k in ("epoch", "train_loss", "val_loss")] == [b[k] for k in ("epoch", "train_loss", "val_loss")]
    ref_weights = load_checkpoint(reference.run_dir / "checkpoints" / "last.pt")["model"]
    res_weights = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(ref_weights[k], res_weights[k]) for k in ref_weights)
    plain = train(RunRequest(compose(overrides[:7] + ["name=plain"]), [], quiet_reporter()))
    first = lambda run: list(csv.DictReader((run.run_dir / "metrics.csv").open()))[0]["train_loss"]  # noqa: E731
    assert first(plain) != first(reference)  # the augmentation did change what was trained on
