"""data=csv data.text=COLUMN: a text column tokenized for classification or regression, on reviews
the tests write themselves (the label is carried by a few words): the vocabulary from the train rows
only, right-padding that changes no model's output, the bag-of-words baseline, `dl predict` on a
new CSV with the run's vocabulary, and bad inputs refused in one line with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import only_run, read, run_cli
from dlcli.config.compose import compose
from dlcli.data import PREPROCESSING_FORMAT, prepare_data
from dlcli.data.new_inputs import read_inputs
from dlcli.data.record import check_preprocessing
from dlcli.data.text_rows import cut_padding
from dlcli.data.vocab import PAD_ID, UNK_ID, tokenize
from dlcli.errors import UserError
from dlcli.models import build_model
from dlcli.system.numbers import short

GOOD = ["great", "wonderful", "loved", "superb"]
BAD = ["awful", "boring", "hated", "dull"]
FILLER = ["the", "movie", "was", "a", "plot", "and", "actors", "story", "film", "this", "it", "really", "quite"]


def reviews(count: int, seed: int = 0) -> pd.DataFrame:
    """Reviews of 3 to 16 filler words with one word that gives the label away, an id and a column
    of numbers the text run does not read."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    texts = []
    for label in labels:
        words = list(rng.choice(FILLER, rng.integers(3, 16)))
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(GOOD if label else BAD)))
        texts.append(" ".join(words))
    return pd.DataFrame({"id": np.arange(count) + 1000 * seed, "review": texts, "stars": rng.normal(size=count).round(2),
                         "label": np.where(labels == 1, "pos", "neg")})


def write_reviews(path: Path, count: int = 200, seed: int = 0) -> Path:
    reviews(count, seed).to_csv(path, index=False)
    return path


def text_config(path: Path, *overrides: str):
    return compose(["data=csv", f"data.path={path}", "data.target=label", "data.text=review", "data.drop=[id]", *overrides])


def prepared(path: Path, *overrides: str):
    cfg = text_config(path, *overrides)
    return prepare_data(cfg.data, cfg.split, cfg.seed)


# -- the data side --------------------------------------------------------------------------------
def test_the_vocabulary_comes_from_the_train_rows_only(tmp_path):
    frame = reviews(120)
    frame.loc[:, "review"] = [f"{text} word{i}" for i, text in enumerate(frame.review)]  # one word of each row's own
    frame.to_csv(tmp_path / "r.csv", index=False)
    data = prepared(tmp_path / "r.csv")
    known = set(data.encoding.vocabulary.tokens)
    train = {f"word{i}" for i in data.split.train}
    held_out = {f"word{i}" for i in np.concatenate([data.split.val, data.split.test])}
    assert train <= known and not held_out & known
    for row in data.split.test:  # a held-out row's own word is <unk> there
        words = tokenize(frame.review[row], "word")
        assert data.ids[row, len(words) - 1] == UNK_ID and data.ids[row, 0] != UNK_ID


def test_texts_are_right_padded_with_zero_cut_at_max_len_and_batches_cut_to_their_longest(tmp_path):
    data = prepared(write_reviews(tmp_path / "r.csv", 60))
    lengths = [len(tokenize(text, "word")) for text in data.texts]
    assert data.input_shape == (max(lengths[i] for i in data.split.train),) and data.ids.dtype == np.int64
    for row, length in enumerate(lengths[:20]):
        kept = min(length, data.input_shape[0])
        assert (data.ids[row, :kept] != PAD_ID).all() and (data.ids[row, kept:] == PAD_ID).all()
    cut = prepared(tmp_path / "r.csv", "data.max_len=4")
    assert cut.input_shape == (4,) and (cut.ids != PAD_ID).all()  # every review has at least 4 words
    assert any("cut there" in note for note in cut.notes)
    batch = torch.tensor([[4, 5, 0, 0, 0], [6, 0, 0, 0, 0]])
    assert cut_padding(batch).tolist() == [[4, 5], [6, 0]]
    x, y = next(iter(data.batches("train", "cpu").in_order(8)))
    assert x.dtype == torch.long and x.shape[1] == max(lengths[i] for i in data.split.train[:8]) and y.dtype == torch.long


def test_a_few_long_texts_bring_advice_on_max_len(tmp_path):
    frame = reviews(60)
    frame.loc[:, "review"] = frame.review + np.where(np.arange(60) < 2, " the film" * 60, "")  # two texts of 120 more words
    frame.to_csv(tmp_path / "r.csv", index=False)
    data = prepared(tmp_path / "r.csv")
    advice = [note for note in data.notes if note.startswith("95% of the train texts")]
    assert data.input_shape[0] > 120 and len(advice) == 1 and "data.max_len=" in advice[0]
    assert not any(note.startswith("95%") for note in prepared(tmp_path / "r.csv", "data.max_len=20").notes)


