"""A folder of images decoded once (data.cache): the decoded, resized uint8 pixels held in memory,
so that every epoch takes the same path as MNIST and CIFAR (batches cut from a tensor on the
device), and kept in a cache file in the user's cache directory, so that the next run starts
without decoding.

- `auto` decodes when the pixels fit MEMORY_SHARE of the machine's memory, twice (the whole set
  and the split's parts cut from it) (and, for a run on a
  GPU, GPU_SHARE of its free memory: the training set is copied there); `memory` always decodes;
  `none` reads the files in DataLoader workers every epoch (what a folder too big for memory does).
- Decoding runs in DataLoader worker processes (PIL holds the GIL), with a progress bar.
- The cache file is kept in the user's cache directory, never beside the data
  (dlcli.data.cache_store: `data.cache_dir`, else `$XDG_CACHE_HOME/dl`, else `~/.cache/dl`): one
  JSON header line, then the raw pixels. Its key is a digest of every file's name, size,
  modification and change times and inode, its label, the colour mode and the resize, so a changed
  (or copied) folder is decoded again; the header's shape and a checksum of the pixels are checked
  before it is used, so a damaged or truncated cache is rebuilt, never loaded. It holds numbers
  only: reading it runs no code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as F

from dlcli.data.cache_store import CACHE_FORMAT, cache_name, folder_entry, open_cache, read_header
from dlcli.data.cache_store import folder_key as files_key
from dlcli.data.images import ImageFiles, ImageSet
from dlcli.engine.batches import from_workers, ignore_ctrl_c
from dlcli.system.files import write_atomically
from dlcli.system.machine import memory_bytes, usable_cores

CACHE_SETTINGS = ("auto", "memory", "none")
MEMORY_SHARE = 0.25  # auto: the decoded pixels may take up to this share of the machine's memory
GPU_SHARE = 0.5  # ... and this share of the GPU's free memory, when the run trains on one
UNKNOWN_MEMORY = 8 * 2**30  # what a machine that does not say how much memory it has is taken to have
DECODE_BATCH = 256


def decoded_once(source: ImageSet, setting: str, resize: int | None, device: torch.device | None = None,
                 copies: int = 1, cache_dir: str | None = None) -> ImageSet:
    """`source` with its files decoded into memory when data.cache says so (notes say what was done);
    `copies`: the processes on this machine that will each hold the set (trainer.devices);
    `cache_dir`: data.cache_dir (dl's cache directory, where None: dlcli.data.cache_store.cache_root)."""
    if source.files is None or (source.image_shape is None and resize is None):
        return source  # in memory already, or sizes that differ (prepare_images asks for a resize)
    if setting == "none":
        return dataclasses.replace(source, notes=[*source.notes, f"data.cache=none: the {len(source.files):,} images are read "
                                                  "from their files every epoch, in DataLoader workers"])
    if resize is not None and (not isinstance(resize, int) or isinstance(resize, bool) or resize < 1):
        return source  # prepare_images names the bad value
    files = source.files
    channels = 1 if files.mode == "L" else 3
    shape = (channels, resize, resize) if resize else tuple(source.image_shape)
    size = len(files) * int(np.prod(shape))
    notes = list(source.notes)
    if setting == "auto":
        held = 2 * size * max(1, copies)  # the set and its split parts, in every process
        too_big = _over_budget(held, device, size)
        if too_big:
            each = f" across its {copies} processes" if copies > 1 else ""
            notes.append(f"the {len(files):,} decoded images would take {_gb(size)}, {_gb(held)} with their split parts{each}, "
                         f"more than {too_big}: reading them from the files in DataLoader workers every epoch "
                         "(data.cache=memory decodes them once anyway)")
            return dataclasses.replace(source, notes=notes)
    images, note = _from_cache_or_decoded(files, shape, resize, cache_dir)
    if setting == "auto":
        note += f" (data.cache=auto: {_gb(2 * size * max(1, copies))} with the split's parts fits this machine)"
    notes.append(note)
    return dataclasses.replace(source, images=images, image_shape=shape, notes=notes)


def _over_budget(held: int, device: torch.device | None, per_device: int) -> str | None:
    """What the decoded pixels would not fit in (words for the run log), or None when they fit:
    `held` bytes in this machine's memory, `per_device` on each GPU."""
    memory = memory_bytes() or UNKNOWN_MEMORY
    if held > MEMORY_SHARE * memory:
        return f"{MEMORY_SHARE:.0%} of this machine's {_gb(memory)} of memory"
    if device is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if per_device > GPU_SHARE * free:
            return f"{GPU_SHARE:.0%} of the {_gb(free)} free on {device}"
    return None


def _gb(size: int) -> str:
    return f"{size / 2**30:.2f} GB" if size >= 2**27 else f"{size / 2**20:.1f} MB"


def _from_cache_or_decoded(files: ImageFiles, shape: tuple[int, int, int], resize: int | None,
                           cache_dir: str | None) -> tuple[torch.Tensor, str]:
    if files.root is None:  # not a folder: nothing to key a cache by
        return decode_all(files, shape, resize), f"decoded the {len(files):,} images once into memory"
    key = folder_key(files, resize)
    path = folder_entry(files.root, cache_dir) / cache_name(files.mode, resize)
    why = "no cache of them yet"
    if path.exists() or path.is_symlink():
        images, why = read_cache(path, key, (len(files), *shape))
        if images is not None:
            return images, f"the {len(files):,} images were decoded before: read into memory from the cache {path}"
    images = decode_all(files, shape, resize)
    where = _write_cache(path, key, images, files, resize)
    kept = f"the cache {where} keeps them for the next run" if isinstance(where, Path) else f"not kept on disk ({where})"
    return images, f"decoded the {len(files):,} images once into memory ({_gb(images.numel())}; {why}); {kept}"


def folder_key(files: ImageFiles, resize: int | None) -> str:
    """A digest of what the decoded pixels depend on (dlcli.data.cache_store.folder_key)."""
    return files_key(files.paths, files.labels, files.root, files.mode, resize)


def read_cache(path: Path, key: str, shape: tuple[int, ...]) -> tuple[torch.Tensor | None, str]:
    """The cached pixels when the file is a whole regular file made for this key, else (None, why
    not). Never through a link, never blocking on a pipe, never reading more than the pixels."""
    expected = int(np.prod(shape))
    file, size = open_cache(path)
    if file is None:
        return None, size
    with file:
        try:
            header, line = read_header(file)
            if header is None:
                return None, f"the cache {path} is damaged (its header is not one dl wrote)"
            if header.get("format") != CACHE_FORMAT:
                return None, "the cache was written by another version"
            if header.get("key") != key:
                return None, "the folder changed since the cache was written"
            if header.get("shape") != list(shape):
                return None, f"the cache {path} is damaged (its shape is not the folder's)"
            if size != len(line) + expected:
                return None, f"the cache {path} is damaged ({size - len(line):,} bytes of pixels, {expected:,} expected)"
            pixels = np.fromfile(file, dtype=np.uint8, count=expected)
        except (OSError, ValueError) as exc:  # unreadable
            return None, f"the cache {path} is damaged ({type(exc).__name__})"
    if pixels.size != expected:
        return None, f"the cache {path} is damaged ({pixels.size:,} bytes of pixels, {expected:,} expected)"
    if _checksum(pixels) != header.get("checksum"):
        return None, f"the cache {path} is damaged (its checksum does not match)"
    return torch.from_numpy(pixels.reshape(shape)), ""


def _write_cache(path: Path, key: str, images: torch.Tensor, files: ImageFiles, resize: int | None) -> Path | str:
    """The cache written whole to `path` (its header names the folder, so `dl cache list` can check
    it against the folder later); or why it was not."""
    pixels = images.numpy().reshape(-1)
    header = json.dumps({"format": CACHE_FORMAT, "key": key, "shape": list(images.shape), "checksum": _checksum(pixels),
                         "folder": str(files.root.resolve()), "mode": files.mode, "resize": resize})

    def write(file) -> None:
        file.write(header.encode() + b"\n")
        file.write(memoryview(pixels))

    if path.parent.is_symlink():  # a link in place of the folder's entry must not lead the write elsewhere
        return f"{path.parent} is a link"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, write, binary=True, size_hint=pixels.size)
        return path
    except Exception as exc:  # a read-only or full cache directory: the run goes on without
        return f"{path.parent} cannot be written: {type(exc).__name__}"


