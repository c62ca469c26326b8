"""A property-based fuzzer over every setting of every option of every config group.

The keys are read from the config tree itself (conf/ and the schema), so a new option or key
is covered without editing this file. For each key, Hypothesis draws values that break its
declared constraint (dlcli.config.constraints: wrong types, wrong element types, wrong lengths, empty
lists, 0, negatives, NaN, inf, huge numbers) and values that satisfy it, plus text in the override
grammar (quotes, brackets, commas, `${...}`). Each is composed, validated, built, and trained for
one optimizer step on a tiny batch, in process. The invariant: a one-line user error that names
the key, or a successful step; never another exception.

Profiles: the default runs a fixed, derandomized set of 80 cases (DL_FUZZ_CASES=N sets the
long profile's count); `DL_FUZZ=long pytest
tests/test_fuzz_config.py` runs many more (the count is printed with -s).
"""

from __future__ import annotations

import math
import os
import re
import traceback
from functools import lru_cache
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcli.config.compose import compose
from dlcli.config.constraints import Anything, Constraint
from dlcli.errors import UserError, printable

CONF = Path(__file__).resolve().parents[1] / "conf"  # the YAML options, at the top of the repository
LONG = os.environ.get("DL_FUZZ") == "long"
if LONG:
    pytestmark = pytest.mark.timeout(0)  # thousands of cases take longer than the suite's per-test limit
SKIPPED_GROUPS = ("experiment", "logger")  # recipes are other groups' options; loggers never change a step
TINY = ["trainer.batch_size=16", "trainer.progress=false", "trainer.plots=false", "trainer.diagnostics=false"]
GRAMMAR = ["a,b", "[1", "]", "{", "'", '"', "${oc.env:HOME}", "${trainer.epochs}", "\\", "a=b", "", " ", "null", "[]",
           "{}", "[[1]]", "[1,[2]]", "1e400", "-1e400", "0x10", "1_000", "true", "nan", "-inf", "\u00e9", "a" * 300]


# -- the keys, from the tree ----------------------------------------------------------------------

def _leaves(node: dict, prefix: str):
    for key, value in node.items():
        if key == "_target_" or str(key).startswith("_"):
            continue
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


@lru_cache(maxsize=1)
def all_keys() -> list[tuple[str, str, str | None]]:
    """(group, option, dotted key) for every leaf key of every option file, and (None) the schema's."""
    from dlcli.config.schema import CONSTRAINTS

    keys = []
    for folder in sorted(p for p in CONF.iterdir() if p.is_dir() and p.name not in SKIPPED_GROUPS):
        for file in sorted(folder.glob("*.yaml")):
            content = yaml.safe_load(file.read_text()) or {}
            for key in _leaves(content, f"{folder.name}."):
                keys.append((folder.name, file.stem, key))
    keys += [("", "", key) for key in CONSTRAINTS if key not in ("resume", "refit")]
    return sorted(set(keys))


def constraint_of(group: str, option: str, key: str) -> Constraint:
    """The constraint dl declares for this key (Anything when it declares none)."""
    from dlcli.config.schema import CONSTRAINTS
    from dlcli.data.transforms import AUGMENT_CONSTRAINTS
    from dlcli.config.build import constraints_for, resolve_target
    from dlcli.config.own_settings import OWN_SETTINGS

    if key in CONSTRAINTS:
        return CONSTRAINTS[key]
    leaf = key.split(".", 1)[1]
    own = OWN_SETTINGS.get(group, {})
    if leaf in own and not isinstance(own[leaf], Anything):
        return own[leaf]
    if leaf.startswith("augment."):
        return AUGMENT_CONSTRAINTS.get(leaf.split(".")[1], Anything())
    content = yaml.safe_load((CONF / group / f"{option}.yaml").read_text()) or {}
    target = content.get("_target_")
    if not target:
        return Anything()
    return constraints_for(resolve_target(target, group), target).get(leaf, Anything())


# -- the data each option needs, found by trying ------------------------------------------------------

