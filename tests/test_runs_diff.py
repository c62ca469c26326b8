"""`dl runs diff`: what differs between runs (settings, data, code, environment, seed), their results
side by side, and where their loss curves part; and the facts a new run records for it (a data
fingerprint, dl's checkout, the machine). The 1-process against 2-process diff is in
test_distributed.py, on the runs its module already trains."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import read, run_cli
from dlcli.data.fingerprint import content_fingerprint
from dlcli.data.images import ImageFiles
from dlcli.data.sources import RawData
from dlcli.run.provenance import _git, dl_checkout
from dlcli.rundir.diff import first_parting

TINY = ["trainer.epochs=2", "trainer.progress=false", "trainer.plots=false", "trainer.checkpoint_every=0", "-q"]


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """Two runs of digits that differ only in their seed (module-wide: trained once)."""
    root = tmp_path_factory.mktemp("diff")
    previous = os.getcwd()
    os.chdir(root)
    try:
        for seed in (0, 1):
            result = run_cli("train", *TINY, f"seed={seed}", f"name=seed{seed}")
            assert result.exit_code == 0, result.output
        yield root, *(next((root / "runs" / f"seed{seed}").iterdir()) for seed in (0, 1))
    finally:
        os.chdir(previous)


def row(out: str, label: str) -> list[str]:
    """The cells of the table's row whose first cell is `label` ([] when there is none)."""
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
        if cells and cells[0] == label and any(cells[1:]):  # (a section's own row has no values)
            return cells[1:]
    return []


def diff(*args) -> tuple[int, str, str]:
    result = run_cli("runs", "diff", *map(str, args))
    return result.exit_code, result.stdout, result.stderr


def test_a_new_run_records_its_data_code_and_machine(two_seeds):
    _, first, _ = two_seeds
    summary = read(first / "summary.json")
    assert len(summary["data_fingerprint"]) == 16
    environment = summary["environment"]
    assert environment["world_size"] == 1 and environment["device"] == "cpu" and environment["threads"] >= 1
    assert set(environment) >= {"host", "cuda", "cudnn", "gpu", "cores"}
    assert set(summary["code"]) == {"commit", "dirty"}  # null for an installed dl, a commit in a checkout


def test_two_seeds_differ_in_their_seed_and_split_and_their_curves_part_at_once(two_seeds, monkeypatch):
    root, first, second = two_seeds
    monkeypatch.chdir(root)
    a, b = first.relative_to(root), second.relative_to(root)
    code, out, err = diff(a, b)
    assert code == 0, err
    assert row(out, "seed") == ["0", "1"] and row(out, "split.seed") == ["0", "1"]
    assert row(out, "rows in each split")  # the seeded split put other rows in each part
    assert "the same in every run: settings, code, environment" in out  # and the data: the same digits, other rows
    assert "settings (resolved)" not in out  # nothing else was set differently
    assert f"{b}: parts at epoch 1: train_loss" in out and "more than 0.1% apart, relative" in out
    assert "best val_accuracy" in out and "test accuracy" in out  # the results, side by side
    report = json.loads(run_cli("runs", "diff", str(a), str(b), "--json").stdout)
    assert report["differ"]["seed"] == {"seed": [0, 1], "split.seed": [0, 1]}
    assert "content fingerprint" not in report["differ"].get("data", {})  # the same digits
    assert report["curves"]["runs"][0]["epoch"] == 1 and report["curves"]["relative_tolerance"] == 1e-3
    assert report["metrics"]["epochs"] == [2, 2]  # equal results are shown too


def copied(run: Path, to: Path, **changes) -> Path:
    """A copy of `run` whose summary.json has `changes` (None removes a field): a run from elsewhere."""
    shutil.copytree(run, to)
    summary = read(to / "summary.json")
    for key, value in changes.items():
        if value is None:
            summary.pop(key, None)
        else:
            summary[key] = value
    (to / "summary.json").write_text(json.dumps(summary))
    return to


def test_the_same_config_on_another_machine_shows_the_environment_lines_that_explain_it(two_seeds, tmp_path):
    _, first, _ = two_seeds
    summary = read(first / "summary.json")
    environment = {**summary["environment"], "host": "gpu-box", "device": "cuda:0", "gpu": "NVIDIA H100 80GB HBM3", "cudnn": 91002}
    other = copied(first, tmp_path / "elsewhere", environment=environment, device="cuda:0",
                   versions={**summary["versions"], "torch": "2.5.1+cu124"})
    code, out, err = diff(first, other)
    assert code == 0, err
    assert row(out, "host")[1] == "gpu-box" and row(out, "cuDNN")[1] == "91002" and row(out, "torch")[1] == "2.5.1+cu124"
    assert row(out, "device") == ["cpu", "cuda:0"] and "NVIDIA H100" in row(out, "gpu")[1]
    assert "the same in every run: settings, data, code, seed" in out
    assert "agrees over all 2 epochs" in out


