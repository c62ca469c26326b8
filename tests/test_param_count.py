import json

import pytest
import torch
from torch import nn

from conftest import assert_cli_runs_without_torch, quiet_reporter, run_cli
from dlcli.config.compose import compose
from dlcli.engine.checkpoint import load_checkpoint
from dlcli.experiment import build_experiment
from dlcli.tools.model_summary import summarize
from dlcli.tools.param_count import model_summary
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest


def test_lenet_counts_shapes_and_multiply_adds():
    summary = model_summary(compose(["model=lenet"]), (1, 28, 28))
    assert summary.total == summary.trainable == 61_706 and summary.non_trainable == 0
    rows = {row.name: row for row in summary.layers}
    assert rows["features.0"].output == [6, 28, 28] and rows["features.0"].macs == 6 * 28 * 28 * 25
    assert rows["classifier.1"].params == 400 * 120 + 120 and rows["classifier.1"].macs == 400 * 120
    assert summary.largest.name == "classifier.1"
    assert summary.size_mb == pytest.approx(61_706 * 4 / 1e6)


def test_buffers_are_reported_apart_from_parameters():
    summary = model_summary(compose(["model.batch_norm=true"]))
    reference = nn.Sequential(nn.Linear(64, 256), nn.BatchNorm1d(256), nn.Linear(256, 10))
    assert summary.total == sum(p.numel() for p in reference.parameters())
    assert summary.buffers == sum(b.numel() for b in reference.buffers())  # running stats + counter


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_freezing_shows_as_non_trainable_and_holds_in_training(workdir):
    summary = model_summary(compose(["model.freeze=[net.1]"]))
    assert summary.non_trainable == 64 * 256 + 256 and summary.trainable == 256 * 10 + 10
    result = train(RunRequest(compose(["model.freeze=[net.1]", "trainer.epochs=2", "trainer.progress=false", "model.init=normal"]), [], quiet_reporter()))
    # build_experiment seeds from the config, so this re-creates the run's initial weights
    # (on the device the run would pick; checkpoints are always read onto the CPU)
    initial = {k: v.cpu() for k, v in build_experiment(compose(["model.freeze=[net.1]", "model.init=normal"])).session.model.state_dict().items()}
    final = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["model"]
    assert torch.equal(initial["net.1.weight"], final["net.1.weight"])  # frozen
    assert not torch.equal(initial["net.3.weight"], final["net.3.weight"])  # trained


def test_freeze_prefix_that_matches_nothing_is_explained(workdir):
    result = run_cli("param-count", "model.freeze=[encoder]")
    assert result.exit_code == 2 and "model.freeze lists 'encoder', which matches no module" in result.stderr


def test_shared_parameters_are_counted_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.encode = nn.Linear(10, 10, bias=False)
            self.decode = nn.Linear(10, 10, bias=False)
            self.decode.weight = self.encode.weight

        def forward(self, x):
            return self.decode(self.encode(x))

    summary = summarize(Tied(), (10,))
    assert summary.total == 100
    assert [row.params for row in summary.layers] == [100, 0]


def test_depth_groups_rows_by_block():
    summary = model_summary(compose(["model=lenet"]), (1, 28, 28), depth=1)
    assert [(row.name, row.params) for row in summary.layers] == [("features", 156 + 2416), ("classifier", 48120 + 10164 + 850)]
    assert summary.layers[0].output == [16, 5, 5]


def test_cli_json_and_table(workdir):
    result = run_cli("param-count", "model=lenet", "--input", "1x28x28", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert {"total", "trainable", "non_trainable", "buffers", "size_mb", "layers"} <= set(data)
    assert data["total"] == 61_706 and len(data["layers"]) == 12
    assert abs(sum(row["share"] for row in data["layers"]) - 1) < 1e-9
    table = run_cli("param-count", "model=lenet", "--input", "1x28x28")
    assert table.exit_code == 0 and "largest layer classifier.1" in table.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["model=lenet"], "model=lenet cannot take 8x8 images"),
        (["--depth", "0"], "--depth 0 must be in [1, 64]"),
        (["--input", "1x2x3x4"], "is not a shape"),
    ],
)
def test_cli_bad_input(workdir, args, message):
    result = run_cli("param-count", *args)
    assert result.exit_code == 2 and message in result.stderr


@pytest.mark.slow  # starts an interpreter
def test_param_count_help_does_not_import_torch():
    assert_cli_runs_without_torch("param-count", "--help")
