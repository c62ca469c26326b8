"""Every command against bad input: exit code 2, one line on stderr naming what is wrong, no
traceback, and nothing left in runs/. One row per case; `{name}` in the arguments is filled in by
the row's setup (files it writes, a copy of a finished run it damages)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import run_cli


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One small completed run, shared by the rows that open a run directory."""
    import os

    root = tmp_path_factory.mktemp("finished")
    here = os.getcwd()
    os.chdir(root)
    try:
        result = run_cli("train", "trainer.epochs=1", "trainer.plots=false", "--quiet")
        assert result.exit_code == 0, result.output
    finally:
        os.chdir(here)
    return next((root / "runs" / "train").iterdir())


def _table(workdir: Path, name: str, frame: pd.DataFrame) -> dict:
    frame.to_csv(workdir / name, index=False)
    return {name.split(".")[0]: str(workdir / name)}


def csv_files(workdir, run):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    good = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": (x[:, 0] > 0).astype(int), "id": range(40)})
    with_inf = good.assign(a=np.where(np.arange(40) == 3, np.inf, good.a))
    one_class = good.assign(y=1)
    text_target = good.assign(y=np.where(x[:, 0] > 0, "up", "down"))
    (workdir / "folder.csv").mkdir()
    return {**_table(workdir, "good.csv", good), **_table(workdir, "with_inf.csv", with_inf),
            **_table(workdir, "one_class.csv", one_class), **_table(workdir, "text_target.csv", text_target),
            "folder": str(workdir / "folder.csv")}


def a_file(workdir, run):
    (workdir / "not_a_dir").write_text("x")
    return {"file": str(workdir / "not_a_dir")}