def test_a_run_from_an_earlier_dl_says_what_it_did_not_record(two_seeds, tmp_path):
    _, first, _ = two_seeds
    old = copied(first, tmp_path / "old", data_fingerprint=None, environment=None, code=None)
    report = json.loads(run_cli("runs", "diff", str(first), str(old), "--json").stdout)
    assert report["differ"]["data"]["content fingerprint"][1] == "not recorded"
    assert report["differ"]["environment"]["host"][1] == "not recorded"
    assert report["differ"]["code"]["dl commit"][1] == "not recorded"
    kept = Path(__file__).parent / "fixtures" / "run_before_0.2" / "run"  # a run dl 0.1 wrote, as it wrote it
    before = json.loads(run_cli("runs", "diff", str(kept), str(first), "--json").stdout)
    assert before["differ"]["data"]["content fingerprint"][0] == "not recorded"
    assert before["differ"]["config"]["trainer.devices"] == ["absent", 1]  # a setting added since


def test_a_received_run_is_read_never_run(two_seeds, tmp_path):
    """config.yaml naming code is a setting to show, not a class to import."""
    _, first, _ = two_seeds
    received = copied(first, tmp_path / "received")
    config = received / "config.yaml"
    config.write_text(config.read_text().replace("_target_: dlcli.models.MLP", "_target_: evil_module_36.Payload"))
    code, out, err = diff(first, received)
    assert code == 0, err
    assert "evil_module_36.Payload" in out and "evil_module_36" not in sys.modules


def test_bad_inputs_are_one_line_and_exit_2(two_seeds, tmp_path):
    _, first, second = two_seeds
    (tmp_path / "empty").mkdir()
    cases = [
        ((first,), "needs two runs or more, got 1"),
        ((first, tmp_path / "empty"), "is not a dl run directory"),
        ((first, tmp_path / "missing"), "is not a directory"),
        ((first, f"{first}/"), "are the same run"),
    ]
    for args, says in cases:
        code, _, err = diff(*args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and says in lines[0], (args, err)
    table_only = run_cli("runs", "diff", str(first), str(second), "--sort", "val_accuracy")
    assert table_only.exit_code == 2 and "--sort applies to dl runs' table" in table_only.stderr


def test_damaged_received_files_are_one_line_and_names_are_shown_as_written(two_seeds, tmp_path, monkeypatch):
    """What a received run may hold: metrics.csv not UTF-8 or with a field past csv's limit (one
    line, exit 2, for dl runs and dl runs diff alike), a logger that is not a mapping (shown as
    none), a folder named like Rich markup (shown as it is), a NaN (null in --json)."""
    _, first, second = two_seeds
    for name, damage in (("bytes", b"\xff\xfe,1\n"), ("long", b"1," + b"9" * 200_000 + b"\n")):
        bad = copied(first, tmp_path / name)
        with (bad / "metrics.csv").open("ab") as file:
            file.write(damage)
        result = run_cli("runs", "diff", str(first), str(bad))
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and "metrics.csv is damaged at line" in lines[0], (name, result.output)
        (bad / "summary.json").write_text(json.dumps({**read(bad / "summary.json"), "status": "running"}))
        listed = run_cli("runs", str(bad))  # (a run said to be running, its lock free: its epochs come from metrics.csv)
        assert listed.exit_code == 0 and "killed" in listed.stdout, (name, listed.output)  # listed, its epochs unknown
    odd = copied(first, tmp_path / "m[/]" / "a[red]")
    (odd / "config.yaml").write_text((odd / "config.yaml").read_text() + "logger: 5\n")
    summary = json.loads((odd / "summary.json").read_text())
    (odd / "summary.json").write_text(json.dumps({**summary, "wall_seconds": float("nan")}))
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = diff(second, odd)
    assert code == 0 and "a[red]" in out, err
    listed = run_cli("runs", str(tmp_path / "m[/]"))
    assert listed.exit_code == 0 and "m[/]" in listed.stdout and "a[red]" in listed.stdout, listed.output
    code, out, err = diff(second, odd, "--json")
    assert code == 0 and "NaN" not in out and json.loads(out), err


def test_a_fifo_or_a_file_that_is_not_utf8_in_conf_never_stops_dl_runs(two_seeds, tmp_path, monkeypatch):
    """dl runs names each run's components by the options in ./conf: a FIFO there would block it
    for ever, and a YAML that is not UTF-8 is not an option to name."""
    root, first, second = two_seeds
    (tmp_path / "conf" / "model").mkdir(parents=True)
    os.mkfifo(tmp_path / "conf" / "model" / "pipe.yaml")
    (tmp_path / "conf" / "model" / "bytes.yaml").write_bytes(b"_target_: \xff\xfe\n")
    monkeypatch.chdir(tmp_path)
    listed = run_cli("runs", str(first), str(second))
    assert listed.exit_code == 0 and "2 runs under" in listed.stdout, listed.output
    code, _, err = diff(first, second)
    assert code == 0, err


def test_losses_part_at_the_first_epoch_beyond_the_relative_tolerance():
    base = [{"epoch": e, "train_loss": v, "val_loss": v} for e, v in ((1, 2.0), (2, 1.0), (3, 0.5))]
    close = [{**row, "train_loss": row["train_loss"] * (1 + 5e-4)} for row in base]  # within 0.1%
    assert first_parting("b", base, close).epoch is None
    apart = [*close[:2], {**close[2], "val_loss": 0.51}]  # 2% apart at epoch 3
    parting = first_parting("b", base, apart)
    assert (parting.epoch, parting.column, parting.values) == (3, "val_loss", (0.5, 0.51))
    diverged = [*base[:1], {**base[1], "train_loss": float("nan")}]
    assert first_parting("b", base, diverged).epoch == 2
    assert first_parting("b", base, []).epochs_compared == 0


def test_the_fingerprint_follows_the_content_not_the_object():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "colour": ["red", "green", "blue"]})
    raw = RawData(features=frame, targets=np.array([0, 1, 0]), task="classification", name="t")
    same = RawData(features=frame.copy(), targets=np.array([0, 1, 0]), task="classification", name="other name")
    assert content_fingerprint(raw) == content_fingerprint(same)
    changed = frame.copy()
    changed.loc[1, "colour"] = "grey"
    assert content_fingerprint(RawData(changed, np.array([0, 1, 0]), "classification", "t")) != content_fingerprint(raw)
    relabelled = RawData(features=frame, targets=np.array([0, 1, 1]), task="classification", name="t")
    assert content_fingerprint(relabelled) != content_fingerprint(raw)
    assert content_fingerprint(object()) is None