def test_chars_and_a_vocabulary_cap(tmp_path):
    data = prepared(write_reviews(tmp_path / "r.csv", 60), "data.tokens=char", "data.vocab_size=8")
    assert len(data.encoding.vocabulary) == 8 == data.vocab_size and data.encoding.tokens == "char"
    assert UNK_ID in data.ids  # the characters beyond the 6 most frequent


def test_lowercase_makes_one_token_of_great_and_great_in_training_and_in_predict(tmp_path):
    frame = reviews(60)
    frame.loc[::2, "review"] = frame.review[::2].str.upper()
    frame.to_csv(tmp_path / "r.csv", index=False)
    assert "GREAT" in prepared(tmp_path / "r.csv").encoding.vocabulary.ids
    data = prepared(tmp_path / "r.csv", "data.lowercase=true")
    assert "GREAT" not in data.encoding.vocabulary.ids and "great" in data.encoding.vocabulary.ids
    record = json.loads(json.dumps(data.preprocessing()))
    assert record["text"]["lowercase"] is True
    pd.DataFrame({"review": ["GREAT Film", "great film"]}).to_csv(tmp_path / "new.csv", index=False)
    x = next(read_inputs(record, tmp_path / "new.csv").batches(2))
    assert x[0].tolist() == x[1].tolist()


