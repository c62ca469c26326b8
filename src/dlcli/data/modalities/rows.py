"""Rows held in memory (dlcli.data.sources.RawData), the part the table and array modalities share:
each row encoded with what the train rows taught (their `encode`), the targets, the shape a model
sees, and a CSV of new rows read for `dl predict`."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import numpy as np

from dlcli.config.own_settings import TABLE_ONLY_KEYS
from dlcli.data.modality import Modality
from dlcli.data.new_inputs import NewInputs, read_table, tensor_rows
from dlcli.data.prepared import PreparedData
from dlcli.data.preprocess import encode_targets
from dlcli.data.sources import RawData
from dlcli.errors import UserError


class RowsModality(Modality):
    """What the table and array modalities share; each adds its encoding and how it reads new rows."""

    source_type = RawData
    settings = TABLE_ONLY_KEYS
    applies_to = "tables"
    is_a = "a table held in memory"
    files_taken = "a CSV file"  # what `dl predict` reads for it, in a refusal

    @abstractmethod
    def encode(self, raw: RawData, train_rows: np.ndarray, standardize: bool):
        """Every row as float32, with the encoding fitted on the train rows."""

    @abstractmethod
    def new_rows(self, record: dict, table, name: str, id_column: str | None):
        """The encoded rows of a CSV of new rows, their ids (column, values) or None, and notes."""

    @abstractmethod
    def new_array(self, record: dict, source: Path, given: str, id_column: str | None) -> NewInputs:
        """New rows from a .npy file."""

    def prepare(self, raw: RawData, split, options: dict, placement) -> PreparedData:
        features, encoding = self.encode(raw, split.train, bool(options.get("standardize", True)))
        targets, class_names, scaler = encode_targets(raw, split.train, bool(options.get("standardize_target", False)),
                                                      str(options.get("target_transform") or "none"))
        input_shape, stored_shape = _shapes(raw, features.shape[1], options)
        return PreparedData(
            features=features,
            targets=targets,
            split=split,
            task=raw.task,
            name=raw.name,
            input_shape=input_shape,
            num_outputs=len(class_names) if class_names else 1,
            class_names=class_names,
            feature_names=encoding.feature_names(),
            target_scaler=scaler,
            notes=raw.notes,
            stored_shape=stored_shape,
            encoding=encoding,
            target_name=raw.target_name or ("label" if raw.task == "classification" else "target"),
            id_columns=list(raw.id_columns),
        )

    def record(self, data: PreparedData) -> dict:
        return {"features": data.encoding.to_json()}

    def read_inputs(self, record: dict, source: Path, given: str, id_column: str | None) -> NewInputs:
        if source.is_dir():
            raise UserError(f"{given} is a folder, but the run was trained on a table: give {self.files_taken}")
        if source.suffix.lower() == ".npy":
            return self.new_array(record, source, given, id_column)
        table = read_table(source, text_columns=record["features"].get("categorical", []))
        features, ids, notes = self.new_rows(record, table, source.name, id_column)
        inputs = tensor_rows(record, features)
        inputs.ids, inputs.notes = ids, notes
        return inputs

    def verification_rows(self, data: PreparedData, rows, shape: tuple[int, ...]):
        import torch  # noqa: PLC0415  (dl cache list runs without torch)

        return torch.as_tensor(data.features[rows], dtype=torch.float32).reshape(-1, *shape)

    def stand_in_rows(self, count: int, shape: tuple[int, ...], generator):
        import torch  # noqa: PLC0415  (dl cache list runs without torch)

        # encoded features: standardized values and 0/1 indicators live around this range
        return torch.randn(count, *shape, generator=generator)


def _shapes(raw: RawData, width: int, options: dict) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """The shape a model sees of each row, and the shape rows are stored in when data.resize grows
    them batch by batch (None when it does not)."""
    is_image = raw.image_shape is not None and int(np.prod(raw.image_shape)) == width
    resize = options.get("resize")
    if resize is not None and (not is_image or options.get("as_sequence")):
        raise UserError(f"data.resize={resize} needs image data, and {raw.name} is a table of {width} features: drop it")
    if options.get("as_sequence"):
        input_shape = (1, width)  # each row is a 1-channel signal over its columns
    elif is_image:
        input_shape = tuple(raw.image_shape)
    else:
        input_shape = (width,)
    if resize is None:
        return input_shape, None
    return (input_shape[0], resize, resize), input_shape