@lru_cache(maxsize=None)
def base_for(group: str, option: str, root: str) -> tuple[str, ...] | None:
    """Overrides that make `group=option` build on small data, found by trying the likely ones
    (tables, sequences, images of growing size, regression, two classes); None when none does."""
    from dlcli.experiment import build_experiment

    select = (f"{group}={option}",) if group else ()
    images = [f"data.resize={size}" for size in (12, 32, 64, 96)]
    for extra in ([], ["+data.as_sequence=true"], *[[r] for r in images], ["data=diabetes"], ["data=breast_cancer"],
                  *[["data=diabetes", r] for r in images[:1]]):
        overrides = (*select, *data_files(group, option, root), *extra, *TINY)
        try:
            build_experiment(compose(list(overrides)))
        except UserError:
            continue
        return overrides
    return None


def data_files(group: str, option: str, root: str) -> list[str]:
    """Data options that read files get small ones, written by the tests in the real formats."""
    if group != "data":
        return []
    if option == "csv":
        return [f"data.path={root}/table.csv", "data.target=label"]
    if option == "imagefolder":
        return [f"data.root={root}/photos", "data.resize=12"]
    if option in ("mnist", "fashion_mnist", "cifar10"):
        return [f"data.root={root}/images", "data.download=false", "data.verify=false"] if option == "cifar10" else \
               [f"data.root={root}/images", "data.download=false"]
    return []


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_files(tmp_path_factory.mktemp("fuzz"))


def write_files(root: Path) -> Path:
    import numpy as np
    import pandas as pd

    from image_fixtures import write_cifar10, write_image_folder, write_mnist

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.choice(["x", "y"], 60)})
    frame["label"] = np.where(frame.a > 0, "p", "q")
    frame.to_csv(root / "table.csv", index=False)
    write_image_folder(root / "photos", per_class=12)
    write_mnist(root / "images", "MNIST", train=300, test=20)
    write_mnist(root / "images", "FashionMNIST", train=300, test=20)
    write_cifar10(root / "images", per_batch=40, test=20)
    return root


# -- values ------------------------------------------------------------------------------------------

