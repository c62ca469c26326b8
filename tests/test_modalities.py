"""A data modality is one object (dlcli.data.modality): every registered one writes a preprocessing
record that is read back as written and reads new inputs through it, and a new modality is one
class registered where it is written, with no switch elsewhere to edit."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import only_run, read, run_cli
from image_fixtures import write_image_folder
from omegaconf import OmegaConf

from dlcli.config.compose import compose
from dlcli.data import PREPROCESSING_FORMAT, prepare_data
from dlcli.data.modality import MODALITIES, Modality, modality_named, register
from dlcli.data.new_inputs import NewInputs, read_inputs
from dlcli.data.record import check_preprocessing, data_record, numbers
from dlcli.engine.batches import TensorBatches
from dlcli.errors import UserError
from dlcli.trained.export import exported_module


def _round_trip(data, tmp_path: Path) -> dict:
    """The record as a run writes it and `dl predict` reads it back."""
    path = tmp_path / "preprocessing.json"
    path.write_text(json.dumps(data.preprocessing()))
    record = json.loads(path.read_text())
    assert check_preprocessing(record, path, PREPROCESSING_FORMAT) is record
    return record


def _table(tmp_path: Path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"area": rng.normal(100, 20, 60), "zone": rng.choice(["A", "B"], 60),
                          "kind": rng.choice(["house", "flat"], 60)})
    path = tmp_path / "houses.csv"
    frame.to_csv(path, index=False)
    cfg = compose(["data=csv", f"data.path={path}", "data.target=kind"])
    return cfg, path  # new rows: the same file (its target column is ignored)


def _array(tmp_path: Path):
    cfg = compose(["data=iris"])
    path = tmp_path / "rows.npy"
    np.save(path, np.random.default_rng(0).normal(size=(5, 4)))
    return cfg, path


def _images(tmp_path: Path):
    root = write_image_folder(tmp_path / "pets", per_class=12)
    return compose(["data=imagefolder", f"data.root={root}", "data.cache=none"]), root / "cat"


def _text_column(tmp_path: Path):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 60)
    review = [f"the film was {rng.choice(['great', 'superb'] if y else ['dull', 'awful'])}" for y in label]
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"review": review, "label": label}).to_csv(path, index=False)
    return compose(["data=csv", f"data.path={path}", "data.target=label", "data.text=review"]), path


def _text(tmp_path: Path):
    path = tmp_path / "book.txt"
    path.write_text("the time traveller spoke of a machine that moved through time. " * 20)
    return compose(["data=text", f"data.path={path}", "data.seq_len=16"]), path


def _series(tmp_path: Path):
    t = np.arange(120)
    path = tmp_path / "sales.csv"
    pd.DataFrame({"day": t, "sales": 10 + np.sin(t / 3), "price": 5 + np.cos(t / 7)}).to_csv(path, index=False)
    return compose(["data=timeseries", f"data.path={path}", "data.time=day", "data.window=6", "data.horizon=2"]), path


CASES = {"table": _table, "array": _array, "images": _images, "text_column": _text_column, "text": _text, "series": _series}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_every_registered_modality_round_trips_its_record_and_reads_new_inputs(kind, tmp_path):
    cfg, new_inputs = CASES[kind](tmp_path)
    data = prepare_data(cfg.data, cfg.split, cfg.seed)
    assert data.kind == kind
    record = _round_trip(data, tmp_path)
    assert record["kind"] == kind and record == data.preprocessing()
    if record["task"] == "language_model":  # it continues a prompt (dl predict RUN --prompt): a file is one line
        with pytest.raises(UserError, match="--prompt"):
            read_inputs(record, new_inputs)
        return
    inputs = read_inputs(record, new_inputs)
    batch = next(inputs.batches(64))
    assert inputs.rows > 0 and tuple(batch.shape[1:]) == tuple(record["input_shape"])


def test_the_cases_above_cover_every_registered_modality():
    """A modality added without a case above would go untested: this names it."""
    assert set(CASES) == set(MODALITIES)


def test_a_record_of_a_kind_no_modality_writes_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match=r"kind must be one of array, images, (\w+, )*table(, \w+)* and task one of") as info:
        check_preprocessing({"format": 1, "kind": "hieroglyphs", "task": "classification"}, tmp_path / "p.json", 1)
    assert "\n" not in str(info.value)


# -- a new modality, declared here and nowhere else -------------------------------------------------
@dataclass
class Waves:
    """What the toy data set returns: sampled signals of one length, one class each."""

    name: str
    signals: np.ndarray  # N x length
    targets: np.ndarray
    task: str = "classification"


def make_waves(count: int = 60, length: int = 16, seed: int = 0) -> Waves:
    rng = np.random.default_rng(seed)
    targets = np.arange(count) % 2
    t = np.linspace(0, 2 * np.pi, length)
    signals = np.sin(np.outer(targets + 1, t)) * 3.0 + rng.normal(0, 0.1, (count, length))
    return Waves("waves", signals, targets)


@dataclass
class PreparedWaves:
    features: np.ndarray
    targets: np.ndarray
    split: object
    scale: float  # the largest magnitude in the train rows: every signal is divided by it
    name: str = "waves"
    task: str = "classification"
    class_names: list[str] = field(default_factory=lambda: ["0", "1"])
    target_scaler: None = None
    notes: list[str] = field(default_factory=list)
    num_outputs = 2
    kind = "waves"
    stored_shape = None
    target_name = "label"
    id_columns = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.features.shape[1])

    def preprocessing(self) -> dict:
        return data_record(self)

    def batches(self, part: str, device, training: bool = False):
        rows = self.split.part(part)
        x = torch.as_tensor(self.features[rows]).reshape(-1, *self.input_shape)
        return TensorBatches(x.to(device), torch.as_tensor(self.targets[rows], dtype=torch.long).to(device))


class WavesModality(Modality):
    kind = "waves"
    source_type = Waves
    applies_to = "wave sets"
    is_a = "a set of waves"

    def prepare(self, raw: Waves, split, options: dict, placement) -> PreparedWaves:
        scale = float(np.abs(raw.signals[split.train]).max())
        return PreparedWaves((raw.signals / scale).astype(np.float32), raw.targets, split, scale)

    def record(self, data: PreparedWaves) -> dict:
        return {"waves": {"length": data.features.shape[1], "scale": data.scale}}

    def check_record(self, record: dict, size: int, bad) -> None:
        waves = record.get("waves")
        if not isinstance(waves, dict) or waves.get("length") != size or not numbers([waves.get("scale")], 1) or waves["scale"] <= 0:
            raise bad("waves needs the signal's length and a positive scale")

    def read_inputs(self, record: dict, source: Path, given: str, id_column: str | None) -> NewInputs:
        signals = np.loadtxt(source, ndmin=2) / record["waves"]["scale"]
        x = torch.as_tensor(signals, dtype=torch.float32).reshape(-1, *record["input_shape"])
        return NewInputs(len(x), lambda size: (x[i : i + size] for i in range(0, len(x), size)))

    def verification_rows(self, data: PreparedWaves, rows, shape: tuple[int, ...]):
        return torch.as_tensor(data.features[rows]).reshape(-1, *shape)

    def stand_in_rows(self, count: int, shape: tuple[int, ...], generator):
        return torch.rand(count, *shape, generator=generator) * 2 - 1

    def export_takes(self, record: dict, shape: list) -> str:
        return f"float32 signals of {shape[-1]} samples divided by {record['waves']['scale']:g}"


@pytest.fixture
def waves():
    """The toy modality registered as a module of dlcli.data.modalities would register it, and
    taken out again after the test."""
    register(WavesModality)
    yield modality_named("waves")
    del MODALITIES["waves"]


def test_a_modality_that_lacks_a_method_is_refused_as_it_is_registered():
    class Unfinished(WavesModality.__base__):
        kind = "unfinished"

    with pytest.raises(TypeError, match="abstract"):
        register(Unfinished)
    assert "unfinished" not in MODALITIES


def waves_config(**settings):
    cfg = compose(["data=iris"])
    cfg.data = OmegaConf.create({"_target_": f"{__name__}.make_waves", "count": 60, **settings})
    return cfg


def test_a_new_modality_is_one_registered_class(waves, tmp_path):
    """Prepared, recorded, checked when read back, and reading new inputs for `dl predict`, all
    through the registry: nothing outside this test names the kind "waves"."""
    cfg = waves_config()
    data = prepare_data(cfg.data, cfg.split, cfg.seed)
    assert isinstance(data, PreparedWaves)
    record = _round_trip(data, tmp_path)
    assert record["kind"] == "waves" and record["waves"] == {"length": 16, "scale": data.scale}
    with pytest.raises(UserError, match=r"\(waves needs the signal's length and a positive scale\)"):
        check_preprocessing({**record, "waves": {"length": 16, "scale": -1.0}}, tmp_path / "p.json", PREPROCESSING_FORMAT)

    new = tmp_path / "new.txt"
    np.savetxt(new, make_waves(4, seed=1).signals)
    inputs = read_inputs(record, new)
    expected = make_waves(4, seed=1).signals / data.scale
    assert inputs.rows == 4 and np.allclose(next(inputs.batches(10)).numpy()[:, 0], expected, atol=1e-6)

    exported = exported_module(torch.nn.Flatten(), record)  # what `dl export` wraps around the model
    assert not exported.normalize and torch.equal(exported(torch.ones(2, 1, 16)), torch.ones(2, 16))


def test_settings_of_another_modality_are_refused_in_the_words_of_both(waves):
    cfg = waves_config(normalize="dataset")
    with pytest.raises(UserError, match=r"^data.normalize=dataset applies to image sets \(data=imagefolder, mnist, "
                                        r"fashion_mnist, cifar10\), and waves is a set of waves: drop it$"):
        prepare_data(cfg.data, cfg.split, cfg.seed)


@pytest.mark.slow
def test_a_new_modality_trains_predicts_and_exports_through_the_commands(waves, workdir):
    """`dl train`, `dl predict` and `dl export` with the toy modality, registered only here."""
    trained = run_cli("train", "data=iris", f"data._target_={__name__}.make_waves", "~data.name", "~data.standardize",
                      "model=mlp", "trainer.epochs=2", "-q")
    assert trained.exit_code == 0, trained.output
    run = only_run(workdir)
    assert read(run / "preprocessing.json")["kind"] == "waves"
    np.savetxt(workdir / "new.txt", make_waves(6, seed=2).signals)
    trust = ("--trust", __name__)  # a data set outside dl, read back from the run's config.yaml
    predicted = run_cli("predict", str(run), str(workdir / "new.txt"), *trust)
    assert predicted.exit_code == 0, predicted.output
    assert len(pd.read_csv(run / "predictions-new.csv")) == 6
    exported = run_cli("export", str(run), "--format", "torchscript", *trust)
    assert exported.exit_code == 0, exported.output
    sidecar = read(run / "model.torchscript.pt.json")
    assert sidecar["input"]["takes"] == waves.export_takes(sidecar["preprocessing"], sidecar["input"]["shape"])
    assert sidecar["normalization_included"] is False
    assert sidecar["verified"]["inputs"] == "rows of the run's test split"  # prepared again by the toy modality