@pytest.mark.parametrize("model", ["lstm", "gru", "transformer"])
def test_padding_changes_no_output_of_a_model_that_reads_tokens(model, tmp_path):
    data = prepared(write_reviews(tmp_path / "r.csv", 60))
    torch.manual_seed(0)
    net = build_model(compose([f"model={model}"]).model, data.input_shape, data.num_outputs, vocab_size=data.vocab_size,
                      task=data.task).eval()
    ids = torch.as_tensor(data.ids[:16])
    padded_more = torch.cat([ids, torch.zeros(16, 7, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(net(cut_padding(ids)), net(ids), rtol=1e-5, atol=1e-5)
        if model != "transformer":  # its learned positions stop at the run's length
            torch.testing.assert_close(net(padded_more), net(ids), rtol=1e-5, atol=1e-5)


def test_the_record_round_trips_and_predict_reads_the_column_with_the_runs_vocabulary(tmp_path):
    data = prepared(write_reviews(tmp_path / "r.csv", 80))
    path = tmp_path / "preprocessing.json"
    path.write_text(json.dumps(data.preprocessing()))
    record = check_preprocessing(json.loads(path.read_text()), path, PREPROCESSING_FORMAT)
    assert record["kind"] == "text_column" and record["input_shape"] == list(data.input_shape)
    new = pd.DataFrame({"key": ["a", "b", "c"], "review": [data.texts[0], "zzz great", None]})
    new.to_csv(tmp_path / "new.csv", index=False)
    inputs = read_inputs(record, tmp_path / "new.csv", "key")
    x = next(inputs.batches(10))
    assert inputs.rows == 3 and inputs.ids == ("key", ["a", "b", "c"])
    assert x[0].tolist() == data.ids[0].tolist()  # the same text, the same ids
    vocabulary = data.encoding.vocabulary
    assert x[1, :2].tolist() == [UNK_ID, vocabulary.ids["great"]] and x[2, :2].tolist() == [UNK_ID, PAD_ID]
    assert any("no token" in note for note in inputs.notes)
    pd.DataFrame({"text": ["x"]}).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(UserError, match="other.csv lacks the column 'review' the run reads its texts from"):
        read_inputs(record, tmp_path / "other.csv")


@pytest.mark.parametrize("tamper, says", [
    (lambda r: r["text"]["vocabulary"]["tokens"].append("the"), "a token is listed twice"),
    (lambda r: r["text"].update(tokens="bpe"), "text.tokens be one of char, word"),
    (lambda r: r.update(input_shape=[3, 4]), "input_shape must be one length"),
])
def test_a_tampered_record_is_refused_in_one_line(tamper, says, tmp_path):
    record = json.loads(json.dumps(prepared(write_reviews(tmp_path / "r.csv", 40)).preprocessing()))
    tamper(record)
    with pytest.raises(UserError, match=says) as info:
        check_preprocessing(record, tmp_path / "p.json", PREPROCESSING_FORMAT)
    assert "\n" not in str(info.value)


def test_the_bag_of_words_baseline_scores_val_and_test(tmp_path):
    data = prepared(write_reviews(tmp_path / "r.csv", 200))
    baseline = data.baseline()
    assert baseline["name"].startswith("bag of words (word counts) + logistic regression") and baseline["label"] == "bag of words"
    assert set(baseline["val"]) == {"accuracy", "macro_f1"} and baseline["test"]["accuracy"] >= 0.9
    frame = reviews(200)
    frame["score"] = frame.review.str.count("great|wonderful|loved|superb") * 2.0 + 1.0
    frame.to_csv(tmp_path / "s.csv", index=False)
    cfg = compose(["data=csv", f"data.path={tmp_path / 's.csv'}", "data.target=score", "data.task=regression",
                   "data.text=review", "data.drop=[id,label]"])
    regression = prepare_data(cfg.data, cfg.split, cfg.seed)
    scores = regression.baseline()["test"]
    assert "ridge regression" in regression.baseline()["name"] and scores["rmse"] < 0.5 and scores["r2"] > 0.8


# -- bad inputs: one line, exit 2, nothing written --------------------------------------------------
BAD_INPUTS = [
    (["data.text=nope"], "data.text=nope is not a column of bad.csv: columns are"),
    (["data.text=num"], "data.text=num of bad.csv holds numbers, not text"),
    (["data.text=blank"], "data.text=blank of bad.csv holds no text"),
    (["data.text=same"], "the train rows hold one distinct token ('good')"),
    (["data.text=label"], "data.text=label is the target column"),
    (["data.text=review", "data.max_len=0"], "data.max_len=0 must be null or a whole number in [1, 1000000]"),
    (["data.text=review", "data.vocab_size=3"], "data.vocab_size=3 must be null or a whole number in [4, 10000000]"),
    (["data.text=review", "data.tokens=bpe"], "data.tokens=bpe must be null or one of char, word"),
    (["data.text=review", "+data.as_sequence=true"], "data.as_sequence=true applies to tables, and bad is a text column"),
    (["data.max_len=5"], "data.max_len=5 applies to text"),
    (["data.text=review", "data.drop=[review]"], "data.drop lists review, the text column the run reads"),
    (["data.text=review", "model=mlp"], "model=mlp cannot read tokens (text)"),
    (["data.lowercase=true"], "data.lowercase=true lowercases the text column of data.text, and none is named"),
]


@pytest.mark.parametrize("overrides, says", BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_inputs_are_one_line_and_write_nothing(overrides, says, workdir):
    count = 40
    frame = reviews(count)
    frame["num"], frame["blank"], frame["same"] = np.arange(count), None, "good"
    frame.to_csv(workdir / "bad.csv", index=False)
    result = run_cli("train", "data=csv", "data.path=bad.csv", "data.target=label", "model=lstm", *overrides)
    assert result.exit_code == 2, result.output
    assert says in result.output and result.output.strip().count("\n") == 0, result.output
    assert not (workdir / "runs").exists()


# -- whole runs -------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("model", ["lstm", "gru", "transformer"])
def test_a_text_classifier_learns_the_words_and_predicts_a_new_csv(model, workdir):
    write_reviews(workdir / "reviews.csv", 300)
    result = run_cli("train", "data=csv", "data.path=reviews.csv", "data.target=label", "data.text=review", "data.drop=[id]",
                     f"model={model}", "trainer.epochs=8", "trainer.plots=false", "trainer.progress=false", "-q")
    assert result.exit_code == 0, result.output
    run = only_run(workdir)
    summary = read(run / "summary.json")
    assert summary["test"]["accuracy"] >= 0.9 and summary["test"]["macro_f1"] >= 0.9, summary
    assert summary["baseline"]["test"]["accuracy"] >= 0.9  # the words alone give it away: the baseline knows too
    assert f"(bag of words {short(summary['baseline']['test']['accuracy'])})" in result.output  # beside the model's, as it ends
    new = reviews(40, seed=1)
    new.drop(columns=["label"]).to_csv(workdir / "new.csv", index=False)
    result = run_cli("predict", str(run), "new.csv", "--id", "id")
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(run / "predictions-new.csv")
    assert list(predicted.columns) == ["id", "label"] and predicted.id.tolist() == new.id.tolist()
    assert (predicted.label == new.label).mean() >= 0.9
    if model == "gru":  # the exported file takes the token ids and gives the PyTorch model's outputs
        result = run_cli("export", str(run), "--format", "torchscript")
        assert result.exit_code == 0, result.output
        sidecar = read(run / "model.torchscript.pt.json")
        assert sidecar["input"]["dtype"] == "int64" and sidecar["input"]["shape"] == ["batch", *read(run / "preprocessing.json")["input_shape"]]


@pytest.mark.slow
def test_a_text_regressor_reports_errors_in_the_targets_units_beside_the_bag_of_words(workdir):
    frame = reviews(300)
    frame["score"] = frame.review.str.count("great|wonderful|loved|superb") * 4.0 + 1.0  # 1 or 5 stars (or 9)
    frame.to_csv(workdir / "scores.csv", index=False)
    result = run_cli("train", "data=csv", "data.path=scores.csv", "data.target=score", "data.task=regression", "data.text=review",
                     "data.drop=[id,label]", "model=gru", "trainer.epochs=8", "trainer.plots=false", "trainer.progress=false", "-q")
    assert result.exit_code == 0, result.output
    run = only_run(workdir)
    summary = read(run / "summary.json")
    assert summary["test"]["rmse"] < 1.0 and summary["baseline"]["test"]["rmse"] < 1.0, summary
    frame.drop(columns=["score"]).head(10).to_csv(workdir / "new.csv", index=False)
    result = run_cli("predict", str(run), "new.csv", "--output", "out.csv")
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(workdir / "out.csv")
    assert list(predicted.columns) == ["id", "score"] and np.abs(predicted.score - frame.score[:10]).max() < 1.5
