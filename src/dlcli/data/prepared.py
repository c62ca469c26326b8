"""Rows held in memory (a table, or a plain array such as scikit-learn's digits) prepared for a
run: every row encoded, the split, and what a model needs to know about them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlcli.data.preprocess import ArrayEncoding, TableEncoding, TargetScaler
from dlcli.data.record import data_record
from dlcli.data.split import Split


@dataclass
class PreparedData:
    """Encoded arrays for every row, the split, and what a model needs to know about them."""

    features: np.ndarray  # float32, one row per sample
    targets: np.ndarray  # int64 class indices or float32 values
    split: Split
    task: str
    name: str
    input_shape: tuple[int, ...]  # per-sample shape the model sees, e.g. (64,) or (1, 8, 8)
    num_outputs: int  # classes, or 1 for regression
    class_names: list[str] | None = None
    feature_names: list[str] = field(default_factory=list)
    target_scaler: TargetScaler | None = None
    notes: list[str] = field(default_factory=list)
    stored_shape: tuple[int, ...] | None = None  # a row's shape before data.resize (digits: 1x8x8)
    encoding: ArrayEncoding | TableEncoding | None = None
    target_name: str = "target"
    id_columns: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """The modality (dlcli.data.modality): its encoding's, "table" (named columns) or "array"."""
        return self.encoding.kind

    def preprocessing(self) -> dict:
        """The run's preprocessing.json (dlcli.data.record.data_record)."""
        return data_record(self)

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.split.part(name)
        return self.features[rows], self.targets[rows]

    def batches(self, name: str, device, training: bool = False):
        """The part as tensors on the device; rows take the sample shape (digits rows become 1x8x8)."""
        import torch  # noqa: PLC0415  (dl cache list runs without torch)

        from dlcli.engine.batches import TensorBatches  # noqa: PLC0415  (dl cache list runs without torch: dlcli.engine.batches imports it)

        features, targets = self.part(name)
        x = torch.as_tensor(features, dtype=torch.float32).reshape(-1, *(self.stored_shape or self.input_shape))
        y = target_tensor(self.task, targets)
        return TensorBatches(x.to(device), y.to(device), self._resize_batch if self.stored_shape else None)

    def _resize_batch(self, x):
        """Upsample a batch on the device (bilinear): the set is stored small, each batch grows."""
        from torch.nn import functional  # noqa: PLC0415  (dl cache list runs without torch)

        return functional.interpolate(x, size=tuple(self.input_shape[1:]), mode="bilinear", align_corners=False)


def target_tensor(task: str, targets: np.ndarray):
    """Targets as the loss takes them: class indices (int64), or float32 values, one row per sample
    (N x 1; a forecast's N x horizon*K)."""
    import torch  # noqa: PLC0415  (dl cache list runs without torch)

    if task == "classification":
        return torch.as_tensor(targets, dtype=torch.long)
    return torch.as_tensor(targets, dtype=torch.float32).reshape(len(targets), -1)
