"""Property-based fuzzing of what users hand dl besides config keys: CSV tables (to train on and to
predict), image folders with odd and broken files, and every command's option values.

The invariant, for every case: dl either finishes (exit 0, with a complete result: a run whose
summary says completed, a predictions file with one row per input row) or refuses in one line
on stderr with exit code 2, with no traceback and nothing half-written (no new file under runs/,
no output file). The cases are generated, not listed: the tables' shapes, values, names and
encodings, the images' modes and damage, and the options' values are all drawn by Hypothesis.

Profiles: the default runs a small derandomized set; `DL_FUZZ=long` runs many more;
`DL_FUZZ_SHOW=1 pytest -s` prints each case and dl's answer.
"""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import run_cli

LONG = os.environ.get("DL_FUZZ") == "long"
if LONG:
    pytestmark = pytest.mark.timeout(0)  # thousands of cases take longer than the suite's per-test limit
SHOW = bool(os.environ.get("DL_FUZZ_SHOW"))  # print every case and what dl said (with pytest -s)
FAST = ["trainer.epochs=1", "trainer.plots=false", "trainer.diagnostics=false", "trainer.progress=false"]


def fuzz_settings(default: int, long: int):
    return settings(max_examples=int(os.environ.get("DL_FUZZ_CASES", long)) if LONG else default, derandomize=not LONG, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


# -- the invariant ------------------------------------------------------------------------------------

def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*")) if folder.exists() else set()


def check_outcome(case: str, result, before: set[Path], runs: Path) -> str:
    """'done' or 'refused'; an AssertionError naming the case otherwise."""
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    if SHOW:
        print(f"{case}\n    -> exit {result.exit_code} {result.stderr.strip()[:300]}")
    assert "Traceback" not in output, f"{case}: a traceback\n{output}"
    if result.exit_code == 0:
        return "done"
    assert result.exit_code == 2, f"{case}: exit {result.exit_code}\n{output}\n{result.exception!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: not one line\n{result.stderr}"
    left = files_under(runs) - before
    assert not left, f"{case}: refused, but left {sorted(map(str, left))[:5]}"
    return "refused"


def quoted(value: str) -> str:
    """A value in Hydra's override grammar, quoted as a user would for an odd name."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- tables -----------------------------------------------------------------------------------------

COLUMN_KINDS = ("number", "number_with_nan", "number_with_inf", "category", "constant", "empty", "text_in_numbers", "boolean",
                "huge")
TARGET_KINDS = ("two_classes", "many_classes", "numbers", "constant", "text_classes", "some_missing", "infinite")
NAMES = st.one_of(st.sampled_from(["a", "b", "x1", "price", "Unnamed: 0", "", " ", "a b", "é", "a,b", "a'b", "1", "null",
                                   "label"]),
                  st.text(min_size=1, max_size=12))
ENCODINGS = ("utf-8", "utf-8-sig", "latin-1", "utf-16")


def column(kind: str, rows: int, rng) -> list:
    if kind == "number":
        return list(rng.normal(size=rows))
    if kind == "number_with_nan":
        return [np.nan if i % 3 == 0 else v for i, v in enumerate(rng.normal(size=rows))]
    if kind == "number_with_inf":
        return [np.inf if i == 0 else v for i, v in enumerate(rng.normal(size=rows))]
    if kind == "category":
        return list(rng.choice(["red", "green", "blue"], rows))
    if kind == "constant":
        return [1.0] * rows
    if kind == "empty":
        return [np.nan] * rows
    if kind == "text_in_numbers":
        return ["abc" if i == 1 else str(v) for i, v in enumerate(rng.normal(size=rows))]
    if kind == "boolean":
        return list(rng.choice([True, False], rows))
    return list(rng.normal(size=rows) * 1e300)


def target(kind: str, rows: int, rng) -> list:
    if kind == "two_classes":
        return list(rng.integers(0, 2, rows))
    if kind == "many_classes":
        return list(rng.integers(0, max(rows // 2, 1), rows))
    if kind == "numbers":
        return list(rng.normal(size=rows))
    if kind == "constant":
        return [3] * rows
    if kind == "text_classes":
        return list(rng.choice(["cat", "dog"], rows))
    if kind == "some_missing":
        return [np.nan if i % 4 == 0 else v for i, v in enumerate(rng.integers(0, 2, rows))]
    return [np.inf if i == 0 else v for i, v in enumerate(rng.normal(size=rows))]


@st.composite
def tables(draw):
    """(CSV bytes, the target name to ask for, a description of the case)."""
    # each list starts with the ordinary choice, which Hypothesis draws most and shrinks towards
    rows = draw(st.sampled_from([80, 40, 12, 5, 2, 1, 0]))
    kinds = draw(st.lists(st.sampled_from(COLUMN_KINDS), min_size=1, max_size=4))
    plain = [f"f{i}" for i in range(len(kinds))] + ["label"]
    names = draw(st.one_of(st.just(plain), st.lists(NAMES, min_size=len(kinds) + 1, max_size=len(kinds) + 1)))
    target_kind = draw(st.sampled_from(TARGET_KINDS))
    asked = draw(st.sampled_from(["own", "missing", "first"]))  # the target's name, another's, or none of them
    encoding = draw(st.sampled_from(ENCODINGS))
    rng = np.random.default_rng(draw(st.integers(0, 3)))
    data = [column(kind, rows, rng) for kind in kinds] + [target(target_kind, rows, rng)]
    frame = pd.DataFrame(dict(enumerate(data)))
    frame.columns = names  # duplicate and empty names kept, as a hand-made file can have them
    text = frame.to_csv(index=False)
    name = {"own": names[-1], "missing": "no_such_column", "first": names[0]}[asked]
    try:
        content = text.encode(encoding)
    except UnicodeEncodeError:
        content = text.encode("utf-8")
    case = f"rows={rows} columns={kinds} names={names} target={target_kind} asked={asked} encoding={encoding}"
    return content, name, case


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    return tmp_path_factory.mktemp("inputs")


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_any_table_trains_or_is_refused_in_one_line(place, monkeypatch):
    monkeypatch.chdir(place)
    outcomes = []

    @fuzz_settings(12, 300)
    @given(table=tables())
    @example(table=(pd.DataFrame({"f0": np.arange(40.0), "label": np.arange(40) % 2}).to_csv(index=False).encode(), "label", "plain"))
    def fuzz(table):
        content, name, case = table
        path = place / "table.csv"
        path.write_bytes(content)
        before = files_under(place / "runs")
        result = run_cli("train", "data=csv", f"data.path={path}", f"data.target={quoted(name)}", *FAST, "--quiet")
        outcome = check_outcome(f"dl train on {case}", result, before, place / "runs")
        if outcome == "done":
            new_runs = {p.parent for p in files_under(place / "runs") - before if p.name == "summary.json"}
            assert new_runs, f"{case}: exit 0 without a run"
        outcomes.append(outcome)

    fuzz()
    assert "refused" in outcomes and "done" in outcomes, outcomes


# -- predicting on tables ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A run trained on a table of numbers (a, b), a category (c) and a class (y)."""
    root = tmp_path_factory.mktemp("table_run")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80), "c": rng.choice(["u", "v"], 80)})
    frame["y"] = np.where(frame.a > 0, "p", "q")
    frame.to_csv(root / "train.csv", index=False)
    here = os.getcwd()
    os.chdir(root)
    try:
        result = run_cli("train", "data=csv", f"data.path={root / 'train.csv'}", "data.target=y", *FAST, "--quiet")
        assert result.exit_code == 0, result.output
    finally:
        os.chdir(here)
    return next((root / "runs").glob("*/*/summary.json")).parent


