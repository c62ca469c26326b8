"""Language modelling on a text the tests write (data=text, data=timemachine): the spans, the
vocabulary, the windows, the metrics, sampling, resume and the bad inputs."""

import csv
import hashlib
import io
import json
import os
import math
import random
import re

import numpy as np
import pytest
import yaml
import torch
from omegaconf import OmegaConf

import dlcli.data.text as text_source
from conftest import quiet_reporter, read, run_cli
from dlcli.config.compose import compose
from dlcli.data.modalities.text import TextModality, span_bounds
from dlcli.data.ngram import bigram_perplexity, unigram_perplexity
from dlcli.data.text import TIMEMACHINE_FILE, load_text, load_timemachine
from dlcli.data.vocab import UNK_ID, detokenize
from dlcli.diagnostics.checks import analyze
from dlcli.engine.callbacks import Callback
from dlcli.engine.checkpoint import load_checkpoint
from dlcli.engine.language import TokenCrossEntropy, TokenWindows, metric_reads_outputs, sample_tokens
from dlcli.engine.loop import StepConfig, train_epoch
from dlcli.errors import UserError
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest
from dlcli.trained.generate import continue_text

WORDS = ("the time traveller said that it was late and we all sat round the fire while he spoke of "
         "a machine made of brass and crystal that moved through time as we move through space").split()
TINY_MODEL = ["model._target_=user_code.NextTokenTable", "~model.hidden", "~model.activation", "~model.dropout",
              "~model.batch_norm", "~model.init", "~model.freeze"]


def some_text(words: int = 700, seed: int = 0) -> str:
    """A few KB of text with structure a model can learn (word order repeats), lines of ten words."""
    rng = random.Random(seed)
    chosen, position = [], 0
    for _ in range(words):
        position = (position + rng.choice((1, 1, 1, 2, 3))) % len(WORDS)
        chosen.append(WORDS[position])
    return "\n".join(" ".join(chosen[i : i + 10]) + "." for i in range(0, len(chosen), 10)) + "\n"


@pytest.fixture
def text_file(workdir):
    path = workdir / "book.txt"
    path.write_text(some_text(), encoding="utf-8")
    return path


def prepared(path, seq_len=20, tokens="char", val=0.1, test=0.1, vocab_size=None):
    raw = load_text(str(path), seq_len=seq_len, tokens=tokens)
    modality = TextModality()
    split = modality.split(raw, OmegaConf.create({"val": val, "test": test, "kfold": None}))
    return raw, modality.prepare(raw, split, {"vocab_size": vocab_size}, None)


def lm(*overrides: str):
    return compose(["data=text", "trainer.progress=false", "trainer.epochs=2", "trainer.batch_size=16", *overrides])


# -- the data --------------------------------------------------------------------------------------

def test_the_token_stream_decodes_to_the_text_exactly(text_file):
    raw, data = prepared(text_file)
    assert detokenize(data.vocabulary.decode(data.stream), "char") == text_file.read_text()
    assert data.stream.dtype == np.int64 and data.vocab_size == len(data.vocabulary) == data.num_outputs


def test_a_folder_is_its_txt_files_in_sorted_order(workdir):
    (workdir / "corpus" / "b").mkdir(parents=True)
    (workdir / "corpus" / "b" / "2.txt").write_text("second part. " * 20)
    (workdir / "corpus" / "1.txt").write_text("first part. " * 20)
    (workdir / "corpus" / "notes.md").write_text("not read")
    raw = load_text(str(workdir / "corpus"), seq_len=5)
    assert "".join(raw.tokens) == "first part. " * 20 + "second part. " * 20


def test_train_val_and_test_are_contiguous_spans_whose_windows_never_overlap(text_file):
    raw, data = prepared(text_file, seq_len=16, val=0.15, test=0.2)
    spans = data.split.spans
    assert spans["train"][0] == 0 and spans["train"][1] == spans["val"][0] and spans["val"][1] == spans["test"][0]
    assert spans["test"][1] == len(raw.tokens)
    assert spans["val"][1] - spans["val"][0] == round(0.15 * len(raw.tokens))
    for part, (start, stop) in spans.items():
        starts = data.split.part(part)
        assert len(starts) > 0 and (np.diff(starts) == 16).all()  # one window after another, never interleaved
        # every token a window reads or predicts lies in its own span, the training windows moved as far as they may
        offset = data.max_offset if part == "train" else 0
        assert starts[0] >= start and starts[-1] + offset + 16 < stop
    assert 0 < data.max_offset <= 15