def damaged_run(workdir, run):
    """Copies of the finished run, each broken in one way, outside runs/."""
    copies = {}
    for name in ("bad_yaml", "mismatch", "pickle", "hostile", "torn_summary"):
        copies[name] = workdir / "received" / name
        shutil.copytree(run, copies[name])
    (copies["bad_yaml"] / "config.yaml").write_text("model: [unclosed\n  - {")
    summary = json.loads((copies["bad_yaml"] / "summary.json").read_text())
    (copies["bad_yaml"] / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    config = (copies["mismatch"] / "config.yaml").read_text().replace("- 256", "- 64")
    (copies["mismatch"] / "config.yaml").write_text(config)
    torch.save({"format": 2, "model": object()}, copies["pickle"] / "checkpoints" / "best.pt")  # a raw pickle
    hostile = OmegaConf.load(copies["hostile"] / "config.yaml")
    hostile.data = {"_target_": "os.system", "command": f"touch {workdir / 'pwned'}"}  # what a prankster might send
    OmegaConf.save(hostile, copies["hostile"] / "config.yaml")
    (copies["torn_summary"] / "summary.json").write_text('{"status": "comple')
    return {name: str(path) for name, path in copies.items()}


def nothing(workdir, run):
    return {}


def image_folder(workdir, run):
    from image_fixtures import write_image_folder

    return {"pets": str(write_image_folder(workdir / "pets", per_class=10, sizes=((12, 12),)))}


def outputs(workdir, run):
    """Places --output may name that are not regular files, and a file that chooses where data goes."""
    import os

    os.mkfifo(workdir / "fifo")
    (workdir / "dangling").symlink_to(workdir / "gone" / "x.csv")
    (workdir / "to_device").symlink_to("/dev/null")
    np.save(workdir / "rows.npy", np.zeros((2, 64), dtype=np.float32))
    (workdir / "fetch.yaml").write_text("- data=mnist\n- data.root=" + str(workdir / "elsewhere") + "\n")
    return {"run": str(run), "rows": str(workdir / "rows.npy"), "fifo": str(workdir / "fifo"), "fetch": str(workdir / "fetch.yaml"),
            "dangling": str(workdir / "dangling"), "to_device": str(workdir / "to_device")}


CASES = [
    # -- dl train: choices, types and ranges ----------------------------------------------------------
    ("unknown model", ["train", "model=perceiver"], nothing, "unknown model 'perceiver': choose one of"),
    ("unknown data", ["train", "data=imagenet"], nothing, "unknown data 'imagenet'"),
    ("unknown optimizer", ["train", "optim=lamb"], nothing, "unknown optim 'lamb'"),
    ("unknown scheduler", ["train", "sched=triangle"], nothing, "unknown sched 'triangle'"),
    ("zero epochs", ["train", "trainer.epochs=0"], nothing, "trainer.epochs=0 must be at least 1"),
    ("text epochs", ["train", "trainer.epochs=many"], nothing, "trainer.epochs"),
    ("negative batch", ["train", "trainer.batch_size=-1"], nothing, "trainer.batch_size=-1 must be at least 1"),
    ("zero lr", ["train", "optim.lr=0"], nothing, "optim.lr=0"),
    ("nan lr", ["train", "optim.lr=nan"], nothing, "optim.lr=nan must be a finite number"),
    ("inf lr", ["train", "optim.lr=inf"], nothing, "optim.lr=inf must be a finite number"),
    ("negative lr", ["train", "optim.lr=-1"], nothing, "optim.lr=-1"),
    ("nan weight decay", ["train", "optim.weight_decay=nan"], nothing, "optim.weight_decay=nan must be a finite number"),
    ("maybe batch norm", ["train", "model.batch_norm=maybe"], nothing, "model.batch_norm=maybe must be true or false"),
    ("maybe nesterov", ["train", "optim.nesterov=maybe"], nothing, "optim.nesterov=maybe must be true or false"),
    ("maybe amp", ["train", "trainer.amp=maybe"], nothing, "trainer.amp"),
    ("maybe plots", ["train", "trainer.plots=maybe"], nothing, "trainer.plots"),
    ("dropout above 1", ["train", "model.dropout=1.5"], nothing, "model.dropout=1.5"),
    ("hidden not a list", ["train", "model.hidden=abc"], nothing, "model.hidden"),
    ("misspelt model key", ["train", "model.hiden=[8]"], nothing, "hiden"),
    ("new model key", ["train", "+model.width=8"], nothing, "model.width is not a setting of dlcli.models.MLP"),
    ("misspelt trainer key", ["train", "trainer.epoch=3"], nothing, "trainer.epoch"),
    ("new trainer key", ["train", "+trainer.loss=huber"], nothing, "trainer.loss"),
    ("new split key", ["train", "+split.shuffle=false"], nothing, "split.shuffle"),
    ("new root key", ["train", "+epochs=3"], nothing, "epochs"),
    ("deleted model", ["train", "~model"], nothing, "model"),
    ("no key", ["train", "=3"], nothing, "=3"),
    ("malformed override", ["train", "optim.lr=="], nothing, "malformed override"),
    ("sweep syntax in train", ["train", "optim.lr=0.1,0.2"], nothing, "dl sweep"),
    ("absent cuda", ["train", "--device", "cuda:7"], nothing, "trainer.device=cuda:7 is not available"),
    ("not a device", ["train", "trainer.device=tpu"], nothing, "trainer.device=tpu is not a device"),
    ("val fraction above 1", ["train", "split.val=1.5"], nothing, "split.val=1.5"),
    ("no validation to stop on", ["train", "split.val=0", "trainer.early_stopping.enabled=true"], nothing, "split.val=0 has none"),
    ("nan split", ["train", "split.test=nan"], nothing, "split.test=nan must be a finite number"),
    ("one fold", ["train", "split.kfold=1"], nothing, "split.kfold=1"),
    ("negative clip", ["train", "trainer.grad_clip=-1"], nothing, "trainer.grad_clip=-1"),
    ("unknown metric", ["train", "trainer.metric=f1"], nothing, "trainer.metric=f1"),
    ("unknown monitor", ["train", "trainer.monitor=val_f1"], nothing, "trainer.monitor=val_f1"),
    ("negative seed", ["train", "seed=-1"], nothing, "seed=-1"),
    ("name with a slash", ["train", "--name", "a/b"], nothing, "a/b"),
    ("negative checkpoint interval", ["train", "trainer.checkpoint_every=-5"], nothing, "trainer.checkpoint_every=-5"),
    ("step size zero", ["train", "sched=step", "sched.step_size=0"], nothing, "sched"),
    ("milestones past the run", ["train", "sched=multistep", "sched.milestones=[2,5]", "trainer.epochs=3"], nothing,
     "sched.milestones=[2, 5] lowers the rate at epoch 5, and the run has trainer.epochs=3"),
    ("step size past the run", ["train", "sched=step", "sched.step_size=5", "trainer.epochs=3"], nothing,
     "sched.step_size=5 lowers the rate every 5 epochs, and the run has trainer.epochs=3"),
    ("milestone neither an epoch nor a share", ["train", "sched=multistep", "sched.milestones=[1.5]"], nothing,
     "element 0 (1.5) must be a whole number of at least 1 or a share of the run in (0, 1)"),
    # -- dl train: settings that would have no effect in the run they are given to ---------------------
    ("as_sequence for a model that reads none", ["train", "data=iris", "+data.as_sequence=true"], nothing,
     "data.as_sequence=true shapes each row as a sequence for sequence models (attention, cnn1d, gru, lstm, rnn, transformer), and model=mlp does not"),
    ("augmentation on a table", ["train", "data=iris", "+data.augment={{hflip: true}}"], nothing,
     "data.augment={'hflip': True} applies to image sets"),
    ("image normalization on a table", ["train", "data=digits", "+data.normalize=none"], nothing,
     "data.normalize=none applies to image sets (data=imagefolder, mnist, fashion_mnist, cifar10), and digits is a table"),
    ("loader workers on a table", ["train", "data=wine", "+data.num_workers=4"], nothing, "data.num_workers=4 applies to image sets"),
    ("a cache directory on a table", ["train", "data=wine", "+data.cache_dir=/tmp/x"], nothing, "data.cache_dir=/tmp/x applies to image sets"),
    ("a cache directory on a table, typed without +", ["train", "data=wine", "data.cache_dir=/tmp/x"], nothing,
     "data.cache_dir applies to image sets only, and data._target_=dlcli.data.sources.load_sklearn is not one: drop it"),
    ("table scaling on a series, typed without +", ["train", "data=sine", "data.standardize=true"], nothing,
     "data.standardize applies to tables only, and data._target_=dlcli.data.series.make_sine is not one: drop it"),
    ("table scaling on images", ["train", "data=imagefolder", "data.root={pets}", "model=lenet", "+data.standardize=true"], image_folder,
     "data.standardize=true applies to tables, and pets is a set of images: drop it (data.normalize scales images)"),
    ("a sequence of images", ["train", "data=imagefolder", "data.root={pets}", "+data.as_sequence=true", "model=lstm"], image_folder,
     "data.as_sequence=true applies to tables"),
    ("a schedule setting with no schedule", ["train", "+sched.gamma=0.5"], nothing,
     "sched.gamma=0.5 has no effect: this run's sched has no class to take it (sched=none keeps a constant rate); choose a sched"),
    ("a loss setting with the usual loss", ["train", "data=diabetes", "+loss.weight=balanced"], nothing,
     "loss.weight=balanced has no effect: this run's loss has no class to take it (loss=auto takes the task's usual loss)"),
    ("label smoothing on a regression", ["train", "data=diabetes", "trainer.label_smoothing=0.1"], nothing,
     "trainer.label_smoothing=0.1 spreads target mass over classes, and this run is a regression"),
    ("plateau stepped every batch", ["train", "sched=plateau", "+sched.interval=step"], nothing,
     "sched.interval=step cannot apply to sched=plateau"),
    ("a sweep of trials that would ignore a setting", ["sweep", "grid", "data=iris", "optim.lr=0.1,0.2", "+data.as_sequence=true"], nothing,
     "data.as_sequence=true shapes each row as a sequence"),
    ("runs_dir is a file", ["train", "runs_dir={file}"], a_file, "runs_dir="),
    ("runs_dir under /proc", ["train", "runs_dir=/proc/no/such/runs"], nothing, "runs_dir=/proc/no/such/runs"),
    ("runs_dir in a system directory", ["train", "runs_dir=/sys/dl-runs"], nothing, "runs_dir=/sys/dl-runs cannot hold runs"),
    ("target that cannot be imported", ["train", "model._target_=nowhere.Net"], nothing, "model._target_=nowhere.Net cannot be imported"),
    ("target that is not a model", ["train", "model._target_=collections.OrderedDict"], nothing, "not a torch.nn.Module"),
    ("data target of the wrong kind", ["train", "data._target_=builtins.dict"], nothing, "data._target_=builtins.dict"),
    ("optimizer target of the wrong kind", ["train", "optim._target_=builtins.dict"], nothing, "optim._target_=builtins.dict"),
    ("callback that is not one", ["train", "+callbacks.x._target_=collections.OrderedDict"], nothing, "none of the hooks"),
    ("vgg on 8x8 digits", ["train", "model=vgg"], nothing, "model=vgg cannot take 8x8 images"),
    ("image model on a table", ["train", "model=lenet", "data=iris"], nothing, "model=lenet needs image-shaped input"),
    ("synthetic set too small", ["train", "data=classification_synthetic", "data.num_samples=5"], nothing, "data.num_samples=5"),
    # -- dl train: files ------------------------------------------------------------------------------
    ("csv without a path", ["train", "data=csv"], nothing, "data.path must be set"),
    ("missing csv", ["train", "data=csv", "data.path=missing.csv", "data.target=y"], nothing, "data.path=missing.csv: no such file"),
    ("csv path is a folder", ["train", "data=csv", "data.path={folder}", "data.target=y"], csv_files, "is a directory"),
    ("unknown target column", ["train", "data=csv", "data.path={good}", "data.target=price"], csv_files, "data.target=price is not a column"),
    ("infinity in a feature", ["train", "data=csv", "data.path={with_inf}", "data.target=y"], csv_files, "column 'a'"),
    ("a single class", ["train", "data=csv", "data.path={one_class}", "data.target=y"], csv_files, "only one class"),
    ("dropping the target", ["train", "data=csv", "data.path={good}", "data.target=y", "data.drop=[y]"], csv_files, "data.drop lists the target"),
    ("text target regressed", ["train", "data=csv", "data.path={text_target}", "data.target=y", "data.task=regression"], csv_files, "not numeric"),
    ("unknown task", ["train", "data=csv", "data.path={good}", "data.target=y", "data.task=ranking"], csv_files, "data.task=ranking"),
    ("resume nowhere", ["train", "resume=nowhere"], nothing, "nowhere is not a directory"),
    ("resume a corrupt config", ["train", "resume={bad_yaml}"], damaged_run, "config.yaml"),
    ("resume with a changed setting", ["train", "resume={mismatch}", "optim.lr=1"], damaged_run, "cannot apply"),
    # -- dl eval --------------------------------------------------------------------------------------
    ("eval nowhere", ["eval", "nowhere"], nothing, "nowhere is not a directory"),
    ("eval a plain folder", ["eval", "."], nothing, "is not a dl run directory"),
    ("eval an unknown split", ["eval", "{mismatch}", "--split", "holdout"], damaged_run, "--split holdout"),
    ("eval an unknown checkpoint", ["eval", "{mismatch}", "--checkpoint", "first"], damaged_run, "--checkpoint first"),
    ("eval a corrupt config", ["eval", "{bad_yaml}"], damaged_run, "config.yaml"),
    ("eval a config that does not fit the weights", ["eval", "{mismatch}"], damaged_run, "does not fit"),
    ("eval a raw pickle", ["eval", "{pickle}"], damaged_run, "cannot be read safely"),
    ("eval a hostile config", ["eval", "{hostile}"], damaged_run, "os.system"),
    ("eval on an absent device", ["eval", "{mismatch}", "--device", "cuda:7"], damaged_run, "cuda:7"),
    # -- dl predict and dl export: --output is a regular file (a link to one is written through) --------
    ("predict --output onto a FIFO", ["predict", "{run}", "{rows}", "--output", "{fifo}"], outputs, "fifo is a FIFO (a named pipe)"),
    ("predict --output onto a device", ["predict", "{run}", "{rows}", "--output", "/dev/null"], outputs,
     "--output /dev/null is a device"),
    ("predict --output through a link to nothing", ["predict", "{run}", "{rows}", "--output", "{dangling}"], outputs,
     "is a link to nothing"),
    ("export --output through a link to a device", ["export", "{run}", "--format", "torchscript", "--output", "{to_device}"],
     outputs, "is a device (through a link)"),
    ("export --output onto a FIFO", ["export", "{run}", "--format", "torchscript", "--output", "{fifo}"], outputs, "is a FIFO"),
    # -- a file from elsewhere never chooses where a download goes --------------------------------------
    ("download into a folder a file names", ["train", "--overrides-file", "{fetch}", "data.download=true"], outputs,
     "names data.root="),
    # -- dl sweep -------------------------------------------------------------------------------------
    ("sweep nothing", ["sweep", "grid", "trainer.epochs=2"], nothing, "nothing to sweep"),
    ("sweep a bad value", ["sweep", "grid", "optim.lr=0.1,abc"], nothing, "optim.lr=abc"),
    ("sweep a bad model", ["sweep", "grid", "model=mlp,perceiver"], nothing, "perceiver"),
    ("sweep a bad boolean", ["sweep", "grid", "model.batch_norm=true,maybe"], nothing, "model.batch_norm=maybe"),
    ("grid over an interval", ["sweep", "grid", "optim.lr=interval(0,1)"], nothing, "interval"),
    ("random without trials", ["sweep", "random", "optim.lr=0.1,0.2"], nothing, "--trials"),
    ("no jobs", ["sweep", "grid", "optim.lr=0.1,0.2", "--jobs", "0"], nothing, "--jobs 0"),
    ("unknown pruner", ["sweep", "grid", "optim.lr=0.1,0.2", "--prune", "bogus"], nothing, "--prune bogus"),
    ("unknown sweep metric", ["sweep", "grid", "optim.lr=0.1,0.2", "--metric", "val_f1"], nothing, "--metric val_f1"),
    ("unknown backend", ["sweep", "grid", "optim.lr=0.1,0.2", "--backend", "slurm"], nothing, "--backend slurm"),
    ("resume no sweep", ["sweep", "grid", "--resume", "nowhere"], nothing, "nowhere"),
    # a note (--trials-per-gpu without CUDA does nothing) is said only once the command is sure to run
    ("sweep trials-per-gpu with devices", ["sweep", "grid", "optim.lr=0.1,0.2", "trainer.devices=2", "--jobs", "2",
                                           "--trials-per-gpu", "2"], nothing, "--trials-per-gpu 2 with trainer.devices=2"),
    ("sweep trials-per-gpu with a bad metric", ["sweep", "grid", "optim.lr=0.1,0.2", "--trials-per-gpu", "2", "--metric",
                                                "val_f1"], nothing, "--metric val_f1"),
    ("sweep trials-per-gpu with a bad value", ["sweep", "grid", "optim.lr=0.1,abc", "--trials-per-gpu", "2"], nothing,
     "optim.lr=abc"),
    # -- dl runs --------------------------------------------------------------------------------------
    ("runs of nowhere", ["runs", "nowhere"], nothing, "nowhere is not a directory"),
    ("runs sorted by nothing", ["runs", "{mismatch}", "--sort", "nope"], damaged_run, "--sort nope"),
    # -- dl lr-find -----------------------------------------------------------------------------------
    ("lr-find from zero", ["lr-find", "--start", "0"], nothing, "--start"),
    ("lr-find too few steps", ["lr-find", "--steps", "2"], nothing, "--steps 2"),
    ("lr-find unknown ladder", ["lr-find", "--mode", "cubic"], nothing, "--mode cubic"),
    ("lr-find unknown model", ["lr-find", "model=perceiver"], nothing, "unknown model"),
    ("lr-find bad name", ["lr-find", "--name", "a/b"], nothing, "a/b"),
    # a name becomes a folder that dl and others list: no disguise in it (a right-to-left override, a zero-width space)
    ("lr-find disguised name", ["lr-find", "--name", "\u202eevil"], nothing, "\\u202eevil must be a plain name without format"),
    ("train disguised name", ["train", "--name", "a\u200bb"], nothing, "a\\u200bb must be a plain name without format"),
    ("sweep disguised name", ["sweep", "grid", "optim.lr=0.1,0.2", "--name", "\u202eevil"], nothing, "without format characters"),
    # -- dl param-count and dl conv-shape -------------------------------------------------------------
    ("param-count unknown model", ["param-count", "model=perceiver"], nothing, "unknown model"),
    ("param-count bad input", ["param-count", "--input", "3xx2"], nothing, "3xx2"),
    ("conv-shape kernel too large", ["conv-shape", "--input", "3x8x8", "conv(4,k=11)"], nothing, "k=11"),
    ("conv-shape without input", ["conv-shape", "conv(4,k=3)"], nothing, "--input is required"),
    ("conv-shape unknown layer", ["conv-shape", "--input", "3x8x8", "warp(2)"], nothing, "warp"),
    ("conv-shape layers and overrides", ["conv-shape", "--input", "3x8x8", "conv(4,k=3)", "model=mlp"], nothing, "not both"),
]


def test_the_table_is_large_and_names_are_unique():
    assert len(CASES) >= 60 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("name, args, setup, expected", CASES, ids=[case[0] for case in CASES])
def test_bad_input(workdir, finished_run, name, args, setup, expected):
    values = setup(workdir, finished_run)
    args = [arg.format(**values) for arg in args]
    result = run_cli(*args)
    assert result.exit_code == 2, f"{name}: exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"{name}: {result.stderr}"
    assert expected in lines[0], f"{name}: {lines[0]}"
    assert "Traceback" not in result.output and "Warning" not in result.output
    runs = workdir / "runs"
    assert not runs.exists() or not any(runs.rglob("*")), f"{name} left {list(runs.rglob('*'))}"
    assert not (workdir / "pwned").exists()