CHANGES = ("none", "drop_a", "rename_b", "extra_column", "nan_in_a", "text_in_a", "unseen_category", "no_rows", "target_kept",
           "duplicate_a", "inf_in_b", "reorder", "only_header_line", "latin1_category", "empty_file", "not_csv")


@st.composite
def prediction_inputs(draw):
    rows = draw(st.sampled_from([1, 3, 20]))
    changes = draw(st.lists(st.sampled_from(CHANGES), min_size=1, max_size=3, unique=True))
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows), "c": rng.choice(["u", "v"], rows)})
    for change in changes:
        if change == "drop_a":
            frame = frame.drop(columns=["a"], errors="ignore")
        elif change == "rename_b" and "b" in frame:
            frame = frame.rename(columns={"b": "B"})
        elif change == "extra_column":
            frame["id"] = range(len(frame))
        elif change == "nan_in_a" and "a" in frame and len(frame):
            frame.loc[frame.index[0], "a"] = np.nan
        elif change == "text_in_a" and "a" in frame and len(frame):
            frame["a"] = frame["a"].astype(object)
            frame.loc[frame.index[0], "a"] = "abc"
        elif change == "unseen_category":
            frame["c"] = "w"
        elif change == "no_rows":
            frame = frame.iloc[:0]
        elif change == "target_kept":
            frame["y"] = "p"
        elif change == "duplicate_a" and "a" in frame:
            frame = pd.concat([frame, frame[["a"]]], axis=1)
        elif change == "inf_in_b" and "b" in frame and len(frame):
            frame.loc[frame.index[0], "b"] = np.inf
        elif change == "reorder":
            frame = frame[list(reversed(frame.columns))]
        elif change == "latin1_category":
            frame["c"] = "\u00e9"
    text = frame.to_csv(index=False)
    if "only_header_line" in changes:
        text = text.splitlines()[0] + "\n"
    content = text.encode("latin-1") if "latin1_category" in changes else text.encode()
    if "empty_file" in changes:
        content = b""
    if "not_csv" in changes:
        content = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    return content, len(frame) if not {"only_header_line", "empty_file", "not_csv"} & set(changes) else None, changes


