"""Every example a user can copy — the README's, the documentation site's (docs/*.md) and every
`--help` epilog's — runs, each distinct command once however many pages show it.

Each command runs as written, in an empty working directory that holds what the examples name
(house.csv, train.csv, test.csv, rows.npy, photos/, resnet18.pth, a finished run, k-fold run,
refit, photos run and sweep at the paths the examples use), with only these changes so the whole list runs in about a minute on 2 cores:
one epoch (two where an example trains a finished run longer, three under a 2-epoch warmup), two random trials, 20 lr-find
steps, images resized to 32 instead of 224, the datasets read from small files in their real
formats instead of downloaded, and `--device cuda` as `--device cpu` on a machine without CUDA.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import typer

from conftest import new_database, run_cli
from dlcli.cli import app
from image_fixtures import write_cifar10, write_image_folder, write_mnist

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]  # the landing page and the documentation site
RUN = "runs/train/2026-11-24_10-31-07"
SEED_1 = "runs/train/2026-11-24_10-45-00"  # RUN's config with seed=1 (dl runs diff)
SWEEP = "runs/sweeps/sweep/2026-11-24_10-31-07"
KFOLD = "runs/house_prices/2026-11-24_11-00-00"  # a finished k-fold run ...
REFIT = "runs/house_prices/2026-11-24_11-20-00"  # ... and its refit
PHOTOS = "runs/photos/2026-11-24_12-00-00"  # a run on the photos/ folder
HOUSES = "runs/sweeps/houses/2026-11-24_12-00-00"  # a k-fold sweep of the house-prices recipe ...
HOUSES_REFIT = "runs/houses/2026-11-24_12-30-00"  # ... and the refit of its best trial on every row
BOOK = "runs/book/2026-11-24_13-00-00"  # a language model trained on book.txt
SALES = "runs/sales/2026-11-24_14-00-00"  # a forecaster trained on sales.csv
REVIEWS = "runs/reviews/2026-11-24_15-00-00"  # a classifier of reviews.csv's text column
DOWNLOADED = ("mnist", "fashion_mnist", "cifar10", "lenet_fashion", "mlp_fashion", "softmax_fashion", "vgg_small_fashion", "cifar_cnn",
              "timemachine")


def page_examples(page: Path) -> list[str]:
    """The `dl` commands in a page's bash blocks (a command continued with a backslash is one)."""
    blocks = re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [_without_comment(line) for line in text.splitlines() if line.strip().startswith("dl ")]


def docs_examples() -> list[str]:
    return [example for page in PAGES for example in page_examples(page)]


def help_examples() -> list[str]:
    group = typer.main.get_command(app)
    examples = []
    for command in _commands(group):
        for line in (command.epilog or "").splitlines():
            if line.strip().startswith("dl "):
                examples.append(_without_comment(line))
    return examples


def _commands(group):
    for command in group.commands.values():
        if hasattr(command, "commands"):
            yield from _commands(command)
        else:
            yield command


def _without_comment(line: str) -> str:
    line = line.split("  #")[0]  # README comments
    return re.split(r"\s{2,}\(", line.strip())[0].strip()  # --help notes: "   (warns: ...)"


EXAMPLES = list(dict.fromkeys([*docs_examples(), *help_examples()]))  # each distinct command once