def _checksum(pixels: np.ndarray) -> str:
    return hashlib.blake2b(memoryview(np.ascontiguousarray(pixels)), digest_size=16).hexdigest()


class DecodedAtSize(Dataset):
    """Each file decoded (and resized to the model's size) as uint8, for the one decoding pass."""

    def __init__(self, files: ImageFiles, resize: int | None):
        self.files, self.resize = files, resize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        image, _ = self.files[index]
        if self.resize is not None and tuple(image.shape[-2:]) != (self.resize, self.resize):
            image = F.resize(image, [self.resize, self.resize], antialias=True)
        return image


def decode_all(files: ImageFiles, shape: tuple[int, int, int], resize: int | None) -> torch.Tensor:
    """Every file decoded into one uint8 N x C x H x W tensor, in worker processes, with a progress bar."""
    images = torch.empty((len(files), *shape), dtype=torch.uint8)
    workers = min(usable_cores(), max(0, len(files) // 2000))  # small folders: starting processes costs more
    # its own generator: a DataLoader draws its workers' seed, which must not move the run's global one
    loader = DataLoader(DecodedAtSize(files, resize), batch_size=DECODE_BATCH, num_workers=workers, generator=torch.Generator(),
                        worker_init_fn=ignore_ctrl_c)
    console = Console(stderr=True)
    bar = Progress(TextColumn("decoding images once"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, transient=True, disable=not console.is_terminal)
    with bar:
        task = bar.add_task("decode", total=len(files))
        done = 0
        for batch in from_workers(loader):
            images[done : done + len(batch)] = batch
            done += len(batch)
            bar.update(task, completed=done)
    return images