def test_any_table_to_predict_gives_every_row_or_is_refused(place, table_run, monkeypatch):
    monkeypatch.chdir(place)
    outcomes = []

    @fuzz_settings(12, 300)
    @given(given_input=prediction_inputs(), proba=st.booleans())
    def fuzz(given_input, proba):
        content, rows, changes = given_input
        path, output = place / "new.csv", place / "predictions.csv"
        path.write_bytes(content)
        output.unlink(missing_ok=True)
        before = files_under(place / "runs") | files_under(table_run)
        result = run_cli("predict", str(table_run), str(path), "--output", str(output), *(["--proba"] if proba else []))
        outcome = check_outcome(f"dl predict with {changes}", result, before, place / "runs")
        if outcome == "done":
            written = pd.read_csv(output)
            assert rows is not None and len(written) == rows, f"{changes}: {len(written)} rows for {rows}"
        else:
            assert not output.exists(), f"{changes}: refused, but wrote {output}"
            assert files_under(table_run) <= before, f"{changes}: left {files_under(table_run) - before}"
        outcomes.append(outcome)

    fuzz()
    assert "refused" in outcomes and "done" in outcomes, outcomes


# -- image folders ------------------------------------------------------------------------------------

MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F")
DAMAGE = ("empty_file", "truncated_png", "truncated_jpeg", "text_named_png", "claims_huge", "one_pixel", "odd_mode",
          "hidden_file", "not_an_image_suffix", "empty_class_folder")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (with a correct checksum) and holds almost nothing."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def add_damage(folder: Path, damage: str, mode: str) -> None:
    from PIL import Image

    cat = folder / "cat"
    if damage == "empty_file":
        (cat / "zero.png").write_bytes(b"")
    elif damage in ("truncated_png", "truncated_jpeg"):
        kind = "PNG" if damage == "truncated_png" else "JPEG"
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buffer, kind)
        (cat / f"cut.{kind.lower()}").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    elif damage == "text_named_png":
        (cat / "notes.png").write_text("not an image")
    elif damage == "claims_huge":
        (cat / "bomb.png").write_bytes(png_claiming(30000, 30000))
    elif damage == "one_pixel":
        Image.new("RGB", (1, 1)).save(cat / "dot.png")
    elif damage == "odd_mode":
        array = np.random.default_rng(0).integers(0, 255, (20, 20), dtype=np.uint8)
        image = Image.fromarray(array).convert(mode)
        image.save(cat / f"mode.{'tiff' if mode in ('I;16', 'I', 'F', 'CMYK') else 'png'}")
    elif damage == "hidden_file":
        (cat / ".DS_Store").write_bytes(b"\x00\x01")
    elif damage == "not_an_image_suffix":
        (cat / "readme.txt").write_text("cats")
    elif damage == "empty_class_folder":
        (folder / "empty").mkdir()


@pytest.mark.slow  # trains: over half a second in the fast lane
def test_any_image_folder_trains_or_is_refused_in_one_line(place, monkeypatch):
    import shutil

    from image_fixtures import write_image_folder

    monkeypatch.chdir(place)
    clean = write_image_folder(place / "clean_photos", classes=("cat", "dog"), per_class=12)
    outcomes = []

    @fuzz_settings(8, 120)
    @given(damages=st.lists(st.sampled_from(DAMAGE), max_size=2, unique=True), mode=st.sampled_from(MODES),
           grayscale=st.sampled_from(["auto", "true", "false"]))
    def fuzz(damages, mode, grayscale):
        folder = place / "photos"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(clean, folder)
        for damage in damages:
            add_damage(folder, damage, mode)
        before = files_under(place / "runs")
        result = run_cli("train", "data=imagefolder", f"data.root={folder}", "data.resize=12", f"data.grayscale={grayscale}",
                         "model=mlp", "data.num_workers=0", *FAST, "--quiet")
        outcomes.append(check_outcome(f"dl train on images with {damages} (mode {mode})", result, before, place / "runs"))

    fuzz()
    assert "done" in outcomes, outcomes


# -- every command's options ----------------------------------------------------------------------------

NUMBERS = st.one_of(st.integers(-(10**20), 0), st.integers(10**7, 10**30), st.sampled_from(["nan", "inf", "-inf", "1e400", "-0", "0.5"]),
                    st.floats(allow_nan=False, allow_infinity=False).map(repr))