def test_the_vocabulary_is_learned_from_the_training_span_only(workdir):
    path = workdir / "book.txt"
    text = some_text(words=400)
    path.write_text(text + "QQQ zebra\n" * 8)  # Q and z only in the last lines: the test span
    raw, data = prepared(path, val=0.1, test=0.1)
    assert "Q" not in data.vocabulary.ids and "z" not in data.vocabulary.ids
    start, stop = data.split.spans["test"]
    test_tokens = raw.tokens[start:stop]
    unknown = [i for i, token in enumerate(test_tokens) if token in "Qz"]
    assert unknown and (data.stream[start:stop][unknown] == UNK_ID).all()
    assert any("test tokens unknown to it" in note for note in data.notes)


def test_word_tokens_with_a_capped_vocabulary_read_the_rest_as_unk(text_file):
    raw, data = prepared(text_file, tokens="word", seq_len=8, vocab_size=8)
    assert raw.tokens[:3] == some_text().split()[:3] and len(data.vocabulary) == 8
    assert (data.stream == UNK_ID).any() and data.vocabulary.tokens[2] in WORDS + ["."]


def test_windows_are_gathered_on_the_device_and_targets_are_the_next_tokens():
    stream = torch.arange(100)
    windows = TokenWindows(stream, torch.tensor([0, 10, 20, 30]), seq_len=10, max_offset=5)
    x, y = windows.peek(2)
    assert x.tolist() == [list(range(10)), list(range(10, 20))] and (y == x + 1).all()
    first = [batch[0].tolist() for batch in windows.shuffled(2, torch.Generator().manual_seed(3))]
    again = [batch[0].tolist() for batch in windows.shuffled(2, torch.Generator().manual_seed(3))]
    assert first == again  # the order and the epoch's offset come from the run's generator
    rows = sorted(row for batch in first for row in batch)
    offset = rows[0][0]
    assert 0 <= offset <= 5 and [row[0] for row in rows] == [offset, offset + 10, offset + 20, offset + 30]


def test_a_training_epoch_keeps_no_predictions_when_the_metric_is_read_from_the_loss():
    """Perplexity is exp of the mean loss: the epoch spends nothing on next-token predictions, and
    trains exactly as when it keeps them (next-token accuracy as the metric)."""
    assert not metric_reads_outputs("language_model", "perplexity") and metric_reads_outputs("language_model", "accuracy")
    assert metric_reads_outputs("classification", "accuracy")
    windows = TokenWindows(torch.arange(1, 200) % 7 + 1, torch.arange(0, 180, 6), seq_len=6)
    results = []
    for keep in (True, False):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Embedding(8, 4), torch.nn.Linear(4, 8))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        results.append(train_epoch(model, optimizer, TokenCrossEntropy(), windows.shuffled(8, torch.Generator().manual_seed(1)),
                                   StepConfig(batch_size=8), keep_outputs=keep))
    kept, skipped = results
    assert kept.outputs.shape == (30, 6) and skipped.outputs.numel() == 0 and skipped.targets.numel() == 0
    assert (skipped.count, skipped.steps) == (kept.count, kept.steps) == (30, 4)
    assert torch.equal(skipped.loss_sum, kept.loss_sum)


def test_the_counting_baselines():
    train = np.array([2, 3, 2, 3, 2, 3, 2, 3])
    assert unigram_perplexity(train, 4) == pytest.approx(2.0)  # two tokens, equally frequent
    # 2 is always followed by 3 and 3 by 2: with little smoothing a bigram is nearly certain
    assert bigram_perplexity(train, np.array([2, 3, 2, 3]), 4, 0.001) == pytest.approx(1.0, abs=0.01)


# -- bad inputs: one line, exit 2, nothing written --------------------------------------------------

@pytest.mark.parametrize("content, overrides, words", [
    (b"", [], "holds no text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", [], "is not UTF-8 text (byte"),
    ("a" * 500, [], "only one distinct token"),
    ("a b c d e f g. " * 20, ["data.seq_len=5000"], "data.seq_len=5000 is longer than the train span"),
    ("a b c d e f g. " * 20, ["data.seq_len=100"], "is longer than the val span"),
    ("a b c d e f g. " * 20, ["data.tokens=bpe"], "data.tokens"),
    ("a b c d e f g. " * 20, ["split.kfold=3"], "split.kfold=3 cuts rows into folds"),
    ("a b c d e f g. " * 20, ["model=lstm", "data.seq_len=10", "loss=mse"], "loss=mse does not fit a language model"),
    ("a b c d e f g. " * 20, ["model=lstm", "data.seq_len=10", "loss=cross_entropy", "loss.label_smoothing=0.1"], "label smoothing 0.1 would change"),
])
def test_a_bad_text_is_one_line_and_writes_nothing(workdir, content, overrides, words):
    path = workdir / "bad.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run_cli("train", "data=text", f"data.path={path}", *overrides)
    assert result.exit_code == 2, result.output
    assert words in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (workdir / "runs").exists()


