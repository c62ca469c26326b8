"""A folder of images decoded once (data.cache): into memory, kept on disk beside the data, rebuilt
when the folder changes or the cache is damaged, and left on files when it would not fit."""

import json

import pytest
import torch

from conftest import quiet_reporter, run_cli
from dlcli.config import compose
from dlcli.data import image_cache
from dlcli.engine.batches import LoaderBatches, TensorBatches
from dlcli.experiment import build_experiment
from dlcli.train import train
from image_fixtures import write_image_folder

FAST = ["model=lenet", "optim=adam", "trainer.progress=false", "trainer.epochs=2"]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the fallback cache lands in this test's home
    return write_image_folder(tmp_path / "pets", per_class=20, sizes=((20, 20),))


def folder_run(folder, *extra):
    return compose(["data=imagefolder", f"data.root={folder}", *FAST, *extra])


def cache_file(folder, name="decoded-RGB-native.bin"):
    return folder / ".dl-cache" / name


def notes_of(experiment) -> str:
    return "\n".join(experiment.notes)


def test_the_first_run_decodes_once_and_the_next_reads_the_cache_with_the_same_numbers(workdir, folder):
    first = build_experiment(folder_run(folder))
    assert isinstance(first.session.train_data, TensorBatches)  # the in-memory path, as MNIST's
    assert "decoded the 60 images once into memory" in notes_of(first) and cache_file(folder).exists()
    second = build_experiment(folder_run(folder))
    assert f"read into memory from the cache {cache_file(folder)}" in notes_of(second)
    assert torch.equal(first.data.source.images, second.data.source.images)
    files = build_experiment(folder_run(folder, "data.cache=none"))
    assert isinstance(files.session.train_data, LoaderBatches)
    decoded = torch.stack([files.data.source.files[i][0] for i in range(len(files.data.source.files))])
    assert torch.equal(decoded, first.data.source.images)  # the same pixels the files give
    runs = [train(folder_run(folder, f"name=r{i}"), [], quiet_reporter()).summary for i in range(2)]
    assert runs[0]["status"] == "completed" and runs[0]["test"] == runs[1]["test"]


def test_a_changed_folder_is_decoded_again(workdir, folder):
    build_experiment(folder_run(folder))
    image = folder / "cat" / "000.png"
    from PIL import Image

    Image.new("RGB", (20, 20), (255, 0, 0)).save(image)
    changed = build_experiment(folder_run(folder))
    assert "the folder changed since the cache was written" in notes_of(changed)
    row = changed.data.source.files.paths.index(image)
    assert changed.data.source.images[row, 0].float().mean() == 255  # the new image, not the cached one
    Image.new("RGB", (20, 20)).save(folder / "dog" / "999.png")
    grown = build_experiment(folder_run(folder))
    assert "the folder changed" in notes_of(grown) and len(grown.data.source.images) == 61
    assert "from the cache" in notes_of(build_experiment(folder_run(folder)))


@pytest.mark.parametrize("damage, why", [
    (lambda data: data[:-100], "bytes of pixels"),  # cut short
    (lambda data: data[:-1] + bytes([data[-1] ^ 0xFF]), "checksum does not match"),  # one pixel changed
    (lambda data: b"not json\n" + data, "damaged (JSONDecodeError)"),
    (lambda data: data.replace(b'"shape": [60', b'"shape": [61', 1), "shape is not the folder's"),
    (lambda data: b"", "damaged (JSONDecodeError)"),
])
def test_a_damaged_cache_is_rebuilt_not_loaded(workdir, folder, damage, why):
    reference = build_experiment(folder_run(folder)).data.source.images
    path = cache_file(folder)
    path.write_bytes(damage(path.read_bytes()))
    rebuilt = build_experiment(folder_run(folder))
    assert why in notes_of(rebuilt) and "decoded the 60 images once" in notes_of(rebuilt)
    assert torch.equal(rebuilt.data.source.images, reference)
    header = json.loads(path.read_bytes().split(b"\n", 1)[0])
    assert header["shape"] == [60, 3, 20, 20]  # written whole again
    assert "from the cache" in notes_of(build_experiment(folder_run(folder)))


def test_each_resize_has_its_own_cache_at_the_model_size(workdir, folder):
    resized = build_experiment(folder_run(folder, "data.resize=16"))
    assert resized.data.source.images.shape == (60, 3, 16, 16) and cache_file(folder, "decoded-RGB-16.bin").exists()
    x, _ = next(resized.session.train_data.in_order(8))
    assert x.shape == (8, 3, 16, 16)
    assert "decoded the 60" in notes_of(build_experiment(folder_run(folder)))  # native size: another cache