WORDS = st.one_of(st.sampled_from(["", " ", "best", "last", "first", "x", "val", "train", "test", "hflip", "none", "min", "max",
                                   "onnx", "torchscript", "cuda:7", "mps", "cpu", "tpu", "a/b", "..", ".", "-", "--json", "a\nb",
                                   "\u00e9", "a" * 300, "3x8x8", "0x0", "1x-2x3", "99999x99999x99999"]),
                  st.text(max_size=10))
OUTPUTS = st.sampled_from(["out.csv", "out/", ".", "..", "deep/er/out.csv", "", "a\nb.csv", "x" * 300, "new.csv", "table.csv"])

# command, the option, its values, the rest of the command ({run}: a finished run; {input}: a table for it)
OPTIONS = [
    ("eval", "--split", WORDS, ["{run}"]), ("eval", "--checkpoint", WORDS, ["{run}"]), ("eval", "--tta", WORDS, ["{run}"]),
    ("eval", "--device", WORDS, ["{run}"]),
    ("predict", "--checkpoint", WORDS, ["{run}", "{input}"]), ("predict", "--id", WORDS, ["{run}", "{input}"]),
    ("predict", "--output", OUTPUTS, ["{run}", "{input}"]), ("predict", "--device", WORDS, ["{run}", "{input}"]),
    ("export", "--format", WORDS, ["{run}"]), ("export", "--checkpoint", WORDS, ["{run}"]),
    ("inspect", "--checkpoint", WORDS, ["{run}"]),
    ("runs", "--sort", WORDS, ["{runs}"]), ("runs", "--columns", WORDS, ["{runs}"]),
    ("lr-find", "--start", NUMBERS, ["--steps", "5"]), ("lr-find", "--end", NUMBERS, ["--steps", "5"]),
    ("lr-find", "--steps", NUMBERS, []), ("lr-find", "--mode", WORDS, ["--steps", "5"]),
    ("lr-find", "--smooth", NUMBERS, ["--steps", "5"]), ("lr-find", "--diverge", NUMBERS, ["--steps", "5"]),
    ("lr-find", "--name", WORDS, ["--steps", "5"]),
    ("param-count", "--input", WORDS, []), ("param-count", "--depth", NUMBERS, []),
    ("conv-shape", "--input", WORDS, ["conv(4,k=3)"]),
    ("sweep grid", "--jobs", NUMBERS, ["optim.lr=0.1,0.2", *FAST]), ("sweep grid", "--threads", NUMBERS, ["optim.lr=0.1,0.2", *FAST]),
    ("sweep grid", "--prune", WORDS, ["optim.lr=0.1,0.2", *FAST]), ("sweep grid", "--metric", WORDS, ["optim.lr=0.1,0.2", *FAST]),
    ("sweep grid", "--mode", WORDS, ["optim.lr=0.1,0.2", *FAST]), ("sweep grid", "--name", WORDS, ["optim.lr=0.1,0.2", *FAST]),
    ("sweep grid", "--gpus-per-trial", NUMBERS, ["optim.lr=0.1,0.2", *FAST]),
    ("sweep grid", "--trials-per-gpu", NUMBERS, ["optim.lr=0.1,0.2", *FAST]),
    ("sweep grid", "--backend", WORDS, ["optim.lr=0.1,0.2", *FAST]),
    ("sweep random", "--trials", NUMBERS, ["optim.lr=0.1,0.2", *FAST]), ("sweep random", "--seed", NUMBERS, ["optim.lr=0.1,0.2", "--trials", "2", *FAST]),
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("options")
    here = os.getcwd()
    os.chdir(root)
    try:
        assert run_cli("train", *FAST, "data=iris", "--quiet").exit_code == 0
    finally:
        os.chdir(here)
    run = next((root / "runs").glob("*/*/summary.json")).parent
    from sklearn.datasets import load_iris

    load_iris(as_frame=True).data.head(5).to_csv(root / "table.csv", index=False)
    return root, run


@pytest.mark.slow  # fuzzes: 40 commands, most of them train
def test_any_option_value_works_or_is_refused_in_one_line(finished, monkeypatch):
    root, run = finished
    monkeypatch.chdir(root)
    outcomes = []

    @fuzz_settings(40, 1500)
    @given(data=st.data())
    def fuzz(data):
        command, option, values, rest = data.draw(st.sampled_from(OPTIONS), label="option")
        value = str(data.draw(values, label="value"))
        filled = [part.format(run=run, input=root / "table.csv", runs=root / "runs") for part in rest]
        before = files_under(root / "runs")
        result = run_cli(*command.split(), *filled, option, value)
        outcome = check_outcome(f"dl {command} {' '.join(filled)} {option} {value!r}", result, before, root / "runs")
        outcomes.append(outcome)

    fuzz()
    assert "refused" in outcomes, outcomes
