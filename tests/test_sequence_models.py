"""The sequence models of issue 35: RNN/LSTM/GRU over tokens, the Transformer and the attention
block. A language model never sees the future, padding changes nothing for a classifier, settings
that cannot work are one line, the parameter counts are the architecture's, runs resume exactly
and export to ONNX. The texts are written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from conftest import assert_resumes_exactly, quiet_reporter, run_cli
from dlcli.config.compose import compose
from dlcli.diagnostics import Evidence, analyze
from dlcli.diagnostics.through_time import gradient_reach
from dlcli.errors import UserError
from dlcli.models import build_model
from dlcli.run.dispatch import train
from dlcli.run.request import RunRequest

VOCAB, LENGTH = 30, 12
LANGUAGE_MODELS = ["transformer", "attention", "rnn", "lstm", "gru"]
TEXT = "the time traveller said that a machine could move through time as we move in space. " * 30


def token_model(option: str, *overrides: str, task: str = "classification", outputs: int = 3):
    torch.manual_seed(0)
    cfg = compose([f"model={option}", *overrides]).model
    return build_model(cfg, (LENGTH,), VOCAB if task == "language_model" else outputs, vocab_size=VOCAB, task=task).eval()


def write_text(folder: Path, text: str = TEXT) -> Path:
    path = folder / "book.txt"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("option", LANGUAGE_MODELS)
def test_a_later_token_never_changes_an_earlier_output(option):
    model = token_model(option, task="language_model")
    ids = torch.randint(1, VOCAB, (3, LENGTH), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 7] = (ids[:, 7] % (VOCAB - 1)) + 1  # another real token at position 7
    with torch.no_grad():
        before, after = model(ids), model(changed)
    assert before.shape == (3, LENGTH, VOCAB)
    assert torch.equal(before[:, :7], after[:, :7])  # exactly: positions 0..6 never read position 7
    assert not torch.allclose(before[:, 7:], after[:, 7:])  # the change is seen from position 7 on


@pytest.mark.parametrize("option, overrides", [
    ("transformer", ()), ("transformer", ("model.pool=cls", "model.positions=sinusoidal")), ("attention", ()),
    ("rnn", ()), ("lstm", ("model.bidirectional=true",)), ("gru", ("model.pool=mean",)), ("gru", ("model.pool=max", "model.layers=2")),
])
def test_padding_changes_nothing_for_a_classifier(option, overrides):
    model = token_model(option, *overrides)
    lengths = [3, 6, 1, 8]
    short = torch.zeros(len(lengths), 8, dtype=torch.int64)
    for row, length in enumerate(lengths):
        short[row, :length] = torch.randint(1, VOCAB, (length,), generator=torch.Generator().manual_seed(row))
    padded = torch.cat([short, torch.zeros(len(lengths), LENGTH - 8, dtype=torch.int64)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model(short), model(padded), rtol=0, atol=1e-6)
        alone = model(short[1:2, :6])  # the sample by itself, without any padding
    assert torch.allclose(model(short)[1:2], alone, rtol=0, atol=1e-6)


@pytest.mark.parametrize("option, overrides", [("lstm", ()), ("gru", ("model.pool=mean", "model.layers=2")),
                                               ("rnn", ("model.pool=max",))])
def test_one_direction_reads_padded_text_as_it_would_read_packed_sequences(option, overrides):
    """A one-direction network runs over the padded batch (a third of the packed pass's time on a
    CPU, and ONNX takes it): every text's answer is the one of packed sequences, which hold no padding."""
    model = token_model(option, *overrides)
    ids = torch.zeros(4, LENGTH, dtype=torch.int64)
    for row, length in enumerate([3, LENGTH, 1, 7]):
        ids[row, :length] = torch.randint(1, VOCAB, (length,), generator=torch.Generator().manual_seed(row))
    with torch.no_grad():
        packed = pack_padded_sequence(model.embedding(ids), (ids != 0).sum(dim=1), batch_first=True, enforce_sorted=False)
        output, state = model.rnn(packed)
        expected = model._pooled((pad_packed_sequence(output, batch_first=True, total_length=LENGTH)[0], state), ids != 0)
        assert torch.allclose(model(ids), expected, rtol=0, atol=1e-6)