def test_the_same_text_saved_with_a_byte_order_mark_or_windows_line_ends_gives_the_same_tokens(workdir):
    text = "the time traveller\nsaid that\n" * 20
    (workdir / "plain.txt").write_text(text, encoding="utf-8", newline="\n")
    (workdir / "windows.txt").write_text(text, encoding="utf-8-sig", newline="\r\n")
    (workdir / "old_mac.txt").write_text(text, encoding="utf-8", newline="\r")
    plain = load_text(str(workdir / "plain.txt"), seq_len=5).tokens
    assert load_text(str(workdir / "windows.txt"), seq_len=5).tokens == plain == load_text(str(workdir / "old_mac.txt"), seq_len=5).tokens


def test_the_seq_len_a_refusal_suggests_fits_every_span(workdir):
    """The longest window is the shortest span's (less its next token): suggesting the train span's
    length led to a second refusal, by the val span."""
    path = workdir / "short.txt"
    path.write_text("a b c d e f g. " * 20)
    for asked in (5000, 100):
        with pytest.raises(UserError) as refused:
            prepared(path, seq_len=asked)
        suggested = int(re.search(r"use data\.seq_len=(\d+) or less", str(refused.value)).group(1))
        prepared(path, seq_len=suggested)  # fits: no second refusal


def test_a_missing_path_and_an_empty_folder_are_one_line(workdir):
    (workdir / "empty").mkdir()
    os.mkfifo(workdir / "pipe.txt")
    for path, words in ((workdir / "nope.txt", "no such file or folder"), (workdir / "empty", "a folder with no .txt files"),
                        (workdir / "pipe.txt", "is not a regular file"), ("/dev/zero", "is not a regular file")):
        result = run_cli("train", "data=text", f"data.path={path}")
        assert result.exit_code == 2 and words in result.output, result.output


# -- data=timemachine: the course's copy, never downloaded by the tests -----------------------------

def test_timemachine_reads_its_file_from_root_cleaned_as_the_course_cleans_it(workdir):
    (workdir / TIMEMACHINE_FILE).write_text("The Time Machine, by H. G. Wells [1898]\n\nI\n\nThe Time Traveller (for so...")
    raw = load_timemachine(str(workdir), download=False, seq_len=5)
    assert "".join(raw.tokens) == "the time machine by h g wells i the time traveller for so "
    with pytest.raises(UserError, match="data=timemachine: no .*set data.download=true"):
        load_timemachine(str(workdir / "elsewhere"), download=False)


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_download_that_fails_its_checksum_leaves_nothing(workdir, monkeypatch):
    monkeypatch.setattr(text_source.urllib.request, "urlopen", lambda url, timeout: FakeResponse(b"not the book"))
    with pytest.raises(UserError, match="SHA-1"):
        load_timemachine(str(workdir / "cache"))
    assert list((workdir / "cache").iterdir()) == []
    book = b"the time machine " * 20
    monkeypatch.setattr(text_source, "TIMEMACHINE_SHA1", hashlib.sha1(book).hexdigest())
    monkeypatch.setattr(text_source.urllib.request, "urlopen", lambda url, timeout: FakeResponse(book))
    assert "".join(load_timemachine(str(workdir / "cache"), seq_len=5).tokens).startswith("the time machine")
    assert (workdir / "cache" / TIMEMACHINE_FILE).read_bytes() == book


# -- the engine: loss over every position, perplexity, the diagnosis, sampling --------------------