def test_the_examples_are_found():
    assert len(page_examples(README)) >= 5 and len(docs_examples()) >= 50 and len(help_examples()) >= 15
    for page in PAGES:  # a command shown in a block of another language would silently never run
        for language, block in re.findall(r"```(\w*)\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S):
            shown = [line for line in block.splitlines() if line.strip().startswith("dl ")]
            assert language == "bash" or not shown, f"{page.name}: {shown[0]} is in a ```{language} block"
    assert any("conv-shape" in e for e in EXAMPLES) and any("--overrides-file" in e for e in EXAMPLES)


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory):
    """A working directory holding everything the examples name, with a finished run and sweep."""
    import os

    root = tmp_path_factory.mktemp("examples")
    previous = os.getcwd()
    os.chdir(root)
    try:
        datasets = root / "datasets"
        write_mnist(datasets, train=200, test=50)
        write_mnist(datasets, "FashionMNIST", train=200, test=50)
        write_cifar10(datasets, per_batch=20, test=40)
        book = "The Time Traveller (for so it will be convenient to speak of him) was expounding a recondite matter to us.\n"
        (datasets / "timemachine.txt").write_text(book * 40)  # data=timemachine reads it there, never downloads
        (root / "book.txt").write_text(book * 40)
        _write_sequences(root)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(120, 3))
        table = pd.DataFrame({"Id": range(120), "LotArea": x[:, 0] * 1000 + 8000, "Rooms": rng.integers(2, 9, 120),
                              "Street": rng.choice(["Pave", "Grvl"], 120)})
        table["SalePrice"] = 180000 + 20 * table.LotArea + 5000 * table.Rooms + rng.normal(0, 5000, 120)
        table.to_csv(root / "house.csv", index=False)
        table.to_csv(root / "train.csv", index=False)
        write_image_folder(root / "photos", per_class=12)
        code = next(found.group(1) for page in PAGES
                    if (found := re.search(r"```python\n(# mypkg.py.*?)```", page.read_text(encoding="utf-8"), flags=re.S)))
        (root / "mypkg.py").write_text(code)  # the documentation's own callback example
        sys.path.append(str(root))
        import torchvision

        torch.save(torchvision.models.resnet18(weights=None).state_dict(), root / "resnet18.pth")
        assert run_cli("train", "trainer.epochs=1", "-q").exit_code == 0
        made = next((root / "runs" / "train").iterdir())
        shutil.move(str(made), root / RUN)
        _made_as("train trainer.epochs=1 seed=1", root, SEED_1)
        for name, model in (("softmax", "model=softmax"), ("mlp_dropout", "model.dropout=0.2")):
            assert run_cli("train", model, "trainer.epochs=1", "--name", name, "-q").exit_code == 0
        _made_as("train experiment=house_prices_kfold data.path=train.csv trainer.epochs=1", root, KFOLD)
        _made_as(f"train refit={KFOLD}", root, REFIT)
        table.drop(columns=["SalePrice"]).to_csv(root / "test.csv", index=False)
        _made_as("train data=imagefolder data.root=photos model=lenet trainer.epochs=1 --name photos", root, PHOTOS)
        _made_as("train data=text data.path=book.txt model=lstm trainer.epochs=1 --name book", root, BOOK)
        _made_as("train model=gru data=timeseries data.path=sales.csv data.time=day data.columns=[sales] data.window=28 "
                 "data.horizon=7 trainer.epochs=1 --name sales", root, SALES)
        _made_as("train data=csv data.path=reviews.csv data.target=label data.text=review data.drop=[id] model=gru "
                 "trainer.epochs=1 --name reviews", root, REVIEWS)
        assert run_cli("sweep", "grid", "experiment=house_prices_kfold", "data.path=train.csv", "optim.lr=0.01,0.003",
                       "trainer.epochs=1", "--name", "houses", "-q").exit_code == 0
        (root / HOUSES).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(next((root / "runs" / "sweeps" / "houses").iterdir())), root / HOUSES)
        _made_as(f"train refit={HOUSES} split.test=0", root, HOUSES_REFIT)
        from sklearn.datasets import load_digits

        np.save(root / "rows.npy", load_digits().data[:20])
        assert run_cli("sweep", "grid", "optim.lr=0.3,0.1", "trainer.epochs=1", "-q").exit_code == 0
        made = next(p for p in (root / "runs" / "sweeps" / "sweep").iterdir() if p.name != Path(SWEEP).name)
        shutil.move(str(made), root / SWEEP)
        yield root
    finally:
        os.chdir(previous)
        sys.modules.pop("mypkg", None)
        if str(root) in sys.path:
            sys.path.remove(str(root))


def _write_sequences(root: Path) -> None:
    """sales.csv (a daily series with a trend and a weekly season), reviews.csv and new_reviews.csv
    (short texts whose label is the word they hold), as the sequence examples name them."""
    rng = np.random.default_rng(0)
    day = np.arange(500)
    sales = 50 + 0.05 * day + 10 * np.sin(2 * np.pi * day / 7) + rng.normal(0, 1, len(day))
    pd.DataFrame({"day": day, "sales": sales}).to_csv(root / "sales.csv", index=False)
    words = {"pos": ["great", "superb", "moving"], "neg": ["awful", "dull", "boring"]}
    filler = "the film was a story and its actors music".split()
    labels = rng.choice(["pos", "neg"], 120)
    texts = [" ".join([*rng.choice(filler, 4), rng.choice(words[label])]) for label in labels]
    pd.DataFrame({"id": range(120), "review": texts, "label": labels}).to_csv(root / "reviews.csv", index=False)
    pd.DataFrame({"id": [1, 2], "review": ["a great story", "dull music"]}).to_csv(root / "new_reviews.csv", index=False)