def test_the_arguments_the_run_passes_a_model_are_never_offered_as_settings():
    """vocab_size and causal come from the data and the task: a bad key's list of valid settings
    leaves them out, and setting one is refused rather than silently replaced."""
    for overrides in (["model=transformer", "+model.kernl=3"], ["model=lstm", "+model.hiden=3"]):
        with pytest.raises(UserError) as refused:
            build_model(compose(overrides).model, (LENGTH,), 3, vocab_size=VOCAB)
        said = str(refused.value)
        assert "valid settings are" in said and "causal" not in said and "vocab_size" not in said and "dropout" in said
    with pytest.raises(UserError) as unknown:  # a key no option has: the composer's message reads the same list
        compose(["model=gru", "model.hiden=3"])
    assert "model.hidden" in str(unknown.value) and "causal" not in str(unknown.value) and "vocab_size" not in str(unknown.value)
    with pytest.raises(UserError, match="model.vocab_size is not a setting: dl gives dlcli.models.RecurrentClassifier its vocab_size itself"):
        build_model(compose(["model=lstm", "+model.vocab_size=50"]).model, (LENGTH,), 3, vocab_size=VOCAB)


def test_float_sequences_go_through_a_projection():
    cfg = compose(["model=transformer"]).model
    model = build_model(cfg, (2, 40), 10).eval()
    assert model(torch.randn(5, 2, 40)).shape == (5, 10) and model.projection.in_channels == 2
    with pytest.raises(UserError, match="model.kernel=4 must be odd"):
        build_model(compose(["model=transformer", "model.kernel=4"]).model, (2, 40), 10)


def test_tied_weights_are_one_tensor():
    for option, widths in (("transformer", ("model.dim=32",)), ("lstm", ("model.hidden=32", "model.embedding_dim=32"))):
        model = token_model(option, *widths, "model.tie_weights=true", task="language_model")
        assert model.head.weight is model.embedding.weight
        untied = token_model(option, *widths, task="language_model")
        assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in model.parameters()) == VOCAB * 32


@pytest.mark.parametrize("overrides, task, says", [
    (("model=lstm", "model.hidden=32", "model.tie_weights=true"), "language_model", "needs the output's width (model.hidden=32) equal to model.embedding_dim=64"),
    (("model=gru", "model.tie_weights=true"), "classification", "this task is not language modelling"),
    (("model=gru", "model.bidirectional=true"), "language_model", "cannot be a language model"),
    (("model=mlp",), "classification", "model=mlp cannot read tokens"),
])
def test_settings_that_cannot_work_are_one_line(overrides, task, says):
    cfg = compose(list(overrides)).model
    with pytest.raises(UserError, match=says.replace("(", r"\(").replace(")", r"\)")):
        build_model(cfg, (LENGTH,), VOCAB, vocab_size=VOCAB, task=task)


def test_token_data_for_a_model_that_cannot_read_it_names_those_that_can(workdir):
    out = run_cli("train", "data=text", f"data.path={write_text(workdir)}", "model=mlp")
    assert out.exit_code == 2, out.output
    assert "model=mlp cannot read tokens" in out.output and "model=transformer" in out.output and "model=lstm" in out.output
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize("overrides, says", [
    (("model=transformer", "model.dim=30", "model.heads=4"), "model.dim=30 must be divisible by model.heads=4"),
    (("model=lstm", "model.bidirectional=true"), "cannot be a language model"),
    (("model=transformer", "model.positions=rotary"), "model.positions"),
    (("model=transformer", "model.kernel=3"), "model.kernel=3 sets how many steps of a float sequence each position reads"),
    (("model=attention", "model.kernel=1"), "this data is token ids (text), which an embedding reads one by one: drop model.kernel"),
    (("model=gru", "+model.causal=true"), "model.causal is not a setting"),
])
def test_a_sequence_model_refuses_bad_settings_before_runs_is_touched(workdir, overrides, says):
    out = run_cli("train", "data=text", f"data.path={write_text(workdir)}", *overrides)
    assert out.exit_code == 2 and says in out.output, out.output
    assert len(out.output.strip().splitlines()) == 1 and not (workdir / "runs").exists()


