"""Image data: MNIST, Fashion-MNIST and CIFAR-10 through torchvision, and folders of images.

The official test split of the torchvision sets stays the test split; validation is carved from
the official train split. Small sets are held in memory as uint8 tensors and turned into floats
(resized, normalized) one batch at a time on the device; augmentation and folders of files go
through a DataLoader with workers, applying torchvision.transforms.v2 per sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dlcli.config.constraints import Options, Text, constrained
from dlcli.data.image_files import class_files, decode, look
from dlcli.errors import UserError, first_line

# Per-channel mean and std of the official train splits, the values the literature uses.
KNOWN_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
TORCHVISION_SETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


@dataclass
class ImageSet:
    """What an image source returns: every sample (official train first, then official test)."""

    name: str
    class_names: list[str]
    targets: np.ndarray  # int64 class index per sample
    images: torch.Tensor | None = None  # uint8 N x C x H x W, when held in memory
    files: Dataset | None = None  # (uint8 C x H x W tensor, label) per sample, when read from disk
    test_rows: np.ndarray | None = None  # the official test split, if the set has one
    image_shape: tuple[int, int, int] | None = None  # None when images differ in size
    notes: list[str] = field(default_factory=list)


def load_torchvision(name: str, root: str = "~/.cache/dlcli/datasets", download: bool = True, verify: bool = True) -> ImageSet:
    """MNIST, Fashion-MNIST or CIFAR-10 from `root` (downloading them when allowed)."""
    import torchvision.datasets as tv  # noqa: PLC0415  (dl train runs without torchvision)

    if name not in TORCHVISION_SETS:
        raise UserError(f"data.name={name} is not a torchvision set here: choose one of {', '.join(TORCHVISION_SETS)}")
    folder = Path(root).expanduser()
    cls = getattr(tv, TORCHVISION_SETS[name])
    if name == "cifar10" and not verify:
        cls = _unverified_cifar10(cls)
    try:
        train = cls(str(folder), train=True, download=download)
        test = cls(str(folder), train=False, download=download)
    except RuntimeError as exc:
        if "not found" in str(exc).lower() or "corrupted" in str(exc).lower():
            where = folder / (cls.base_folder if hasattr(cls, "base_folder") else f"{cls.__name__}/raw")
            hint = "copy the original files there, or fetch them with dl train data.download=true (a saved run never downloads)"
            if name == "cifar10" and verify:
                hint += " (files that fail the MD5 check also land here: data.verify=false skips it for files you made)"
            raise UserError(f"data={name} data.root={root}: no usable {cls.__name__} files in {where}: {hint}") from None
        first = first_line(exc).rstrip(":")
        raise UserError(
            f"data={name}: {first} into {folder}: check the network, or copy the files there and set data.download=false"
        ) from None
    except OSError as exc:  # a download with no network
        raise UserError(f"data={name}: could not download into {folder} ({exc}): download elsewhere and copy it there") from None
    images = [_as_nchw(split.data) for split in (train, test)]
    targets = np.concatenate([np.asarray(split.targets, dtype=np.int64) for split in (train, test)])
    return ImageSet(
        name=name,
        class_names=[str(c) for c in train.classes],
        targets=targets,
        images=torch.cat(images),
        test_rows=np.arange(len(train.targets), len(targets)),
        image_shape=tuple(images[0].shape[1:]),
    )


def _unverified_cifar10(cls):
    """CIFAR-10 reading files as they are: torchvision checks a file only when its md5 is set."""

    class CIFAR10Files(cls):
        train_list = [[name, None] for name, _ in cls.train_list]
        test_list = [[name, None] for name, _ in cls.test_list]
        meta = {**cls.meta, "md5": None}

    return CIFAR10Files


def _as_nchw(data) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(data))
    if tensor.ndim == 3:  # N x H x W (grey)
        return tensor.unsqueeze(1).contiguous()
    return tensor.permute(0, 3, 1, 2).contiguous()  # N x H x W x C -> N x C x H x W


class ImageFiles(Dataset):
    """Images on disk, decoded on demand as uint8 C x H x W tensors (grey or RGB)."""

    def __init__(self, paths: list[Path], labels: np.ndarray, grayscale: bool, root: Path | None = None):
        self.paths, self.labels, self.mode = paths, labels, "L" if grayscale else "RGB"
        self.root = root  # the folder they were listed from (what their decoded cache is kept for)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return decode(self.paths[index], self.mode), int(self.labels[index])


# PIL modes with a single channel of values (grey), with or without alpha: "1" is black and white,
# "I;16*" and "I" are 16-bit grey (PNG, TIFF), "F" is floating-point grey.
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
GRAYSCALE_CHOICES = ("auto", "true", "false")


def _grayscale_setting(grayscale) -> bool | None:
    """data.grayscale as True, False, or None for auto (decide from the images)."""
    if isinstance(grayscale, bool):
        return grayscale
    if isinstance(grayscale, str) and grayscale.strip().lower() in GRAYSCALE_CHOICES:
        return {"auto": None, "true": True, "false": False}[grayscale.strip().lower()]
    shown = "null" if grayscale is None else grayscale
    raise UserError(f"data.grayscale={shown} is not valid: choose one of {'|'.join(GRAYSCALE_CHOICES)} "
                    "(auto: one channel when every image is grey)")


@constrained(root=Text(non_empty=True), grayscale=Options(("auto", True, False)))
def load_imagefolder(root: str, grayscale: bool | str = "auto") -> ImageSet:
    """A directory with one sub-folder of images per class (any image size).

    `grayscale`: true loads one grey channel, false three (RGB); auto loads one when every image
    in the folder is single-channel (grey, black-and-white, 16-bit grey) and says so in a note.
    """
    forced = _grayscale_setting(grayscale)
    folder = Path(str(root)).expanduser()
    if not folder.is_dir():
        raise UserError(f"data.root={root}: no such directory (it should hold one sub-folder of images per class)")
    classes, paths, labels = class_files(folder)
    if len(classes) < 2 or not paths:
        raise UserError(f"data.root={root} needs at least two class sub-folders with images ({len(classes)} folders, {len(paths)} images found)")
    empty = [name for label, name in enumerate(classes) if label not in set(labels)]
    if empty:  # a class no image teaches: a head output that can only be wrong
        raise UserError(f"data.root={root}: the class folder{'s' if len(empty) > 1 else ''} {', '.join(empty)} "
                        f"hold{'' if len(empty) > 1 else 's'} no images: add images, or remove {'them' if len(empty) > 1 else 'it'}")
    sizes, modes = set(), set()
    for path in paths:  # headers and structure only: cheap even for many files
        size, mode = look(path)
        sizes.add(size)
        modes.add(mode)
    notes = []
    if forced is None:
        grey = modes <= GREY_MODES
        if grey:
            notes.append(f"all {len(paths)} images are single-channel (grey): loading them as 1 channel; "
                         "data.grayscale=false loads them as RGB")
    else:
        grey = forced
    channels = 1 if grey else 3
    shape = None
    if len(sizes) == 1:
        width, height = sizes.pop()
        shape = (channels, height, width)
    targets = np.asarray(labels, dtype=np.int64)
    return ImageSet(name=folder.name, class_names=classes, targets=targets, files=ImageFiles(paths, targets, grey, folder),
                    image_shape=shape, notes=notes)