@dataclass
class FolderSource:
    """A data set's return value holding one folder of images read from disk."""

    files: ImageFiles


def test_a_folder_of_images_is_fingerprinted_by_its_files_names_and_sizes(tmp_path):
    for name, size in (("a/1.png", 10), ("b/2.png", 20)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * size)
    paths = [tmp_path / "a/1.png", tmp_path / "b/2.png"]
    first = content_fingerprint(FolderSource(ImageFiles(paths, np.array([0, 1]), True, tmp_path)))
    (tmp_path / "b/2.png").write_bytes(b"x" * 21)
    assert content_fingerprint(FolderSource(ImageFiles(paths, np.array([0, 1]), True, tmp_path))) != first


def test_dls_checkout_is_looked_up_without_ever_failing(tmp_path, monkeypatch):
    checkout = dl_checkout()
    assert checkout["commit"] is None or len(checkout["commit"]) == 40
    assert _git(tmp_path, "rev-parse", "HEAD") is None  # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert _git(Path.cwd(), "rev-parse", "HEAD") is None


# -- dl runs' table: the headline always, wall time and speed as columns ------------------------------

def test_a_headline_metric_equal_in_every_run_is_said_once_in_the_title(two_seeds, tmp_path, monkeypatch):
    _, first, _ = two_seeds
    twin = copied(first, tmp_path / "runs" / "twin")  # the same numbers, another setting (as 1 and 2 processes give)
    config = twin / "config.yaml"
    config.write_text(config.read_text().replace("devices: 1", "devices: 2"))
    (twin / "overrides.yaml").write_text("- trainer.devices=2\n")  # (the settings a table shows are those typed)
    shutil.copytree(first, tmp_path / "runs" / "one")
    monkeypatch.chdir(tmp_path)
    result = run_cli("runs", "runs")
    assert result.exit_code == 0, result.output
    title = " ".join(result.stdout.split("┏")[0].split())
    accuracy = read(first / "summary.json")["best_val_accuracy"]
    assert f"val_accuracy {accuracy:.4f}" in title and "in every run" in title and "test_accuracy" in title
    assert "trainer.devices" in result.stdout


def test_wall_time_and_training_speed_are_columns(two_seeds, monkeypatch):
    root, first, _ = two_seeds
    monkeypatch.chdir(root)
    rows = json.loads(run_cli("runs", "runs", "--json").stdout)
    speeds = pd.read_csv(first / "metrics.csv")["samples_per_second"]
    row = next(r for r in rows if r["run"].startswith("seed0"))
    assert row["seconds"] == read(first / "summary.json")["wall_seconds"] and row["samples_per_second"] == speeds.median()
    chosen = run_cli("runs", "runs", "--columns", "seconds,samples_per_second")
    assert chosen.exit_code == 0, chosen.stderr
    assert row_cells(chosen.stdout, 2) and all(cell.replace(".", "").replace(",", "").isdigit() for cell in row_cells(chosen.stdout, 2)[1:])


def row_cells(out: str, index: int) -> list[str]:
    """The cells of the table's `index`-th row of values (0: the header)."""
    lines = [line for line in out.splitlines() if line.startswith(("│", "┃"))]
    return [cell.strip() for cell in lines[index].strip("│┃").split("│")] if len(lines) > index else []