@pytest.mark.slow  # trains
def test_perplexity_is_exp_of_the_mean_token_loss_and_the_model_beats_the_unigram_level(text_file):
    result = train(RunRequest(lm(f"data.path={text_file}", *TINY_MODEL, "optim=adam", "optim.lr=0.05", "trainer.epochs=6"),
                              [], quiet_reporter()))
    summary = result.summary
    assert summary["task"] == "language_model" and summary["monitor"] == "val_perplexity"
    test = read(result.run_dir / "eval-test.json")
    assert test["perplexity"] == pytest.approx(math.exp(test["loss"]))
    assert test["bits_per_token"] == pytest.approx(test["loss"] / math.log(2))
    assert summary["test"]["perplexity"] == test["perplexity"]
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    for row in rows:
        assert float(row["val_perplexity"]) == pytest.approx(math.exp(float(row["val_loss"])), rel=1e-5)
    baseline = summary["baseline"]
    # the embedding read out as logits is a bigram model: it ends near the counted bigram, far below the unigram
    assert summary["best_val_perplexity"] < 0.8 * baseline["unigram_perplexity"]
    assert baseline["label"] == "bigram" and 1.0 < baseline["val"]["perplexity"] < baseline["unigram_perplexity"]
    assert 1.0 < baseline["test"]["perplexity"]
    assert "unigram_level" not in [f["code"] for f in summary.get("diagnosis", [])]
    log = (result.run_dir / "train.log").read_text()  # a language model's samples are windows, and said to be
    assert re.search(r"train \d+ / val \d+ / test \d+ windows of \d+ tokens\)", log) and re.search(r"[\d,]+ windows/s", log)
    assert "samples/s" not in log


def test_the_diagnosis_names_a_model_stuck_at_the_unigram_level():
    summary = {"task": "language_model", "metric": "perplexity", "monitor": "val_perplexity", "best_epoch": 5,
               "best_val_perplexity": 11.8, "baseline": {"unigram_perplexity": 12.0}}
    rows = [{"epoch": e, "lr": 0.01, "train_loss": 2.5, "val_loss": 2.47, "train_perplexity": 12.2, "val_perplexity": 11.8}
            for e in range(1, 6)]
    found = [f for f in analyze(rows, summary, config={"trainer": {"epochs": 5}}) if f.code == "unigram_level"]
    assert found and "unigram level" in found[0].message and "trainer.epochs=20" in found[0].suggestion
    assert "model=lstm, gru or transformer" in found[0].suggestion
    transformer = OmegaConf.to_container(compose(["data=text", "model=transformer"]), resolve=False)
    found = [f for f in analyze(rows, summary, config=transformer) if f.code == "unigram_level"]
    assert "(model=lstm or gru)" in found[0].suggestion  # never the model the run already has
    summary["best_val_perplexity"] = 6.0
    assert "unigram_level" not in [f.code for f in analyze(rows, summary)]


def test_sampling_repeats_with_a_seed_and_follows_temperature_and_top_k():
    model = torch.nn.Embedding(6, 6)
    with torch.no_grad():
        model.weight.copy_(torch.randn(6, 6, generator=torch.Generator().manual_seed(0)) * 3)
    prompt = torch.tensor([2, 3])

    def draw(seed, temperature=1.0, top_k=None):
        return sample_tokens(model, prompt, 30, temperature, top_k, torch.Generator().manual_seed(seed), context=4, never=(0,))

    assert draw(1) == draw(1) and draw(1) != draw(2)
    assert 0 not in draw(1) + draw(2)  # padding is never drawn
    greedy = draw(1, top_k=1)
    assert greedy == draw(2, top_k=1) == draw(3, temperature=0.01)  # one token left: the likeliest, whatever the seed


