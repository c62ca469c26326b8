"""A data modality (image sets, tables, plain arrays) as one object: how its data set is prepared,
what it writes into the run's preprocessing.json and how a received record of it is checked, how
`dl predict` reads new inputs for it and what `dl export` puts around the model.

Each modality is a subclass of `Modality` in its own module of dlcli.data.modalities, registered
with `@register` under the `kind` it writes into preprocessing.json; every module of that package
is imported with dlcli.data, so the code that opens a run asks `modality_named(record["kind"])`
and switches on no name. Adding a modality is adding its module (and its data set's YAML).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from dlcli.config.constraints import show
from dlcli.errors import UserError


@dataclass(frozen=True)
class Placement:
    """Where a run's data is held, which only some modalities use (a folder of images is decoded
    once into memory when it fits): the device the run trains on, the processes that each hold the
    set, data.cache as given on the command line, and whether the config came from a run directory
    (then its data.cache_dir is not where dl writes)."""

    device: Any = None
    cache: str | None = None
    copies: int = 1
    saved: bool = False


class Prepared(Protocol):
    """What a modality's prepared data offers the run (dlcli.data.PreparedData and
    dlcli.data.image_data.ImageData are two): the engine takes its batches, the run writes its record."""

    kind: str  # the registered modality's kind
    task: str  # classification | regression
    name: str
    split: Any  # dlcli.data.split.Split
    targets: Any  # one class index or value per row (the train split's balance the class weights)
    input_shape: tuple[int, ...]  # what the model sees of one sample
    stored_shape: tuple[int, ...] | None  # rows kept smaller and resized batch by batch (digits with data.resize)
    num_outputs: int
    class_names: list[str] | None
    target_name: str  # the column predictions are written under
    id_columns: Sequence[str]
    target_scaler: Any  # dlcli.data.preprocess.TargetScaler (regression), or None
    notes: list[str]  # lines for the run log
    fingerprint: str | None  # of the data's content as its source returned it (set by dlcli.data.prepare_data)

    def preprocessing(self) -> dict: ...  # the run's preprocessing.json (dlcli.data.record.data_record)

    def batches(self, part: str, device, training: bool = False): ...  # dlcli.engine.batches' sources


class Modality(ABC):
    """One kind of data. A subclass sets the class attributes and implements the abstract methods
    (registering one that does not fails as dl starts, not when a run of it is opened)."""

    kind: ClassVar[str]  # as written in preprocessing.json: old runs say it, so it is never renamed
    source_type: ClassVar[type]  # what its data set's _target_ returns (dlcli.data.sources.RawData, ...)
    settings: ClassVar[tuple[str, ...]] = ()  # data settings only it (and modalities sharing them) reads: refused elsewhere
    applies_to: ClassVar[str]  # the data sets those settings apply to, in a refusal ("tables")
    is_a: ClassVar[str]  # what a data set of this modality is, in a refusal ("a table held in memory")
    input_dtype: ClassVar[str] = "float32"  # what a model (and an exported file) takes: int64 for token ids

    def accepts(self, raw) -> bool:
        """Whether `raw`, what a data set's _target_ returned, is data of this modality."""
        return isinstance(raw, self.source_type)

    def setting_hint(self, key: str) -> str:
        """Words added when data.`key` of another modality is refused here (what does its job here)."""
        return ""

    def check_options(self, options: dict) -> None:
        """Refuse a data setting this modality cannot use, before the data is prepared."""

    def split(self, raw, split_cfg) -> Any:
        """The parts of a data set whose order is its meaning (a series, a text): contiguous spans in
        time, never shuffled rows (a dlcli.data.split.Split). None: the seeded, stratified split of
        rows every other data set gets (dlcli.data)."""
        return None

    @abstractmethod
    def prepare(self, raw, split, options: dict, placement: Placement) -> Prepared:
        """`raw` (what the data set returned) prepared for a run with the data settings in `options`."""

    @abstractmethod
    def record(self, data) -> dict:
        """This modality's own fields of preprocessing.json (beside those every run writes)."""

    @abstractmethod
    def check_record(self, record: dict, size: int, bad: Callable[[str], Exception]) -> None:
        """Raise `bad(what)` when this modality's fields of a received record are not what dl writes
        (`size`: the values of one stored row, checked against input_shape already)."""

    @abstractmethod
    def read_inputs(self, record: dict, source: Path, given: str, id_column: str | None):
        """dlcli.data.new_inputs.NewInputs from `source` (the existing path the user gave as
        `given`), prepared as the run prepared its data."""

    @abstractmethod
    def verification_rows(self, data, rows, shape: tuple[int, ...]):
        """The prepared data's `rows` as a float32 tensor, as the exported file takes them."""

    @abstractmethod
    def stand_in_rows(self, count: int, shape: tuple[int, ...], generator):
        """Random inputs in the range the exported file takes, where the run's data cannot be loaded."""

    @abstractmethod
    def export_takes(self, record: dict, shape: list) -> str:
        """What the exported file's input is, in words for its sidecar (`shape`: batch first)."""

    def normalization(self, record: dict) -> dict | None:
        """{mean, std} per channel that the exported file applies itself, or None."""
        return None

    def vocab_size(self, record: dict) -> int | None:
        """The tokens of a checked record's vocabulary (a model's embedding rows), None for data that is not tokens."""
        return None

    def regression_outputs(self, record: dict) -> int:
        """The values a regression model of a checked record outputs per sample (a forecast's: horizon x target columns)."""
        return 1


MODALITIES: dict[str, Modality] = {}


def register(cls: type[Modality]) -> type[Modality]:
    """Class decorator: the modality answers for preprocessing.json's `kind` `cls.kind`."""
    if cls.kind in MODALITIES and type(MODALITIES[cls.kind]) is not cls:
        raise RuntimeError(f"two modalities write kind {cls.kind}: {type(MODALITIES[cls.kind]).__module__} and {cls.__module__}")
    MODALITIES[cls.kind] = cls()
    return cls


def modality_named(kind: str) -> Modality:
    """The modality of a preprocessing record's `kind` (checked to be registered: dlcli.data.record)."""
    return MODALITIES[kind]


def modality_of_source(raw) -> Modality:
    """The modality of what a data set's _target_ returned (checked to be one of `source_types()`)."""
    return next(m for m in MODALITIES.values() if m.accepts(raw))


def source_types() -> tuple[type, ...]:
    """What a data set's _target_ may return, once each, in the order the modalities were registered."""
    return tuple(dict.fromkeys(m.source_type for m in MODALITIES.values()))


def refuse_settings_of_other_modalities(modality: Modality, options: dict, name: str) -> None:
    """data.standardize on a set of images, data.normalize on a table: the setting would do nothing,
    so it is refused in one line naming the data sets it applies to. `options`: the data settings given."""
    for other in MODALITIES.values():
        for key in other.settings:
            if key not in modality.settings and options.get(key) is not None:
                raise UserError(f"data.{key}={show(options[key])} applies to {other.applies_to}, and {name} is "
                                f"{modality.is_a}: drop it{modality.setting_hint(key)}")