def test_auto_leaves_a_folder_that_does_not_fit_on_files_and_memory_decodes_it_anyway(workdir, folder, monkeypatch):
    monkeypatch.setattr(image_cache, "MEMORY_SHARE", 1e-9)
    auto = build_experiment(folder_run(folder))
    assert isinstance(auto.session.train_data, LoaderBatches) and auto.data.source.images is None
    assert "reading them from the files in DataLoader workers every epoch (data.cache=memory" in notes_of(auto)
    assert not cache_file(folder).exists()
    forced = build_experiment(folder_run(folder, "data.cache=memory"))
    assert isinstance(forced.session.train_data, TensorBatches) and cache_file(folder).exists()


def test_a_folder_that_cannot_hold_the_cache_uses_the_user_cache_and_a_link_is_never_followed(workdir, folder, tmp_path):
    (folder / ".dl-cache").write_text("a file where the cache folder would be")
    experiment = build_experiment(folder_run(folder))
    assert "the cache " + str(tmp_path / "home" / ".cache" / "dlcli" / "images") in notes_of(experiment)
    assert "from the cache " + str(tmp_path / "home") in notes_of(build_experiment(folder_run(folder)))
    (folder / ".dl-cache").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / ".dl-cache").symlink_to(elsewhere)
    build_experiment(folder_run(folder))
    assert list(elsewhere.iterdir()) == []


def test_a_bad_cache_setting_is_one_line(workdir, folder):
    result = run_cli("train", "data=imagefolder", f"data.root={folder}", "data.cache=disk")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "data.cache=disk" in result.stderr and "auto" in result.stderr and "memory" in result.stderr
    assert not (workdir / "runs").exists()


def test_an_unreadable_image_is_one_line_before_runs_is_touched(workdir, folder):
    (folder / "fox" / "005.png").write_bytes((folder / "fox" / "005.png").read_bytes()[:60])
    result = run_cli("train", "data=imagefolder", f"data.root={folder}", *FAST)
    assert result.exit_code == 2 and "005.png" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (workdir / "runs").exists()


def test_the_folder_is_normalized_alike_whether_decoded_once_or_read_from_files(workdir, folder):
    memory = build_experiment(folder_run(folder, "data.cache=memory")).data.normalization
    files = build_experiment(folder_run(folder, "data.cache=none")).data.normalization
    assert memory == files


def test_auto_is_decided_once_and_kept_by_the_run(workdir, folder, monkeypatch):
    result = train(folder_run(folder), [], quiet_reporter())
    from omegaconf import OmegaConf

    assert OmegaConf.load(result.run_dir / "config.yaml").data.cache == "memory"
    monkeypatch.setattr(image_cache, "MEMORY_SHARE", 1e-9)  # the machine is fuller now: auto would read the files
    again = build_experiment(OmegaConf.load(result.run_dir / "config.yaml"), restoring=True)
    assert again.data.source.images is not None  # the run's own decision stands (its resume trains the same way)


@pytest.mark.parametrize("plant", ["link", "pipe", "huge", "directory"])
def test_a_planted_cache_file_is_never_followed_blocked_on_or_read_whole(workdir, folder, tmp_path, plant):
    import os

    build_experiment(folder_run(folder))
    path = cache_file(folder)
    header = path.read_bytes().split(b"\n", 1)[0] + b"\n"
    path.unlink()
    if plant == "link":
        outside = tmp_path / "outside.bin"
        outside.write_bytes(header + bytes(60 * 3 * 20 * 20))
        path.symlink_to(outside)
    elif plant == "pipe":
        os.mkfifo(path)
    elif plant == "directory":
        path.mkdir()
    else:
        with path.open("wb") as file:  # a valid header, then far more bytes than the pixels
            file.write(header)
            file.truncate(len(header) + 2**40)
    rebuilt = build_experiment(folder_run(folder))
    assert "decoded the 60 images once" in notes_of(rebuilt)
    if plant == "directory":  # cannot be replaced by a file: the user's cache keeps them
        assert "the cache " + str(tmp_path / "home") in notes_of(rebuilt)
        return
    assert not path.is_symlink() and path.is_file() and path.stat().st_size < 2**20


def test_a_folder_read_from_files_says_so_and_a_blur_larger_than_the_images_is_one_line(workdir, folder):
    files = build_experiment(folder_run(folder, "data.cache=none"))
    assert "data.cache=none: the 60 images are read from their files every epoch" in notes_of(files)
    result = run_cli("train", "data=imagefolder", f"data.root={folder}", "data.augment.gaussian_blur={kernel: 41}", *FAST)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "gaussian_blur kernel 41 is too large for 20x20 images: at most 39" in result.stderr
    assert not (workdir / "runs").exists()


def test_an_empty_class_folder_and_a_cache_setting_on_a_table_are_one_line(workdir, folder):
    (folder / "wolf").mkdir()
    result = run_cli("train", "data=imagefolder", f"data.root={folder}", *FAST)
    assert result.exit_code == 2 and "the class folder wolf holds no images" in result.stderr
    result = run_cli("train", "data=wine", "+data.cache=none", "trainer.epochs=1")
    assert result.exit_code == 2 and "data.cache=none applies to folders of images" in result.stderr
    assert not (workdir / "runs").exists()