def test_param_count_shows_the_transformer(workdir):
    out = run_cli("param-count", "model=transformer", "data=digits", "+data.as_sequence=true", "--json")
    assert out.exit_code == 0, out.output
    dim, ff, length, kernel = 64, 256, 64, 5  # the defaults; digits as a sequence: 1 channel x 64 pixels
    block = 2 * 2 * dim + (dim * 3 * dim + 3 * dim) + (dim * dim + dim) + (dim * ff + ff) + (ff * dim + dim)
    expected = (1 * kernel * dim + dim) + length * dim + 2 * block + 2 * dim + (dim * 10 + 10)
    assert json.loads(out.stdout)["total"] == expected


def test_param_count_shows_a_token_lstm_and_counts_tied_weights_once(workdir):
    path = write_text(workdir)
    vocab = len(set(TEXT)) + 2  # every character, <pad> and <unk>
    lstm = 4 * (64 * 64 + 64 * 64 + 2 * 64)
    for tie, head in (("false", 64 * vocab + vocab), ("true", vocab)):  # tied: the head's matrix is the embedding's
        out = run_cli("param-count", "data=text", f"data.path={path}", "model=lstm", f"model.tie_weights={tie}", "--json")
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["total"] == vocab * 64 + lstm + head


SMALL = {"transformer": ["model.dim=16", "model.ff=32", "model.layers=1"], "attention": ["model.dim=16", "model.ff=32"],
         **dict.fromkeys(("rnn", "lstm", "gru"), ["model.hidden=16", "model.embedding_dim=16"])}  # quick on 2 shared cores


def _source(workdir: Path, data: str) -> list[str]:
    if data == "text":
        return ["data=text", f"data.path={write_text(workdir)}", "data.seq_len=16"]
    return ["data=digits", "+data.as_sequence=true", "split.val=0.5", "split.test=0.3"]  # 360 training rows



@pytest.mark.slow  # trains each model three times over
@pytest.mark.timeout(900)  # three short runs: about a minute alone, over the suite's 300 s on 2 cores shared by many processes
@pytest.mark.parametrize("option, data", [
    ("transformer", "text"), ("lstm", "text"), ("gru", "text"), ("rnn", "text"), ("attention", "digits"),
    ("transformer", "digits"),
])
def test_each_sequence_model_resumes_exactly(workdir, option, data):
    assert_resumes_exactly([*_source(workdir, data), f"model={option}", *SMALL[option], "trainer.epochs=3",
                            "trainer.progress=false", "trainer.plots=false"])


@pytest.mark.slow  # trains, exports and runs the file in onnxruntime
@pytest.mark.parametrize("option, data", [("transformer", "text"), ("lstm", "text"), ("transformer", "digits"),
                                          ("attention", "digits")])
def test_a_sequence_model_exports_to_onnx(workdir, option, data):
    pytest.importorskip("onnxruntime")
    result = train(RunRequest(compose([*_source(workdir, data), f"model={option}", *SMALL[option], "trainer.epochs=1",
                                       "trainer.progress=false", "trainer.plots=false"]), [], quiet_reporter()))
    out = run_cli("export", str(result.run_dir), "--format", "onnx", "--json")
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["verified"]["max_abs_difference"] <= 1e-3 and Path(report["path"]).is_file()


