"""Opening an image file a user gave (a folder to train on, images to predict): every file is
checked before anything trains on it, so a bad one is one line naming it, never a crash in a
DataLoader worker or PIL's DecompressionBombError.

- `look(path)` reads the header (size, mode) and verifies the file's structure (PNG chunks and
  their checksums, GIF frames, ...) without decoding the pixels: a truncated PNG is found here;
- an image of more than MAX_PIXELS is refused: a 45-byte PNG header can claim 20000 x 20000;
- `decode(path, mode)` turns one into a uint8 tensor; a file that still fails (a JPEG cut short)
  raises UnreadableImage, whose one line survives the trip out of a worker process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcli.errors import UserError, first_line

MAX_PIXELS = 64_000_000  # 8000 x 8000: far beyond what a model here is fed (resize first)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def class_files(folder: Path) -> tuple[list[str], list[Path], list[int]]:
    """A folder of one sub-folder per class: the class names (sorted; hidden folders are not
    classes), and every image file under them with its class's index, in a fixed order."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(path)
                labels.append(label)
    return classes, paths, labels


class UnreadableImage(UserError):
    """An image file that cannot be decoded (named, with the reason)."""


def look(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and PIL mode of an image file, after checking it is whole and not huge."""
    from PIL import Image  # noqa: PLC0415  (dl cache list runs without PIL)

    try:
        with Image.open(path) as image:
            size, mode = image.size, image.mode
            _check_pixels(path, size)
            image.verify()  # the file's structure, without decoding its pixels
    except UserError:
        raise
    except Exception as exc:  # UnidentifiedImageError, OSError (truncated), SyntaxError (broken chunks), bombs
        raise UserError(f"{path} is not a readable image ({_reason(exc)}): remove it or replace it") from None
    return size, mode


def decode(path: Path, mode: str):
    """The image as a uint8 C x H x W tensor in `mode` (L or RGB); 16-bit grey scaled to 8 bits."""
    from PIL import Image  # noqa: PLC0415  (dl cache list runs without PIL)
    from torchvision.transforms.v2 import functional as F  # noqa: PLC0415  (dl cache list runs without torchvision)

    try:
        with Image.open(path) as image:
            _check_pixels(path, image.size)
            return F.pil_to_tensor(eight_bit(image).convert(mode))
    except UserError:
        raise
    except Exception as exc:
        raise UnreadableImage(f"{path} cannot be decoded ({_reason(exc)}): remove it or replace it") from None


def eight_bit(image):
    """16-bit grey images scaled to 8 bits: PIL's own conversion to L or RGB clips them at 255,
    which turns nearly every pixel white."""
    if image.mode.startswith("I;16") or image.mode == "I":
        from PIL import Image  # noqa: PLC0415  (dl cache list runs without PIL)

        pixels = np.asarray(image, dtype=np.int64) >> 8
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise UnreadableImage(f"{path} claims {width}x{height} pixels, more than the {MAX_PIXELS:,} dl opens: "
                              "shrink it (or remove it)")


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc, limit=120)}" if first_line(exc, default="") else type(exc).__name__