def _made_as(command: str, root: Path, path: str) -> None:
    """Run `dl COMMAND` and move the run it made to the path the examples name."""
    before = set((root / "runs").rglob("summary.json"))
    assert run_cli(*shlex.split(command), "-q").exit_code == 0, command
    made = {p.parent for p in set((root / "runs").rglob("summary.json")) - before}
    top = min(made, key=lambda p: len(p.parts))  # a k-fold's parent, not its folds
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(top), root / path)


# the database server the sweep examples name (docs/sweeps.md's cluster recipe, --help), and the
# shell variable the recipe keeps it in: the tests' own PostgreSQL server stands in for it
EXAMPLE_DATABASES = ("postgresql://dl@db-host:5432/sweeps", "$URL")


def names_a_database(example: str) -> bool:
    return any(url in example for url in EXAMPLE_DATABASES)


@pytest.fixture(scope="module")
def example_database(postgres, example_dir):
    """A database of the tests' server holding the study the examples join, report and list,
    started by the examples' own command that starts it (`dl sweep ... --storage`)."""
    url = new_database(postgres)
    start = next(e for e in EXAMPLES if names_a_database(e) and "--storage" in e)
    started = run_cli(*runnable(start, example_dir, url))
    assert started.exit_code == 0, started.output
    return url


def runnable(example: str, root: Path, database: str | None = None) -> list[str]:
    """The example's arguments, with the changes the module docstring lists (and the tests' own
    database for the one the sweep examples name)."""
    for url in EXAMPLE_DATABASES if database else ():
        example = example.replace(url, database)
    args = shlex.split(example)[1:]
    if "$(dl" in example:  # dl train $(dl lr-find --apply)
        suggestion = run_cli("lr-find", "--apply", "--steps", "20").stdout.strip()
        args = [args[0], suggestion]
    args = [RUN if a == "RUN_DIR" else a for a in args]
    if any(a == f"resume={RUN}" for a in args) and not any(a.startswith("trainer.epochs=") for a in args):
        args = [f"resume={interrupted_copy(root)}" if a == f"resume={RUN}" else a for a in args]
    out = []
    longer = any(a.startswith("resume=") for a in args) and any(a.startswith("trainer.epochs=") for a in args)
    epochs = 2 if longer else 3 if "sched=warmup_cosine" in args else 1  # a warmup of 2 epochs needs 3
    for arg in args:
        arg = re.sub(r"^trainer\.epochs=\d+$", f"trainer.epochs={epochs}", arg)
        arg = re.sub(r"^data\.resize=224$", "data.resize=32", arg)
        if arg in ("cuda",) and not torch.cuda.is_available():
            arg = "cpu"
        out.append(arg)
    args = out
    for flag, value in (("--trials", "2"), ("--steps", "20")):
        if flag in args:
            args[args.index(flag) + 1] = value
    command = args[0]
    trains = (command in ("train", "sweep") and args[1:2] not in (["join"], ["report"])  # (these take no overrides)
              and not any(a.startswith("resume=") or a == "--resume" for a in args) and "--cfg" not in args)
    if trains and not any(a.startswith("trainer.epochs=") for a in args):
        args.append(f"trainer.epochs={epochs}")
    if command == "lr-find" and "--steps" not in args:
        args += ["--steps", "20"]
    if any(a.split("=")[-1] in DOWNLOADED for a in args if a.startswith(("data=", "experiment="))):
        args += [f"data.root={root / 'datasets'}", "data.download=false"]
        args += ["data.verify=false"] if "data=cifar10" in args else []  # our small files are not the originals
    return args


def interrupted_copy(root: Path) -> str:
    """A copy of the finished run that says it was interrupted, for `dl train resume=RUN`."""
    import json

    copy = root / "runs" / "train" / "interrupted"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root / RUN, copy)
    summary = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    return str(copy.relative_to(root))


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES)
def test_example_runs(example_dir, example, monkeypatch, request):
    # `dl --install-completion` writes into the user's home (and reads $SHELL): a home of the test's own
    monkeypatch.setenv("HOME", str(example_dir / "home"))
    monkeypatch.setenv("SHELL", "/bin/bash")
    database = request.getfixturevalue("example_database") if names_a_database(example) else None
    args = runnable(example, example_dir, database)
    result = run_cli(*args)
    assert result.exit_code == 0, f"{example}\n-> dl {' '.join(args)}\n{result.output}"