def _recurrent_config(cell: str) -> dict:
    return {"model": {"_target_": "dlcli.models.RecurrentClassifier", "cell": cell, "hidden": 64},
            "trainer": {"grad_clip": None}}


def test_a_plain_rnn_whose_gradient_vanishes_through_time_is_told_lstm_or_gru():
    for cell, reach, expected in (("rnn", 1e-9, True), ("rnn", 0.5, False), ("lstm", 1e-9, False)):
        findings = analyze([], {"task": "classification"}, Evidence(gradient_reach=reach), _recurrent_config(cell))
        found = [f for f in findings if f.code == "vanishing_through_time"]
        assert bool(found) == expected, (cell, reach)
        if expected:
            assert "model=lstm or model=gru" in found[0].suggestion and "1e-09" in found[0].message


def test_exploding_gradients_in_a_recurrent_network_name_clipping():
    norms = [0.3, 0.2, 0.25, 0.22, 0.2, 0.3, 0.2, 0.25, 0.22, 0.2, 0.21, 60.0, 0.2]
    evidence = Evidence(grad_norms=norms, grad_steps=list(range(len(norms))))
    found = next(f for f in analyze([], {"task": "classification"}, evidence, _recurrent_config("lstm"))
                 if f.code == "exploding_gradients")
    assert "clipping its norm is the remedy" in found.message and found.suggestion.startswith("trainer.grad_clip=1.0")


def test_the_gradient_reaching_the_first_step_is_measured_for_a_many_to_one_rnn():
    torch.manual_seed(0)
    cfg = compose(["model=rnn", "model.pool=last"]).model  # the final state: max pooling reaches every step directly
    model = build_model(cfg, (1, 60), 2).eval()
    x, y = torch.randn(16, 1, 60), torch.randint(0, 2, (16,))
    reach = gradient_reach(model, x, y, torch.nn.functional.cross_entropy)
    assert reach is not None and reach < 1e-6  # untrained: 60 steps each shrink it (measured ~1e-13 at 64 steps)
    assert all(p.grad is None for p in model.parameters())  # the weights' gradients are left alone
    lm = token_model("lstm", task="language_model")
    assert gradient_reach(lm, torch.randint(1, VOCAB, (2, LENGTH)), torch.randint(1, VOCAB, (2, LENGTH)), None) is None


@pytest.mark.slow  # trains two small text classifiers and exports them
def test_a_recurrent_text_classifier_exports_to_onnx_and_a_bidirectional_one_names_torchscript(workdir):
    pytest.importorskip("onnxruntime")
    words = ["the film was", "a dull story", "great acting", "and its music"]
    rows = [f"{words[i % 4]} {words[(i * 7) % 4]},{'pos' if i % 3 else 'neg'}" for i in range(60)]
    (workdir / "reviews.csv").write_text("review,label\n" + "\n".join(rows) + "\n")
    source = ["data=csv", "data.path=reviews.csv", "data.target=label", "data.text=review", *SMALL["gru"], "model=gru",
              "trainer.epochs=1", "trainer.progress=false", "trainer.plots=false"]
    one_way = train(RunRequest(compose(source), [], quiet_reporter())).run_dir
    out = run_cli("export", str(one_way), "--format", "onnx", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["verified"]["max_abs_difference"] <= 1e-4  # onnxruntime against PyTorch
    both_ways = train(RunRequest(compose([*source, "model.bidirectional=true"]), [], quiet_reporter())).run_dir
    out = run_cli("export", str(both_ways), "--format", "onnx")
    assert out.exit_code == 2 and len(out.output.strip().splitlines()) == 1, out.output
    assert "cannot be exported to ONNX (a bidirectional network" in out.output and "use --format torchscript" in out.output
    assert not list(both_ways.glob("model.onnx*"))
    assert run_cli("export", str(both_ways), "--format", "torchscript").exit_code == 0
