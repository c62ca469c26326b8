"""A folder of images decoded once (data.cache): into memory, kept on disk in the user's cache
directory (never in the data's folder), rebuilt when the folder changes or the cache is damaged, and
left on files when it would not fit; `dl cache` lists and removes what is kept."""

import json

import pytest
import torch

from conftest import quiet_reporter, run_cli
from dlcli.config.compose import compose
from dlcli.data import image_cache
from dlcli.engine.batches import LoaderBatches, TensorBatches
from dlcli.experiment import build_experiment
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest
from image_fixtures import write_image_folder

FAST = ["model=lenet", "optim=adam", "trainer.progress=false", "trainer.epochs=2"]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the cache lands in this test's cache directory
    return write_image_folder(tmp_path / "pets", per_class=20, sizes=((20, 20),))


def folder_run(folder, *extra):
    return compose(["data=imagefolder", f"data.root={folder}", *FAST, *extra])


def cache_file(folder, name="decoded-RGB-native.bin"):
    from dlcli.data.cache_store import folder_entry

    return folder_entry(folder) / name


def listing(folder) -> list[tuple[str, int, int]]:
    """Every name under the folder with its size and modification time: what a run must not change."""
    return sorted((str(p.relative_to(folder)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*"))


def notes_of(experiment) -> str:
    return "\n".join(experiment.notes)


@pytest.mark.slow  # trains: over half a second in the fast lane
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
    runs = [train(RunRequest(folder_run(folder, f"name=r{i}"), [], quiet_reporter())).summary for i in range(2)]
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
    (lambda data: b"not json\n" + data, "its header is not one dl wrote"),
    (lambda data: data.replace(b'"shape": [60', b'"shape": [61', 1), "shape is not the folder's"),
    (lambda data: b"", "its header is not one dl wrote"),
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


def test_the_cache_is_kept_in_the_user_cache_and_a_read_only_data_folder_is_never_written(workdir, folder, tmp_path):
    import stat

    before = listing(folder)
    modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")] if path.is_dir()}
    for path in modes:
        path.chmod(stat.S_IMODE(modes[path]) & ~0o222)  # a shared, read-only dataset
    try:
        first = build_experiment(folder_run(folder))
        assert f"the cache {tmp_path / 'cache' / 'dl' / 'images'}" in notes_of(first)
        assert "from the cache" in notes_of(build_experiment(folder_run(folder)))
        result = run_cli("train", "data=imagefolder", f"data.root={folder}", *FAST, "trainer.plots=false", "--quiet")
        assert result.exit_code == 0, result.output
    finally:
        for path, mode in modes.items():
            path.chmod(stat.S_IMODE(mode))
    # nothing written there, nothing touched (the check that counts where root writes through any mode)
    assert listing(folder) == before and not (folder / ".dl-cache").exists()
    elsewhere = tmp_path / "named"  # data.cache_dir names dl's cache directory instead
    named = build_experiment(folder_run(folder, f"+data.cache_dir={elsewhere}"))
    assert f"the cache {elsewhere / 'images'}" in notes_of(named) and listing(folder) == before


def test_a_link_in_place_of_the_folder_s_cache_directory_is_never_followed(workdir, folder, tmp_path):
    entry = cache_file(folder).parent
    entry.parent.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    entry.symlink_to(elsewhere)
    built = build_experiment(folder_run(folder))
    assert "not kept on disk" in notes_of(built) and "is a link" in notes_of(built)
    assert list(elsewhere.iterdir()) == []


def test_the_same_folder_by_another_path_shares_its_cache_and_a_copy_does_not(workdir, folder, tmp_path):
    import shutil

    build_experiment(folder_run(folder))
    (tmp_path / "link").symlink_to(folder)
    assert "from the cache" in notes_of(build_experiment(folder_run(tmp_path / "link")))  # keyed by the resolved path
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, copy_function=shutil.copy2)  # modification times kept, change times and inodes not
    assert "decoded the 60 images once" in notes_of(build_experiment(folder_run(copy)))


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
    result = train(RunRequest(folder_run(folder), [], quiet_reporter()))
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
    if plant == "directory":  # cannot be replaced by a file: the run goes on without a cache, and says so
        assert "not kept on disk" in notes_of(rebuilt) and path.is_dir()
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
    assert result.exit_code == 2 and "data.cache=none applies to image sets" in result.stderr
    assert not (workdir / "runs").exists()


@pytest.mark.slow  # starts an interpreter
def test_dl_cache_lists_each_entry_against_its_folder_and_clears_the_stale_ones(workdir, folder, tmp_path):
    import shutil

    from conftest import assert_cli_runs_without_torch

    changed, gone = (write_image_folder(tmp_path / name, per_class=20, sizes=((20, 20),)) for name in ("changed", "gone"))
    for each in (folder, changed, gone):
        build_experiment(folder_run(each))
    build_experiment(folder_run(folder, "data.resize=16"))
    (changed / "cat" / "000.png").write_bytes((changed / "dog" / "000.png").read_bytes())
    shutil.rmtree(gone)
    (cache_file(folder).parent / "decoded-RGB-8.bin").write_bytes(b'{"format": 0}\n')  # an older dl's
    listed = json.loads(run_cli("cache", "list", "--json").stdout)
    why = {(entry["folder"], entry["resize"]): entry["why"] for entry in listed}
    assert why == {(str(folder), None): None, (str(folder), 16): None, (str(changed), None): "its folder changed since",
                   (str(gone), None): "its folder no longer exists", (None, None): "not a cache this version of dl wrote"}
    table = run_cli("cache", "list")
    assert table.exit_code == 0 and "3 stale" in table.stdout and "dl cache clear --stale" in table.stdout
    cleared = run_cli("cache", "clear", "--stale")
    assert cleared.exit_code == 0 and "removed 3 stale cache files" in cleared.stdout
    assert [entry["stale"] for entry in json.loads(run_cli("cache", "list", "--json").stdout)] == [False, False]
    assert "from the cache" in notes_of(build_experiment(folder_run(folder)))  # what is current stays
    assert "decoded the 60 images once" in notes_of(build_experiment(folder_run(changed)))
    everything = json.loads(run_cli("cache", "clear", "--json").stdout)
    assert len(everything["removed"]) == 3 and everything["bytes"] > 0
    assert "nothing kept under" in run_cli("cache", "list").stdout
    assert_cli_runs_without_torch("cache", "list")


def test_a_saved_run_s_cache_directory_is_not_where_eval_or_resume_write(workdir, folder, tmp_path):
    import shutil

    named = tmp_path / "named"
    result = train(RunRequest(folder_run(folder, f"+data.cache_dir={named}", "trainer.plots=false"), [], quiet_reporter()))
    assert (named / "images").is_dir()
    shutil.rmtree(named)  # a run directory received from someone else names a folder of theirs
    evaluated = run_cli("eval", str(result.run_dir))
    assert evaluated.exit_code == 0, evaluated.output
    assert not named.exists() and cache_file(folder).exists()  # the user's own cache directory instead


def test_dl_s_cache_directory_follows_the_setting_then_xdg_then_home(tmp_path, monkeypatch):
    from dlcli.data.cache_store import cache_root

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "dl"
    assert cache_root(str(tmp_path / "mine")) == tmp_path / "mine"  # data.cache_dir
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as the XDG specification says
    assert cache_root() == tmp_path / "home" / ".cache" / "dl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == tmp_path / "home" / ".cache" / "dl"
