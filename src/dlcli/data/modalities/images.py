"""Image sets (dlcli.data.images.ImageSet: torchvision's sets, folders of images): decoded, resized
and normalized per channel (dlcli.data.image_data); new inputs for `dl predict` are image files,
a folder of them or a .npy array of pixels, and an exported file includes the normalization."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcli.config.own_settings import IMAGE_ONLY_KEYS
from dlcli.data.image_files import IMAGE_SUFFIXES, decode, look
from dlcli.data.modality import Modality, register
from dlcli.data.new_inputs import NewInputs, load_npy
from dlcli.data.record import numbers, whole
from dlcli.errors import UserError

IMAGE_BATCH = 256  # image files decoded (and resized, one by one) per batch
PIXELS = "uint8 0..255, scaled to [0, 1] before normalizing"


@register
class ImagesModality(Modality):
    kind = "images"
    settings = IMAGE_ONLY_KEYS
    applies_to = "image sets (data=imagefolder, mnist, fashion_mnist, cifar10)"
    is_a = "a set of images"

    @property
    def source_type(self) -> type:
        # imported when a run prepares data, not with dlcli.data: it imports torch
        from dlcli.data.images import ImageSet  # noqa: PLC0415  (dl cache list runs without torch: dlcli.data.images imports it)

        return ImageSet

    def setting_hint(self, key: str) -> str:
        return " (data.normalize scales images)" if key == "standardize" else ""

    def check_options(self, options: dict) -> None:
        if options.get("target_transform") not in (None, "none"):
            raise UserError(f"data.target_transform={options['target_transform']} applies to regression targets only: drop it")

    def prepare(self, raw, split, options: dict, placement):
        from dlcli.data.image_cache import decoded_once  # noqa: PLC0415  (dl cache list runs without torch: dlcli.data.image_cache imports it)
        from dlcli.data.image_data import prepare_images  # noqa: PLC0415  (dl cache list runs without torch: dlcli.data.image_data imports it)

        cache_dir = None if placement.saved else options.get("cache_dir")
        raw = decoded_once(raw, placement.cache or str(options.get("cache", "auto")), options.get("resize"), placement.device,
                           placement.copies, cache_dir)
        return prepare_images(raw, split, options.get("resize"), options.get("normalize", "dataset"),
                              options.get("augment") or {}, int(options.get("num_workers", 0)))

    def record(self, data) -> dict:
        norm = data.normalization
        return {"images": {
            "channels": data.input_shape[0],
            "resize": data.resize,  # null: every image must already be input_shape's size
            "normalize": {"mean": list(norm.mean), "std": list(norm.std)} if norm else None,
            "pixels": PIXELS,
        }}

    def check_record(self, record: dict, size: int, bad) -> None:
        images, shape = record.get("images"), record["input_shape"]
        if len(shape) != 3:
            raise bad("images have input_shape channels x height x width")
        if not isinstance(images, dict) or images.get("channels") != shape[0]:
            raise bad("images.channels must be input_shape's first number")
        resize = images.get("resize")
        if resize is not None and not (whole(resize) and resize > 0):
            raise bad("images.resize must be a positive whole number or null")
        normalize = images.get("normalize")
        per_channel = isinstance(normalize, dict) and numbers(normalize.get("mean"), shape[0]) and numbers(normalize.get("std"), shape[0])
        if normalize is not None and not (per_channel and all(s > 0 for s in normalize["std"])):
            raise bad("images.normalize needs a mean and a positive std per channel")

    def read_inputs(self, record: dict, source: Path, given: str, id_column: str | None) -> NewInputs:
        if id_column:
            raise UserError("--id names a CSV column; predictions for images are listed by file name")
        return _images(record, source)

    def verification_rows(self, data, rows, shape: tuple[int, ...]):
        import torch  # noqa: PLC0415  (dl cache list runs without torch)
        from torchvision.transforms import v2  # noqa: PLC0415  (dl cache list runs without torchvision)

        size = tuple(shape[1:])
        if data.source.images is not None:
            images = list(data.source.images[torch.as_tensor(rows, dtype=torch.long)])
        else:
            images = [data.source.files[int(r)][0] for r in rows]
        resize = v2.Resize(list(size), antialias=True)
        return torch.stack([resize(i) if tuple(i.shape[1:]) != size else i for i in images]).float().div(255.0)

    def stand_in_rows(self, count: int, shape: tuple[int, ...], generator):
        import torch  # noqa: PLC0415  (dl cache list runs without torch)

        return torch.rand(count, *shape, generator=generator)  # pixels in [0, 1]

    def export_takes(self, record: dict, shape: list) -> str:
        resize = record["images"]["resize"]
        return (f"float32 pixels in [0, 1], {shape[1]} channel(s) at {shape[2]}x{shape[3]} (height x width); "
                "the per-channel normalization is included" + (f"; resize images to {shape[2]}x{shape[3]} first" if resize else ""))

    def normalization(self, record: dict) -> dict | None:
        return record["images"].get("normalize")


def _images(record: dict, source: Path) -> NewInputs:
    spec = record["images"]
    channels, size = spec["channels"], tuple(record["input_shape"][1:])
    if source.suffix.lower() == ".npy":
        return _image_array(record, load_npy(source), source.name)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}): nothing to predict")
        names = [str(p.relative_to(source)) for p in files]
    elif source.suffix.lower() in IMAGE_SUFFIXES:
        files, names = [source], [source.name]
    else:
        raise UserError(f"{source} is not an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a folder of images or a .npy "
                        "array: the run was trained on images")
    _check_sizes(files, size, spec["resize"])
    mode = "L" if channels == 1 else "RGB"

    def batches(batch: int):
        import torch  # noqa: PLC0415  (dl cache list runs without torch)
        from torchvision.transforms import v2  # noqa: PLC0415  (dl cache list runs without torchvision)

        resize = v2.Resize(list(size), antialias=True) if spec["resize"] else None
        batch = min(batch, IMAGE_BATCH)  # decoded files can be large: hold few of them at once
        for start in range(0, len(files), batch):
            images = []
            for path in files[start : start + batch]:
                image = decode(path, mode)
                images.append(resize(image) if resize is not None and tuple(image.shape[1:]) != size else image)
            yield _model_pixels(torch.stack(images), spec)

    return NewInputs(len(files), batches, ids=("file", names))


def _check_sizes(files: list[Path], size: tuple[int, int], resize) -> None:
    for path in files:  # headers and structure only: cheap even for many files
        (width, height), _ = look(path)
        if not resize and (height, width) != size:
            raise UserError(f"{path} is {width}x{height} pixels, and the run's model takes {size[1]}x{size[0]} images "
                            "(it was trained without data.resize): resize the images, or train with data.resize=N")


def _image_array(record: dict, array: np.ndarray, name: str) -> NewInputs:
    """N x H x W (grey), N x C x H x W or N x H x W x C; uint8 pixels 0..255 or floats in [0, 1]."""
    import torch  # noqa: PLC0415  (dl cache list runs without torch)

    spec = record["images"]
    channels, size = spec["channels"], tuple(record["input_shape"][1:])
    if array.ndim == 3 and channels == 1:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[1] != channels and array.shape[3] == channels:
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4 or array.shape[1] != channels:
        raise UserError(f"{name} has shape {'x'.join(map(str, array.shape))}: the run needs N images of {channels} "
                        f"channel(s) (N x {channels} x H x W, N x H x W x {channels}" + (", or N x H x W)" if channels == 1 else ")"))
    if not spec["resize"] and tuple(array.shape[2:]) != size:
        raise UserError(f"{name} holds {array.shape[3]}x{array.shape[2]} images, and the run's model takes {size[1]}x{size[0]} "
                        "(it was trained without data.resize): resize them, or train with data.resize=N")
    if array.dtype.kind in "iub" and array.dtype != np.uint8:
        raise UserError(f"{name} holds {array.dtype} values: give uint8 pixels (0..255) or floats in [0, 1]")
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise UserError(f"{name} holds floating-point values outside [0, 1]: give uint8 pixels (0..255) or floats in [0, 1]")
    images = torch.from_numpy(np.ascontiguousarray(array))

    def batches(batch: int):
        from torchvision.transforms.v2 import functional as F  # noqa: PLC0415  (dl cache list runs without torchvision)

        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            chunk = chunk.float().div(255.0) if chunk.dtype == torch.uint8 else chunk
            if tuple(chunk.shape[2:]) != size:
                chunk = F.resize(chunk, list(size), antialias=True)
            yield _normalized(chunk, spec)

    return NewInputs(len(images), batches)


def _model_pixels(images, spec: dict):
    """uint8 N x C x H x W at the model's size -> what the model saw in training."""
    return _normalized(images.float().div(255.0), spec)


def _normalized(x, spec: dict):
    from torchvision.transforms.v2 import functional as F  # noqa: PLC0415  (dl cache list runs without torchvision)

    norm = spec.get("normalize")
    return F.normalize(x, list(norm["mean"]), list(norm["std"])) if norm else x
