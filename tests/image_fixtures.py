"""Small image datasets written in the real on-disk formats: IDX (MNIST), CIFAR pickles, PNG folders.

Each class draws a bright square at its own place on a noisy background, so a small CNN learns it.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def class_images(count: int, size: int, channels: int, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(count, size, size, channels), dtype=np.uint8)
    cells = int(np.ceil(np.sqrt(classes)))
    block = size // cells
    for i, label in enumerate(labels):
        row, col = divmod(int(label), cells)
        images[i, row * block : (row + 1) * block, col * block : (col + 1) * block, :] = 220
    return images, labels.astype(np.uint8)


def _write_idx(path: Path, array: np.ndarray) -> None:
    kind = 0x08  # unsigned byte
    header = struct.pack(">HBB", 0, kind, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", train: int = 600, test: int = 100) -> Path:
    """root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, as torchvision reads them."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", train, 0), ("t10k", test, 1)):
        images, labels = class_images(count, 28, 1, seed=seed)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images[..., 0])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def write_cifar10(root: Path, per_batch: int = 100, test: int = 100) -> Path:
    """root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}: the python pickles."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for index, (name, count) in enumerate([(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]):
        images, labels = class_images(count, 32, 3, seed=index)
        rows = images.transpose(0, 3, 1, 2).reshape(count, -1)  # CIFAR stores R, G, B planes per row
        with (folder / name).open("wb") as f:
            pickle.dump({"data": rows, "labels": labels.tolist(), "batch_label": name}, f)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    return root


def write_image_folder(root: Path, classes=("cat", "dog", "fox"), per_class: int = 30, sizes=((24, 24),)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            width, height = sizes[i % len(sizes)]
            image = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
            third = width // len(classes)
            image[:, label * third : (label + 1) * third] = 220
            Image.fromarray(image).save(root / name / f"{i:03d}.png")
    return root