def override_text(value) -> str:
    """A value in Hydra's override grammar."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_text(v)}" for k, v in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def values_for(constraint: Constraint):
    """Values that satisfy the key's declared constraint, values that break it (each side of every
    bound, wrong types and lengths), anything at all, and raw text in the override grammar."""
    scalars = st.one_of(st.integers(-(10**25), 10**25), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                        st.none(), st.text(max_size=8))
    lists = st.lists(scalars, max_size=4)
    generic = st.one_of(scalars, lists, st.lists(lists, max_size=2)).map(override_text)
    raw = st.sampled_from(GRAMMAR)  # as typed, not quoted: the grammar itself
    sides = [st.sampled_from([override_text(v) for v in examples])
             for examples in (constraint.valid_examples(), constraint.invalid_examples()) if examples]
    # the declared sides half the time: most generic values break the first constraint a key has,
    # so without them few cases would get as far as a training step
    return st.one_of(*sides, *sides, generic, raw) if sides else st.one_of(generic, raw)


# -- one case ------------------------------------------------------------------------------------------

def one_step(experiment) -> None:
    session = experiment.session
    x, y = next(iter(session.train_data.shuffled(session.step.batch_size, session.generator)))
    loss = session.loss_fn(session.model(x), y)
    loss.backward()
    session.optimizer.step()
    session.schedule.step_epoch(0.5)


def attempt(base: tuple[str, ...], key: str, text: str) -> str:
    """'error' (a proper user error), 'step' (it trained), or an AssertionError naming the case."""
    from dlcli.experiment import build_experiment

    overrides = [*base, f"{key}={text}"]
    try:
        one_step(build_experiment(compose(overrides)))
        return "step"
    except UserError as exc:
        message = str(exc)
        leaf = key.rsplit(".", 1)[-1]
        assert "\n" not in message, f"{overrides}: a message of several lines: {message!r}"
        value = printable(text.strip("'"))  # as a message quotes it: control characters escaped
        assert leaf in message or value in message, f"{overrides}: the message does not name {key}: {message!r}"
        for advice in suggested_overrides(message):
            follow(overrides, advice, message)
        return "error"
    except Exception:  # anything else is a bug: say which case, with its traceback
        raise AssertionError(f"dl train {' '.join(overrides)} raised:\n{traceback.format_exc()}") from None


# an override a message tells the user to type: "set data.resize=32", "add +data.as_sequence=true"
ADVICE = re.compile(r"(?:set|add|use|e\.g\.|try:?) (\+?[a-z_]+(?:\.[a-z_]+)+=(?:\[[^\]\s]*\]|[^\s,;)]+))")


def suggested_overrides(message: str) -> list[str]:
    """The concrete overrides a message suggests (not templates such as trainer.epochs=N)."""
    return [advice.rstrip(".") for advice in ADVICE.findall(message) if not advice.endswith(("=N", "=ID", "=VALUE", "=K"))]


ADVICE_FOLLOWED: list[str] = []


def follow(overrides: list[str], advice: str, message: str) -> None:
    """The advice applied (in place of the override it corrects, or added) must be a valid override:
    it composes, and whatever is still wrong afterwards is not the advice itself nor the same error."""
    from dlcli.experiment import build_experiment

    key = advice.split("=", 1)[0].lstrip("+")
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+") != key]
    try:
        build_experiment(compose([*kept, advice]))
    except UserError as exc:
        after = str(exc)
        assert after != message, f"{overrides}: following '{advice}' gives the same error: {message}"
        assert not after.startswith((f"{key}=", f"unknown config key '{key}'", f"{key} is not")), \
            f"{overrides}: the advice '{advice}' (from: {message}) is itself refused: {after}"
    ADVICE_FOLLOWED.append(advice)


CASES: list[str] = []


@settings(max_examples=int(os.environ.get("DL_FUZZ_CASES", 4000)) if LONG else 80, derandomize=not LONG, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def fuzz(data, root: str) -> None:
    group, option, key = data.draw(st.sampled_from(all_keys()), label="key")
    base = base_for(group, option, root)
    if base is None:
        return  # an option that needs what this machine lacks (a download): its own tests cover it
    text = data.draw(values_for(constraint_of(group, option, key)), label="value")
    CASES.append(attempt(base, key, text))


@pytest.mark.slow  # fuzzes: 80 settings, each composed and most trained
def test_every_setting_is_a_one_line_error_or_trains(files, monkeypatch):
    monkeypatch.chdir(files)
    fuzz(root=str(files))
    errors, steps = CASES.count("error"), CASES.count("step")
    print(f"\nfuzzed {len(CASES)} cases over {len(all_keys())} keys: {errors} refused in one line, {steps} trained a step; "
          f"{len(ADVICE_FOLLOWED)} suggested overrides followed")
    assert errors and steps  # both sides of the invariant were exercised
    assert not (files / "runs").exists()  # building and one step write nothing


def test_the_tree_gives_every_group_and_the_schema():
    groups = {group for group, _, _ in all_keys()}
    assert {"data", "model", "optim", "sched", "loss", "trainer", "split", ""} <= groups
    assert ("optim", "sgd", "optim.lr") in all_keys() and ("", "", "trainer.epochs") in all_keys()


# Configs whose error message advises an override; the advice is extracted from the message and
# followed by the same rule the fuzzer applies to every message it provokes.
ADVISED = [
    ["model=vgg"],  # set data.resize=32
    ["model=lenet", "data.resize=4"],  # set data.resize=12
    ["model=lstm"],  # add +data.as_sequence=true
    ["data=classification_synthetic", "data.num_samples=30", "data.num_classes=5"],  # set split.stratify=false
]


@pytest.mark.parametrize("overrides", ADVISED, ids=[" ".join(o) for o in ADVISED])
def test_the_advice_in_a_message_is_an_override_that_applies(overrides):
    from dlcli.experiment import build_experiment

    with pytest.raises(UserError) as refused:
        build_experiment(compose([*overrides, *TINY]))
    message = str(refused.value)
    advice = suggested_overrides(message)
    assert advice, message
    for each in advice:
        follow([*overrides, *TINY], each, message)


# -- the diagnosis' advice -------------------------------------------------------------------------

def sick_runs():
    """(rows, summary, evidence) that make every check with a "try:" line fire, one or a few at a time."""
    from dlcli.diagnostics.evidence import Evidence

    summary = {"task": "classification", "metric": "accuracy"}
    row = {"lr": 0.05, "train_accuracy": 0.3, "val_accuracy": 0.3, "val_loss": 2.0}
    yield [{**row, "train_loss": 9.0}], summary, Evidence(initial_loss=2.3)  # lr_too_high
    yield [{**row, "train_loss": 2.0}] * 6, summary, Evidence()  # lr_too_low
    yield ([{**row, "train_loss": 1 / (e + 1), "val_loss": v, "train_accuracy": 1.0, "val_accuracy": 0.6}
            for e, v in enumerate([1.0, 0.8, 0.9, 1.2, 1.5, 1.8])], summary, Evidence())  # overfitting
    yield ([{**row, "train_loss": loss} for loss in (2.0, 1.8, 1.79, 1.789)], summary,  # underfitting, and the evidence's checks
           Evidence(layer_names=["a", "b", "c"], layer_grad_means=[1e-7, 1e-3, 1.0],
                    grad_norms=[1.0] * 15 + [100.0], grad_steps=list(range(16)), dead_relu={"net.2": 1.0},
                    input_scale={"max_std": 300.0, "max_abs_mean": 50.0, "feature": 0},
                    data_shares=[0.9, 0.9], loader=True))
    yield [{**row, "lr": -0.4, "train_loss": 9.0}], summary, Evidence(initial_loss=2.3)  # a rate that is no rate
    stuck = [{**row, "train_loss": loss} for loss in (2.31, 2.30, 2.30)]  # at the untrained level after 3 epochs
    yield stuck, summary, Evidence(initial_loss=2.31, saturated={"net.1": 0.4}, layer_grad_means=[1e-4, 1.0])  # sigmoids
    yield stuck, summary, Evidence(initial_loss=2.31)  # lr_too_low, early


@pytest.mark.slow  # trains a run per suggested override
def test_every_override_a_diagnosis_suggests_applies_to_the_run(files):
    """A diagnosis of a run with each model, optimizer and data option suggests only overrides that
    run has, with values its constraints accept: each one, applied, still builds the run."""
    from omegaconf import OmegaConf

    from dlcli.diagnostics import analyze
    from dlcli.experiment import build_experiment

    followed, checked, built = set(), set(), set()  # built: (group, option, advice) already composed, built and stepped
    options = [(group, path.stem) for group in ("model", "optim", "data") for path in sorted((CONF / group).glob("*.yaml"))]
    for group, option in options:
        base = base_for(group, option, str(files))
        if base is None:
            continue
        config = OmegaConf.to_container(compose(list(base)), resolve=False)
        for rows, summary, evidence in sick_runs():
            for finding in analyze(rows, summary, evidence, config=config):
                checked.add(finding.code)
                for advice in suggested_overrides("try: " + finding.suggestion.replace(", ", " try: ")):
                    assert "-0.04" not in advice, f"{group}={option}: {finding.code} suggests {advice}"
                    key = advice.split("=", 1)[0].lstrip("+")
                    if not key.startswith(f"{group}.") and any(a == advice for _, a in followed):
                        continue  # another group's setting, already followed once: it does not depend on this option
                    if (group, option, advice) in built:
                        followed.add((finding.code, advice))  # the same run as a finding before this one built
                        continue
                    kept = [o for o in base if o.split("=", 1)[0].lstrip("+") != key]
                    try:
                        one_step(build_experiment(compose([*kept, advice])))  # composes, builds and trains
                    except UserError as exc:
                        raise AssertionError(f"{group}={option}: {finding.code} suggests {advice}, which is refused: {exc}")
                    followed.add((finding.code, advice))
                    built.add((group, option, advice))
    assert {"lr_too_high", "lr_too_low", "overfitting", "underfitting", "vanishing_gradients", "exploding_gradients",
            "dead_relus", "unnormalized_inputs", "input_pipeline_bound", "saturating_activations"} <= checked
    suggested = {code for code, _ in followed}
    assert {"lr_too_high", "lr_too_low", "overfitting", "underfitting", "vanishing_gradients", "dead_relus",
            "unnormalized_inputs", "input_pipeline_bound", "saturating_activations"} <= suggested, followed
    assert any(a.startswith("model.hidden=") for code, a in followed if code == "underfitting")  # the model's own size
    assert any(a.startswith("model.width=") for code, a in followed if code == "underfitting")