@pytest.mark.slow  # trains, then opens the run
def test_dl_predict_continues_a_prompt_reproducibly(text_file):
    result = train(RunRequest(lm(f"data.path={text_file}", *TINY_MODEL, "optim=adam", "optim.lr=0.05"), [], quiet_reporter()))
    run = str(result.run_dir)
    first = run_cli("predict", run, "--prompt", "the time traveller", "--tokens", "40", "--temperature", "0.8", "--seed", "5",
                    "--json", "--trust", "user_code")
    again = continue_text(run, "the time traveller", 40, 0.8, seed=5, trust=["user_code"])
    assert first.exit_code == 0, first.output
    answer = json.loads(first.output)
    assert answer["text"] == again["text"] and answer["text"].startswith("the time traveller")
    assert len(answer["continuation"]) == 40 and answer["seed"] == 5
    topk = continue_text(run, "the time", 40, 1.0, top_k=1, seed=1, trust=["user_code"])
    assert topk["continuation"] == continue_text(run, "the time", 40, 1.0, top_k=1, seed=2, trust=["user_code"])["continuation"]
    unknown = continue_text(run, "ZZ the", 5, seed=1, trust=["user_code"])
    assert "lacks 'Z'" in unknown["notes"][0]
    for flags, words in ((["--tokens", "0"], "--tokens 0 must be"), (["--temperature", "0"], "--temperature 0.0 must be"),
                         (["--top-k", "0"], "--top-k 0 must be"), (["--seed", "99999999999999999999"], "--seed 99999999999999999999 must be"),
                         (["--seed", "-1"], "--seed -1 must be"),
                         # options of predicting an INPUT, which a text continued from a prompt would silently ignore
                         (["--output", "gen.txt"], "--output applies to predicting an INPUT"), (["--fold", "1"], "--fold applies"),
                         (["--horizon", "3"], "--horizon applies"), (["--proba"], "--proba applies"), (["--id", "x"], "--id applies")):
        refused = run_cli("predict", run, "--prompt", "the", *flags)
        lines = refused.output.strip().splitlines()
        assert refused.exit_code == 2 and len(lines) == 1 and words in lines[0], refused.output
    both = run_cli("predict", run, str(text_file), "--prompt", "the")
    assert both.exit_code == 2 and "reads no INPUT" in both.output
    assert run_cli("predict", run, str(text_file)).exit_code == 2  # a file to a language model: use --prompt
    exported = run_cli("export", run, "--format", "torchscript", "--trust", "user_code", "--json")
    assert exported.exit_code == 0, exported.output
    sidecar = json.loads(exported.output)
    assert sidecar["input"]["dtype"] == "int64" and "next token's logits at every position" in sidecar["output"]["gives"]


class InterruptAt(Callback):
    def __init__(self, epoch: int):
        self.epoch, self.current = epoch, 0

    def on_epoch_start(self, epoch):
        self.current = epoch

    def on_batch_end(self, batch_size, loss):
        if self.current == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.slow  # trains an LSTM three times
@pytest.mark.slow  # trains, then evaluates and resumes from elsewhere
def test_a_relative_data_path_is_recorded_so_the_run_is_used_from_any_directory(text_file, workdir, monkeypatch):
    """data.path=book.txt typed in the project folder: dl eval from another folder, from inside the
    run (cd RUN && dl eval .) and a resume from elsewhere all read the same file (config.yaml
    records it absolute; it said data.path=book.txt: no such file)."""
    result = run_cli("train", "data=text", "data.path=book.txt", *TINY_MODEL, "trainer.epochs=1", "trainer.progress=false",
                     "--trust", "user_code", "-q")
    assert result.exit_code == 0, result.output
    run = next((workdir / "runs" / "train").iterdir())
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["path"] == str(text_file.resolve())
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    for where, target in ((elsewhere, str(run)), (run, ".")):
        monkeypatch.chdir(where)
        evaluated = run_cli("eval", target, "--trust", "user_code")
        assert evaluated.exit_code == 0, (where, evaluated.output)
    monkeypatch.chdir(elsewhere)
    longer = run_cli("train", f"resume={run}", "trainer.epochs=2", "--trust", "user_code", "-q")
    assert longer.exit_code == 0, longer.output


def test_an_lstm_language_model_resumes_exactly(text_file):
    overrides = lm(f"data.path={text_file}", "model=lstm", "model.hidden=16", "model.embedding_dim=8", "trainer.epochs=3",
                   "data.seq_len=16")
    reference = train(RunRequest(overrides.copy(), [], quiet_reporter()))
    stopped = train(RunRequest(overrides.copy(), [], quiet_reporter(), callbacks=[InterruptAt(epoch=2)]))
    assert stopped.status == "interrupted"
    resumed = train(RunRequest(compose([f"resume={stopped.run_dir}"]), [f"resume={stopped.run_dir}"], quiet_reporter()))
    ref_rows = list(csv.DictReader((reference.run_dir / "metrics.csv").open()))
    res_rows = list(csv.DictReader((resumed.run_dir / "metrics.csv").open()))
    keys = ("epoch", "train_loss", "val_loss", "val_perplexity")
    assert [[r[k] for k in keys] for r in ref_rows] == [[r[k] for k in keys] for r in res_rows]
    assert resumed.summary["test"] == reference.summary["test"]
    a, b = (load_checkpoint(run.run_dir / "checkpoints" / "last.pt")["model"] for run in (reference, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_spans_follow_the_fractions():
    assert span_bounds(1000, 0.1, 0.2) == {"train": (0, 700), "val": (700, 800), "test": (800, 1000)}
    assert span_bounds(1000, 0.0, 0.0) == {"train": (0, 1000), "val": (1000, 1000), "test": (1000, 1000)}
