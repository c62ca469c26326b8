"""A run or sweep directory someone sent you: opening it runs none of its code and writes nothing
outside it. Every command that opens one is tried against every kind of hostile payload (a table
of payload x command: a new command is covered by adding one row). For each case: no marker file
appears (no code ran), nothing outside the directory changes, and the command either works or
refuses in one line (exit 2), never with a traceback; a YAML bomb is refused within seconds."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import read, run_cli

# -- what is received: one small finished run and one small sweep, made once ----------------------

@pytest.fixture(scope="module")
def made(tmp_path_factory):
    home = tmp_path_factory.mktemp("sender")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    frame["label"] = np.where(frame.a + frame.b > 0, "yes", "no")
    frame.to_csv(home / "table.csv", index=False)
    frame.drop(columns="label").to_csv(home / "new.csv", index=False)
    previous = Path.cwd()
    os.chdir(home)
    try:
        common = ["data=csv", "data.path=table.csv", "data.target=label", "trainer.epochs=2", "trainer.plots=false",
                  "trainer.progress=false", "trainer.checkpoint_every=0"]
        assert run_cli("train", *common, "--name", "sent").exit_code == 0
        assert run_cli("sweep", "grid", "optim.lr=0.1,0.01", *common, "--name", "sent").exit_code == 0
        assert run_cli("train", *common, "split.kfold=2", "--name", "sentk").exit_code == 0
    finally:
        os.chdir(previous)
    run = next((home / "runs" / "sent").iterdir())
    sweep = next((home / "runs" / "sweeps" / "sent").iterdir())
    kfold = next((home / "runs" / "sentk").iterdir())
    return home, run, sweep, kfold


@pytest.fixture
def case(made, tmp_path, monkeypatch):
    """A fresh copy of the received directories in an empty working directory, plus a folder
    outside them holding files a hostile link may point at."""
    home, run, sweep, kfold = made
    work = tmp_path / "work"
    work.mkdir()
    for name in ("table.csv", "new.csv"):
        shutil.copy(home / name, work / name)
    received_run, received_sweep = work / "received" / "run", work / "received" / "sweep"
    shutil.copytree(run, received_run, symlinks=True)
    shutil.copytree(sweep, received_sweep, symlinks=True)
    shutil.copytree(kfold, work / "received" / "kfold", symlinks=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("precious\n")
    (outside / "001").mkdir()
    (outside / "001" / "keep").write_text("keep me\n")
    monkeypatch.chdir(work)
    return {"run": received_run, "sweep": received_sweep, "kfold": work / "received" / "kfold", "outside": outside,
            "marker": tmp_path / "MARK", "work": work, "above": tmp_path}


# -- payloads: each turns a received directory hostile -----------------------------------------------

def edit_config(path: Path, change) -> None:
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config))


def code_in_data_target(c):
    edit_config(c["run"] / "config.yaml", lambda cfg: cfg.update(data={
        "_target_": "torch.fx.graph_module._exec_with_source", "src": f"import os; os.system('touch {c['marker']}')",
        "globals": {}}))


def hub_load_of_a_local_hubconf(c):
    hub = c["work"] / "hub"
    hub.mkdir(exist_ok=True)
    (hub / "hubconf.py").write_text(f"import os\nos.system('touch {c['marker']}')\ndef x(**kw):\n    return None\n")
    edit_config(c["run"] / "config.yaml", lambda cfg: cfg.update(model={
        "_target_": "torch.hub.load", "repo_or_dir": str(hub), "model": "x", "source": "local"}))


def os_system_as_a_callback(c):
    edit_config(c["run"] / "config.yaml", lambda cfg: cfg.update(callbacks={
        "p": {"_target_": "os.system", "command": f"touch {c['marker']}"}}))


def environment_interpolation(c):
    edit_config(c["run"] / "config.yaml", lambda cfg: cfg.update(name="${oc.env:HOME}"))


def yaml_alias_bomb(c):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 11)]
    with (c["run"] / "config.yaml").open("a") as file:
        file.write("\n".join(lines) + "\n")


def hostile_overrides_file(c):
    (c["run"] / "overrides.yaml").write_text(yaml.safe_dump(
        ["+callbacks.p._target_=os.system", f"+callbacks.p.command='touch {c['marker']}'"]))


def lock_is_a_link_out(c):
    (c["run"] / ".lock").unlink(missing_ok=True)
    (c["run"] / ".lock").symlink_to(c["outside"] / "victim")


def temporary_names_are_links_out(c):
    for name in ("eval-test.json.tmp", "summary.json.tmp", "metrics.csv.tmp", "checkpoints/last.tmp", "checkpoints/best.tmp"):
        (c["run"] / name).symlink_to(c["outside"] / "victim")


def log_is_a_link_out(c):
    (c["run"] / "train.log").unlink()
    (c["run"] / "train.log").symlink_to(c["outside"] / "victim")


def checkpoints_folder_is_a_link_out(c):
    target = c["outside"] / "checkpoints"
    if target.exists():
        shutil.rmtree(target)
    shutil.move(c["run"] / "checkpoints", target)
    (c["run"] / "checkpoints").symlink_to(target)


def runs_and_mlflow_store_elsewhere(c):
    """A config whose runs_dir (and so its default MLflow store) is outside the run."""
    def change(cfg):
        cfg["runs_dir"] = str(c["outside"] / "runs")
        cfg["logger"] = {"mlflow": {"_target_": "dlcli.tracking.mlflow.MLflowLogger", "tracking_uri": None,
                                    "experiment": None, "parent_run_id": None}}
    edit_config(c["run"] / "config.yaml", change)


def dl_class_that_writes_where_it_is_told(c):
    """dl's own callbacks take paths they write to: a received config may not name them."""
    edit_config(c["run"] / "config.yaml", lambda cfg: cfg.update(callbacks={
        "x": {"_target_": "dlcli.engine.metrics_csv.MetricsCsv", "path": str(c["outside"] / "victim"), "metric": "accuracy"}}))


def a_logger_class_elsewhere_with_a_store_outside(c):
    def change(cfg):
        cfg["logger"] = {"other": {"_target_": "dlcli.tracking.mlflow.MLflowLogger", "experiment": None, "parent_run_id": None,
                                   "tracking_uri": f"sqlite+pysqlite:///{c['outside']}/evil.db"}}
    edit_config(c["run"] / "config.yaml", change)


def overrides_reach_hydra_searchpath(c):
    options = c["run"] / "conf" / "data"
    options.mkdir(parents=True, exist_ok=True)
    (options / "evil.yaml").write_text(yaml.safe_dump({"_target_": "os.system", "command": f"touch {c['marker']}"}))
    (c["run"] / "overrides.yaml").write_text(yaml.safe_dump([f"hydra.searchpath=[file://{c['run'] / 'conf'}]", "data=evil"]))


def overrides_with_an_escaped_interpolation(c):
    (c["run"] / "overrides.yaml").write_text(yaml.safe_dump(["name=a$\\{oc.env:HOME\\}"]))


def overrides_send_the_run_elsewhere(c):
    (c["run"] / "overrides.yaml").write_text(yaml.safe_dump([f"runs_dir={c['outside'] / 'runs'}", "trainer.epochs=1"]))


def a_download_into_a_place_the_file_names(c):
    edit_config(c["run"] / "config.yaml", lambda cfg: cfg.update(data={
        "_target_": "dlcli.data.images.load_torchvision", "name": "mnist", "root": str(c["outside"] / "data"), "download": True}))


def an_image_folder_and_a_cache_directory_the_file_names(c):
    """The config names an image folder outside (read where it is) and a cache directory outside:
    decoding it writes into neither (issue 33, item 4: 47 MB of .dl-cache in a folder it named)."""
    from image_fixtures import write_image_folder

    pets = write_image_folder(c["outside"] / "pets", per_class=6, sizes=((8, 8),))
    edit_config(c["run"] / "config.yaml", lambda cfg: cfg.update(data={
        "_target_": "dlcli.data.images.load_imagefolder", "root": str(pets), "cache": "memory", "resize": 8,
        "cache_dir": str(c["outside"] / "cache")}))


def json_files_of_other_shapes(c):
    (c["run"] / "summary.json").write_text("[1, 2]")
    (c["run"] / "split.json").write_text("[1]")
    (c["run"] / "preprocessing.json").write_text('{"format": 1, "kind": "array", "task": "classification", "input_shape": [2], '
                                                  '"features": {"kind": "array", "count": 1000000000000}}')


def summary_fields_of_other_types(c):
    summary = c["run"] / "summary.json"
    content = __import__("json").loads(summary.read_text())
    content.update(test="x", diagnosis=[1, 2], monitor=["val_loss"], best_epoch="3", status="interrupted")
    summary.write_text(__import__("json").dumps(content))


def mlflow_store_in_a_folder_above(c):
    """A store in a folder that holds the run (any, up to /) rather than in its runs directory: a
    resume would create the database and an mlartifacts/ there."""
    def change(cfg):
        cfg["logger"] = {"mlflow": {"_target_": "dlcli.tracking.mlflow.MLflowLogger", "experiment": None, "parent_run_id": None,
                                    "tracking_uri": f"sqlite:///{c['above']}/above.db"}}
    edit_config(c["run"] / "config.yaml", change)


def an_optimizer_that_needs_a_closure(c):
    edit_config(c["run"] / "config.yaml", lambda cfg: cfg["optim"].update(_target_="torch.optim.LBFGS"))


def a_program_as_a_target(c):
    edit_config(c["run"] / "config.yaml", lambda cfg: cfg["optim"].update(_target_="dlcli.__main__.X"))


RUN_PAYLOADS = [code_in_data_target, hub_load_of_a_local_hubconf, os_system_as_a_callback, environment_interpolation,
                yaml_alias_bomb, hostile_overrides_file, lock_is_a_link_out, temporary_names_are_links_out,
                log_is_a_link_out, checkpoints_folder_is_a_link_out, runs_and_mlflow_store_elsewhere,
                dl_class_that_writes_where_it_is_told, a_logger_class_elsewhere_with_a_store_outside,
                overrides_reach_hydra_searchpath, overrides_with_an_escaped_interpolation, overrides_send_the_run_elsewhere,
                a_download_into_a_place_the_file_names, an_image_folder_and_a_cache_directory_the_file_names,
                json_files_of_other_shapes, summary_fields_of_other_types,
                an_optimizer_that_needs_a_closure, a_program_as_a_target, mlflow_store_in_a_folder_above]


def sweep_override_runs_code(c):
    path = c["sweep"] / "sweep.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["overrides"] += ["+callbacks.p._target_=torch.fx.graph_module._exec_with_source",
                              f"+callbacks.p.src='import os; os.system(\"touch {c['marker']}\")'", "+callbacks.p.globals={}"]
    path.write_text(yaml.safe_dump(settings))
    failed = c["sweep"] / "trials" / "001" / "summary.json"  # so that a trial runs again on --resume
    failed.write_text(failed.read_text().replace('"completed"', '"failed"'))


def sweep_trials_is_a_link_out(c):
    shutil.rmtree(c["sweep"] / "trials")
    (c["sweep"] / "trials").symlink_to(c["outside"])


def sweep_study_is_a_link_out(c):
    (c["sweep"] / "study.journal").unlink()
    (c["sweep"] / "study.journal").symlink_to(c["outside"] / "victim")


def sweep_environment_interpolation(c):
    path = c["sweep"] / "sweep.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["overrides"].append("name=${oc.env:HOME}")
    path.write_text(yaml.safe_dump(settings))


def sweep_yaml_bomb(c):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 11)]
    with (c["sweep"] / "sweep.yaml").open("a") as file:
        file.write("\n".join(lines) + "\n")


def sweep_logs_to_a_store_outside(c):
    path = c["sweep"] / "sweep.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["overrides"] += ["logger=mlflow", f"logger.mlflow.tracking_uri=sqlite:///{c['outside']}/evil.db"]
    path.write_text(yaml.safe_dump(settings))
    failed = c["sweep"] / "trials" / "001" / "summary.json"
    failed.write_text(failed.read_text().replace('"completed"', '"failed"'))


def sweep_space_changed_under_its_study(c):
    path = c["sweep"] / "sweep.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["overrides"] = [o.replace("optim.lr=0.1,0.01", "optim.lr=0.1,0.01,0.5") for o in settings["overrides"]]
    path.write_text(yaml.safe_dump(settings))
    failed = c["sweep"] / "trials" / "001" / "summary.json"
    failed.write_text(failed.read_text().replace('"completed"', '"failed"'))


def a_download_the_sweep_names(c):
    """sweep.yaml and best.yaml choose MNIST with data.root outside and data.download=true: a resume,
    or a run from best.yaml, would download there (creating MNIST/raw/ even without a network)."""
    data = ["data=mnist", f"data.root={c['outside'] / 'data'}", "data.download=true"]
    for name in ("sweep.yaml", "best.yaml"):
        path = c["sweep"] / name
        settings = yaml.safe_load(path.read_text())
        settings["overrides"] = [o for o in settings["overrides"] if not o.startswith("data")] + data
        path.write_text(yaml.safe_dump(settings))
    failed = c["sweep"] / "trials" / "001" / "summary.json"
    failed.write_text(failed.read_text().replace('"completed"', '"failed"'))


def sweep_composes_from_a_config_dir_it_names(c):
    """sweep.yaml's config_dirs names a folder of options (one of them downloads into a folder
    outside), and its overrides choose that option: a file choosing where configs are read from."""
    options = c["sweep"] / "options" / "data"
    options.mkdir(parents=True)
    (options / "fetch.yaml").write_text(yaml.safe_dump({"_target_": "dlcli.data.images.load_torchvision", "name": "mnist",
                                                        "root": str(c["outside"] / "data"), "download": True}))
    path = c["sweep"] / "sweep.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["overrides"] = [o for o in settings["overrides"] if not o.startswith("data")] + ["data=fetch"]
    settings["config_dirs"] = [str(c["sweep"] / "options")]
    path.write_text(yaml.safe_dump(settings))
    failed = c["sweep"] / "trials" / "001" / "summary.json"
    failed.write_text(failed.read_text().replace('"completed"', '"failed"'))


SWEEP_PAYLOADS = [sweep_override_runs_code, sweep_trials_is_a_link_out, sweep_study_is_a_link_out,
                  sweep_environment_interpolation, sweep_yaml_bomb, sweep_logs_to_a_store_outside,
                  sweep_space_changed_under_its_study, a_download_the_sweep_names, sweep_composes_from_a_config_dir_it_names]


# -- a sweep.yaml that vouches for the classes it builds (issue 33 item 17) ---------------------------

def sweep_yaml_vouches_for_its_own_targets(c):
    """sweep.yaml records the classes its own command built on the user's word (typed_targets):
    a forged record naming the payload as "typed" must trust nothing."""
    sweep_override_runs_code(c)
    path = c["sweep"] / "sweep.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["typed_targets"] = {"torch.fx.graph_module._exec_with_source": "callbacks.p"}
    path.write_text(yaml.safe_dump(settings))


SWEEP_PAYLOADS += [sweep_yaml_vouches_for_its_own_targets]


# -- commands: each opens a received directory --------------------------------------------------------

def interrupted(c):
    summary = c["run"] / "summary.json"
    summary.write_text(summary.read_text().replace('"completed"', '"interrupted"'))


RUN_COMMANDS = {
    "eval": lambda c: ["eval", str(c["run"])],
    "predict": lambda c: ["predict", str(c["run"]), "new.csv"],
    "export": lambda c: ["export", str(c["run"]), "--format", "torchscript"],
    "inspect": lambda c: ["inspect", str(c["run"])],
    "diagnose": lambda c: ["diagnose", str(c["run"])],
    "runs": lambda c: ["runs", str(c["run"].parent)],
    "runs diff": lambda c: ["runs", "diff", str(c["run"]), str(c["run"].with_name("pristine"))],  # the hostile copy against the pristine one
    "train resume=": lambda c: (interrupted(c), ["train", f"resume={c['run']}"])[1],
    "train resume= longer": lambda c: ["train", f"resume={c['run']}", "trainer.epochs=3"],
    "train refit=": lambda c: ["train", f"refit={c['run']}"],
    "train --overrides-file": lambda c: ["train", "--overrides-file", str(c["run"] / "overrides.yaml"), "data=csv",
                                         "data.path=table.csv", "data.target=label", "trainer.epochs=1"],
}
SWEEP_COMMANDS = {
    "sweep --resume": lambda c: ["sweep", "grid", "--resume", str(c["sweep"])],
    "runs": lambda c: ["runs", str(c["sweep"])],
    "train --overrides-file best.yaml": lambda c: ["train", "--overrides-file", str(c["sweep"] / "best.yaml"), "trainer.epochs=1"],
}


def snapshot(folder: Path) -> dict:
    """Every file's bytes and every folder (an empty MNIST/raw/ that a download began counts)."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


STORES = ("above.db", "mlflow.db", "mlartifacts", "mlruns")  # what an MLflow store leaves beside itself


def check_case(c, args: list[str]) -> None:
    before = snapshot(c["outside"])
    started = time.perf_counter()
    result = run_cli(*args)
    seconds = time.perf_counter() - started
    where = " ".join(args)
    assert not c["marker"].exists(), f"code ran: {where}"
    assert snapshot(c["outside"]) == before, f"wrote outside the received directory: {where}"
    for folder in (c["above"], c["work"], c["work"] / "received"):  # the folders that hold the received directories
        made = [name for name in STORES if (folder / name).exists()]
        assert not made, f"an MLflow store outside a runs directory: {folder}/{made}: {where}"
    assert result.exit_code in (0, 1, 2), (where, result.output)  # 1: a run that failed, and said so in one line
    assert result.exception is None or isinstance(result.exception, SystemExit), (where, result.output)
    assert "Traceback" not in result.output, (where, result.output)
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (where, result.stderr)
    assert os.environ["HOME"] not in result.stdout, (where, "the environment was read", result.stdout)
    assert seconds < 30, (where, seconds)
    return result


def every_command_against(case, kind: str, payload, commands: dict) -> None:
    """Each command on a fresh copy of the received `kind` ("run" or "sweep") with the payload in it."""
    pristine = case[kind].with_name("pristine")
    shutil.copytree(case[kind], pristine, symlinks=True)
    for command in commands.values():
        shutil.rmtree(case[kind])
        shutil.copytree(pristine, case[kind], symlinks=True)
        payload(case)
        check_case(case, command(case))
        assert (case["outside"] / "001" / "keep").read_text() == "keep me\n"


@pytest.mark.slow
@pytest.mark.parametrize("payload", RUN_PAYLOADS, ids=lambda p: p.__name__)
def test_a_hostile_run_directory_against_every_command(case, payload):
    every_command_against(case, "run", payload, RUN_COMMANDS)


@pytest.mark.slow
@pytest.mark.parametrize("payload", SWEEP_PAYLOADS, ids=lambda p: p.__name__)
def test_a_hostile_sweep_directory_against_every_command(case, payload):
    every_command_against(case, "sweep", payload, SWEEP_COMMANDS)


def test_a_preprocessing_record_is_checked_before_it_is_used(tmp_path):
    """Counts and lists are checked against each other before anything is built from them: a count
    of 10**12 (a 10 TB list of names) is one line, and so is any field of the wrong kind."""
    from dlcli.data.record import check_preprocessing
    from dlcli.errors import UserError

    good = {"format": 1, "kind": "array", "task": "regression", "input_shape": [3], "stored_shape": None,
            "features": {"kind": "array", "count": 3, "divide_by": None, "center": [0, 0, 0], "scale": [1, 1, 1]},
            "id_columns": [], "target": {"name": "y", "classes": None, "scaling": {"mean": 0.0, "std": 1.0, "transform": "log"}}}
    assert check_preprocessing(good, tmp_path / "p.json", 1) is good
    for change in ({"features": {**good["features"], "count": 10**12}}, {"input_shape": [10**6, 10**6]},
                   {"features": {**good["features"], "extra": 1}}, {"target": {"name": "y", "classes": ["a"], "scaling": None}},
                   {"features": {**good["features"], "center": "x"}}, {"format": 99}, {"kind": "pickle"}):
        with pytest.raises(UserError) as info:
            check_preprocessing({**good, **change}, tmp_path / "p.json", 1)
        assert "\n" not in str(info.value)


def test_the_refusals_name_what_is_wrong(case):
    """The one-line refusals say what was refused and how to go on."""
    code_in_data_target(case)
    refused = run_cli("eval", str(case["run"]))
    assert refused.exit_code == 2 and "data._target_=torch.fx.graph_module._exec_with_source" in refused.stderr
    assert "--trust torch.fx.graph_module" in refused.stderr
    shutil.rmtree(case["run"])


def test_a_fifo_in_place_of_a_file_is_refused_not_waited_on(tmp_path):
    """Opening a FIFO for reading waits for a writer for ever: a received file that is one is a
    one-line refusal (the commands check config.yaml is a file first; this is the reader's own guard)."""
    from dlcli.errors import UserError
    from dlcli.trust.received import read_json, read_yaml

    for name, read in (("config.yaml", read_yaml), ("summary.json", read_json)):
        os.mkfifo(tmp_path / name)
        with pytest.raises(UserError, match="is not a regular file"):
            read(tmp_path / name)


def test_a_yaml_bomb_is_refused_within_a_second(case):
    yaml_alias_bomb(case)
    started = time.perf_counter()
    result = run_cli("eval", str(case["run"]))
    assert time.perf_counter() - started < 5
    assert result.exit_code == 2 and "expands to more than" in result.stderr


def test_links_that_stay_inside_are_fine_and_links_out_are_named(case):
    (case["run"] / "notes.txt").write_text("mine\n")
    (case["run"] / "readme").symlink_to("notes.txt")  # inside: harmless
    assert run_cli("eval", str(case["run"])).exit_code == 0
    lock_is_a_link_out(case)
    refused = run_cli("eval", str(case["run"]))
    assert refused.exit_code == 2 and ".lock" in refused.stderr and "leads out of it" in refused.stderr


def test_trust_by_name_admits_dls_own_kinds_and_what_the_user_trusts(case):
    """A config may name torch classes of the kind its place needs (an optimizer under optim) without
    --trust; a function there is refused; a user module needs --trust (or ./conf/trust.yaml)."""
    from dlcli.trust.targets import is_trusted

    assert is_trusted("torch.optim.ASGD", "optim") and is_trusted("torch.optim.lr_scheduler.StepLR", "sched")
    assert is_trusted("torch.nn.CrossEntropyLoss", "loss") and is_trusted("dlcli.models.MLP", "model")
    assert not is_trusted("torch.hub.load", "model") and not is_trusted("torch.optim.ASGD", "model")
    assert not is_trusted("torch.fx.graph_module._exec_with_source", "data")
    assert not is_trusted("os.system", "callbacks.p") and not is_trusted("builtins.eval", "optim")
    assert is_trusted("mypkg.Net", "model", ["mypkg"]) and not is_trusted("mypkgx.Net", "model", ["mypkg"])
    assert is_trusted("mypkg.nets.Net", "model", ["mypkg.nets.Net"])
    # dl's own classes by exact name and place: a logger as a logger, never a callback; none of
    # dl's internal callbacks (they take paths they write to); no private or __main__ names
    assert is_trusted("dlcli.tracking.mlflow.MLflowLogger", "logger.mlflow")
    assert not is_trusted("dlcli.tracking.mlflow.MLflowLogger", "callbacks.x")
    assert not is_trusted("dlcli.engine.metrics_csv.MetricsCsv", "callbacks.x")
    assert not is_trusted("dlcli.__main__.X", "optim") and not is_trusted("torch.optim._functional.adam", "optim")
    assert is_trusted("torchvision.models.ResNet", "model") and not is_trusted("torchvision.models.get_model", "model")


@pytest.mark.slow  # trains, resumes and imports mlflow
def test_a_copied_run_with_mlflow_logs_nothing_outside_on_resume(tmp_path, monkeypatch):
    """The run and its MLflow store are copied elsewhere; its MLflow run keeps artifacts at the
    original place. Resume trains on, says MLflow is off and why, and writes nothing there."""
    pytest.importorskip("mlflow")
    original = tmp_path / "original"
    original.mkdir()
    monkeypatch.chdir(original)
    assert run_cli("train", "data=iris", "trainer.epochs=2", "trainer.plots=false", "trainer.progress=false",
                   "logger=mlflow").exit_code == 0
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    artifacts_before = snapshot(original / "runs")
    run = next((copy / "runs" / "train").iterdir())
    summary = run / "summary.json"
    summary.write_text(summary.read_text().replace('"completed"', '"interrupted"'))
    monkeypatch.chdir(copy)
    result = run_cli("train", f"resume={run}")
    assert result.exit_code == 0, result.output
    assert "logger=mlflow" in result.stderr and "copied from elsewhere" in result.stderr
    assert read(summary)["status"] == "completed" and "mlflow" in read(summary)["logger_failures"]
    assert snapshot(original / "runs") == artifacts_before


# -- run `dl` inside the received directory ---------------------------------------------------------
# A received directory must not vouch for itself when `dl` runs inside it: its ./conf (trust.yaml,
# the targets its files name, its options on the search path) and its modules count for nothing
# in a run, a sweep, a k-fold parent, anything inside them, and any folder the command opens.

def vouching_for_itself(opened: Path, cwd: Path, marker: Path) -> None:
    """`opened`'s files name code (data._target_ runs source text that touches `marker`); the
    working directory `cwd` carries what would vouch for it: conf/trust.yaml trusting torch.fx,
    conf/data/evil.yaml holding the same target (what the overrides, sweep.yaml and best.yaml
    choose with data=evil)."""
    payload = {"_target_": "torch.fx.graph_module._exec_with_source", "src": f"import os; os.system('touch {marker}')",
               "globals": {}}
    (cwd / "conf" / "data").mkdir(parents=True, exist_ok=True)
    (cwd / "conf" / "trust.yaml").write_text(yaml.safe_dump({"trust": ["torch.fx", "os"]}))
    (cwd / "conf" / "data" / "evil.yaml").write_text(yaml.safe_dump(payload))
    for config in opened.rglob("config.yaml"):
        edit_config(config, lambda cfg: cfg.update(data=payload))
    for overrides in opened.rglob("overrides.yaml"):
        overrides.write_text(yaml.safe_dump(["data=evil"]))
    for name in ("sweep.yaml", "best.yaml"):
        if (opened / name).is_file():
            settings = yaml.safe_load((opened / name).read_text())
            settings["overrides"] = [o for o in settings["overrides"] if not o.startswith("data")] + ["data=evil"]
            (opened / name).write_text(yaml.safe_dump(settings))
    if (opened / "trials" / "001").is_dir():  # so that a resumed sweep has a trial to run
        failed = opened / "trials" / "001" / "summary.json"
        failed.write_text(failed.read_text().replace('"completed"', '"failed"'))


def interrupted_here(directory: Path) -> None:
    summary = directory / "summary.json"
    summary.write_text(summary.read_text().replace('"completed"', '"interrupted"'))


# command -> (its arguments given the opened directory as the working directory names it, the exit code)
RUN_OPENERS = {
    "eval": (lambda d, c: ["eval", d], 2),
    "predict": (lambda d, c: ["predict", d, str(c["work"] / "new.csv"), "--output", str(c["work"] / "p.csv")], 2),
    "export": (lambda d, c: ["export", d, "--format", "torchscript", "--output", str(c["work"] / "m.pt")], 2),
    "inspect": (lambda d, c: ["inspect", d], 2),
    "diagnose": (lambda d, c: ["diagnose", d], 0),  # reads the run as plain data, builds nothing: works
    "train resume=": (lambda d, c: ["train", f"resume={d}"], 2),
    "train refit=": (lambda d, c: ["train", f"refit={d}"], 2),
    "train --overrides-file": (lambda d, c: ["train", "--overrides-file", str(Path(d) / "overrides.yaml")], 2),
}
SWEEP_OPENERS = {
    "sweep --resume": (lambda d, c: ["sweep", "grid", "--resume", d], 2),
    "train refit=": (lambda d, c: ["train", f"refit={d}"], 2),
    "train --overrides-file best.yaml": (lambda d, c: ["train", "--overrides-file", str(Path(d) / "best.yaml")], 2),
}
KFOLD_OPENERS = {
    "predict": RUN_OPENERS["predict"],
    "train resume=": RUN_OPENERS["train resume="],
    "train refit=": RUN_OPENERS["train refit="],
    "train --overrides-file": RUN_OPENERS["train --overrides-file"],
}
# (where: which received directory, the one the command opens inside it, the working directory inside that)
INSIDE = [
    ("a run", "run", "", "", RUN_OPENERS),
    ("a folder inside a run", "run", "", "checkpoints", RUN_OPENERS),
    ("a trial inside a sweep", "sweep", "trials/000", "", RUN_OPENERS),
    ("a sweep", "sweep", "", "", SWEEP_OPENERS),
    ("a sweep, from inside its trial", "sweep", "", "trials/000", SWEEP_OPENERS),
    ("a fold inside a k-fold parent", "kfold", "fold-1", "", RUN_OPENERS),
    ("a k-fold parent", "kfold", "", "", KFOLD_OPENERS),
    ("a k-fold parent, from inside its fold", "kfold", "", "fold-1", KFOLD_OPENERS),
]
INSIDE_CASES = [(where, kind, opened, cwd, command, *openers[command])
                for where, kind, opened, cwd, openers in INSIDE for command in openers]


def run_inside(case, kind: str, opened: str, cwd: str, command: str, args, monkeypatch) -> list[str]:
    """Make the received directory vouch for itself, `cd` into it: the command's arguments."""
    opened_dir = case[kind] / opened
    here = opened_dir / cwd
    vouching_for_itself(opened_dir, here, case["marker"])
    if command == "train resume=":
        interrupted_here(opened_dir)  # so that there is something to resume
    monkeypatch.chdir(here)
    return args(os.path.relpath(opened_dir, here), case)


@pytest.mark.slow
@pytest.mark.parametrize("where, kind, opened, cwd, command, args, code", INSIDE_CASES,
                         ids=[f"{case[0]}: {case[4]}" for case in INSIDE_CASES])
def test_dl_inside_a_received_directory_trusts_nothing_it_carries(case, monkeypatch, where, kind, opened, cwd, command, args, code):
    """`cd` into the received directory (or a folder inside it) and open it: what it carries in its
    own conf/ neither trusts its targets nor composes its options; the command refuses in one line
    (diagnose, which builds nothing, just works) and nothing runs."""
    result = check_case(case, run_inside(case, kind, opened, cwd, command, args, monkeypatch))
    assert result.exit_code == code, (where, command, result.output)
    if code == 2:
        assert "not trusted" in result.stderr or "unknown data 'evil'" in result.stderr, (where, command, result.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("kind, command", [("run", "eval"), ("run", "train --overrides-file"), ("sweep", "sweep --resume")])
def test_the_same_conf_in_a_folder_of_the_users_own_is_trusted(case, monkeypatch, kind, command):
    """The control: the very payload, with the received directory's rule switched off, runs (the
    marker appears). So the table above is refused by the rule, not by a payload that could not run."""
    import dlcli.trust.workdir

    monkeypatch.setattr(dlcli.trust.workdir, "received_here", lambda: None)
    args, _ = (SWEEP_OPENERS if kind == "sweep" else RUN_OPENERS)[command]
    run_cli(*run_inside(case, kind, "", "", command, args, monkeypatch))
    assert case["marker"].exists(), "the payload did not run even where it is trusted: the table proves nothing"


@pytest.mark.slow
def test_a_received_directory_is_not_on_the_import_path(case, tmp_path):
    """A `hydra_plugins/` package in the working directory runs when Hydra starts if the directory
    is on the import path: `dl` puts the working directory there for the user's own modules, never
    a received one. (A real `dl` process: the import path and Hydra's plugins are per process.)"""
    import subprocess
    import sys

    def plant(folder: Path, marker: Path) -> None:
        (folder / "hydra_plugins").mkdir()
        (folder / "hydra_plugins" / "planted.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")

    dl = [sys.executable, "-P", "-c", "from dlcli.cli import main; main()"]  # as the `dl` script starts (-P: no '' first)
    plant(case["run"], case["marker"])
    refused = subprocess.run([*dl, "train", "resume=."], cwd=case["run"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "already completed" in refused.stderr, refused.stderr
    assert not case["marker"].exists(), "a received directory's hydra_plugins ran"
    own, mark = tmp_path / "mine", tmp_path / "MINE"
    own.mkdir()
    plant(own, mark)
    subprocess.run([*dl, "train", "--cfg"], cwd=own, capture_output=True, text=True, timeout=120)
    assert mark.exists(), "the user's own working directory is on the import path (their modules, their plugins)"


def test_the_folder_of_an_overrides_file_is_received_whatever_it_holds(case, monkeypatch):
    """A folder sent with an overrides file and a conf/ beside it, and none of dl's files (nothing
    marks it as dl's): `cd` there and `dl train --overrides-file best.yaml` composes nothing from
    that conf/, and says why in its one line."""
    sent = case["work"] / "sent"
    (sent / "conf" / "data").mkdir(parents=True)
    (sent / "conf" / "data" / "evil.yaml").write_text(yaml.safe_dump(
        {"_target_": "torch.fx.graph_module._exec_with_source", "src": f"import os; os.system('touch {case['marker']}')",
         "globals": {}}))
    (sent / "best.yaml").write_text(yaml.safe_dump({"overrides": ["data=evil"]}))
    monkeypatch.chdir(sent)
    result = check_case(case, ["train", "--overrides-file", "best.yaml"])
    assert result.exit_code == 2 and "unknown data 'evil'" in result.stderr
    assert "./conf is not read here" in result.stderr and "opened by this command" in result.stderr


def test_what_makes_a_directory_received(case, monkeypatch, tmp_path):
    """dlcli.trust.workdir's rule, directly: dl's directories (by the files dl writes first, two of them,
    so that a project's lone config.yaml or sweep.yaml is not taken for one), anything inside them,
    and a folder the command opens (whatever it holds)."""
    from dlcli.trust import workdir

    assert workdir.made_by_dl(case["run"]) == "a run directory"
    assert workdir.made_by_dl(case["sweep"]) == "a sweep directory"
    assert workdir.made_by_dl(case["kfold"]) == "a k-fold run directory"
    assert workdir.made_by_dl(case["sweep"] / "trials" / "000") == "a run directory"
    project = tmp_path / "project"
    (project / "conf").mkdir(parents=True)
    (project / "config.yaml").write_text("a: 1\n")
    (project / "sweep.yaml").write_text("method: bayes\n")  # a W&B sweep file, say
    assert workdir.made_by_dl(project) is None
    monkeypatch.chdir(project)
    assert workdir.received_here() is None and workdir.own_conf() == project / "conf"
    monkeypatch.chdir(case["run"] / "checkpoints")
    assert "a run directory dl made" in workdir.received_here() and workdir.own_conf() is None
    plain = tmp_path / "sent" / "inner"  # no marker files at all: received because the command opens it
    plain.mkdir(parents=True)
    (plain / "conf").mkdir()
    monkeypatch.chdir(plain)
    assert workdir.own_conf() == plain / "conf"
    workdir.opening(plain.parent / "nothing-there.yaml")  # a path the command cannot read opens nothing
    assert workdir.own_conf() == plain / "conf"
    (plain.parent / "best.yaml").write_text("overrides: []\n")
    workdir.opening(plain.parent / "best.yaml")
    assert "opened by this command" in workdir.received_here() and workdir.own_conf() is None


@pytest.mark.slow
def test_an_overrides_file_writes_into_no_folder_it_names(case, monkeypatch):
    """An --overrides-file that names data.cache_dir (and data.root) for an image folder: the folder
    is read where it is, its decoded cache goes to the user's own cache directory, never to the
    folder the file names; typed by the user, data.cache_dir is used."""
    from image_fixtures import write_image_folder

    pets = write_image_folder(case["work"] / "pets", per_class=8, sizes=((12, 12),))
    named = case["outside"] / "cache"
    (case["work"] / "sent.yaml").write_text(yaml.safe_dump(
        ["data=imagefolder", f"data.root={pets}", "data.cache=memory", f"data.cache_dir={named}", "model=lenet"]))
    quick = ["trainer.epochs=1", "trainer.plots=false", "trainer.progress=false", "-q"]
    check_case(case, ["train", "--overrides-file", str(case["work"] / "sent.yaml"), *quick])
    assert not named.exists() and any(Path(os.environ["XDG_CACHE_HOME"]).rglob("*.bin")), "the cache went where the file says"
    mine = case["work"] / "my-cache"
    assert run_cli("train", "--overrides-file", str(case["work"] / "sent.yaml"), f"data.cache_dir={mine}", *quick).exit_code == 0
    assert any(mine.rglob("*.bin")), "a data.cache_dir the user typed is where the cache goes"


# -- the MLflow store a received config may name ----------------------------------------------------

def test_a_local_mlflow_store_lies_exactly_in_the_runs_directory_that_holds_the_run(tmp_path):
    """Beside the runs directory means in it: not in any folder above the run (up to /), not inside
    a run; a trial's and a fold's runs directory is their sweep's or parent's; a run that is not
    where dl puts runs has none (and logs nowhere)."""
    from dlcli.tracking.mlflow import check_store_beside, default_tracking_uri

    runs = tmp_path / "project" / "runs"
    run = runs / "train" / "2026-11-24_10-31-07"
    sweep = runs / "sweeps" / "s" / "2026-11-24_10-31-08"
    for folder in (run, sweep / "trials" / "003" / "fold-2"):
        folder.mkdir(parents=True)
    (sweep / "sweep.yaml").write_text("kind: grid\n")
    home = runs.resolve()
    assert default_tracking_uri(run) == f"sqlite:///{home / 'mlflow.db'}"
    for directory in (run, sweep, sweep / "trials" / "003", sweep / "trials" / "003" / "fold-2"):
        assert check_store_beside(f"sqlite:///{home / 'mlflow.db'}", directory) == home / "mlflow.db"
        assert check_store_beside(f"file://{home / 'mlruns'}", directory) is not None
        assert check_store_beside("http://tracking.example:5000", directory) is None  # a server is not a place here
        for elsewhere in (tmp_path / "project" / "x.db", tmp_path / "x.db", Path("/x.db"), run / "x.db", runs / "train" / "x.db"):
            with pytest.raises(ValueError, match="is not in .*, the runs directory that holds the run"):
                check_store_beside(f"sqlite:///{elsewhere}", directory)
    copied = tmp_path / "Downloads" / "R"  # a run copied to a folder of another name: no runs directory
    copied.mkdir(parents=True)
    for uri in (f"sqlite:///{tmp_path / 'Downloads' / 'mlflow.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"):
        with pytest.raises(ValueError, match="not inside a runs directory"):
            check_store_beside(uri, copied)
    with pytest.raises(ValueError, match="not inside a runs directory"):
        default_tracking_uri(copied)


@pytest.mark.slow
def test_a_resumed_run_creates_its_store_only_in_its_runs_directory(made, tmp_path, monkeypatch):
    """A received run, in a runs directory as dl lays them out, whose config names a store in a
    folder above that runs directory: the resume trains on with MLflow off and creates nothing
    there; a store named in the runs directory itself is created and used."""
    pytest.importorskip("mlflow")
    runs = tmp_path / "project" / "runs"
    run = runs / "sent" / made[1].name
    shutil.copytree(made[1], run)
    shutil.copy(made[0] / "table.csv", tmp_path / "project" / "table.csv")
    monkeypatch.chdir(tmp_path / "project")
    for uri, logged in ((f"sqlite:///{tmp_path}/above.db", False), (f"sqlite:///{runs}/mine.db", True)):
        edit_config(run / "config.yaml", lambda cfg: cfg.update(logger={"mlflow": {
            "_target_": "dlcli.tracking.mlflow.MLflowLogger", "experiment": None, "parent_run_id": None, "tracking_uri": uri}}))
        interrupted_here(run)
        result = run_cli("train", f"resume={run}")
        assert result.exit_code == 0, result.output
        assert ("logger=mlflow failed" not in result.stderr) == logged, result.stderr
        assert (run / "mlflow.json").is_file() == logged
    assert not any((tmp_path / name).exists() for name in ("above.db", "mlartifacts", "mlruns"))
    assert (runs / "mine.db").is_file() and (runs / "mlartifacts").is_dir()


# -- --output onto a link ------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["predict", "export"])
def test_output_onto_a_link_writes_through_to_its_file(case, command):
    """--output naming a link writes the regular file it leads to (through a chain of links too);
    the links stay links. (Replacing them would replace, run as root, `--output /dev/stdout`.)"""
    target = case["outside"] / "kept.out"
    target.write_text("old\n")
    (case["work"] / "middle").symlink_to(target)
    link = case["work"] / "out"
    link.symlink_to(case["work"] / "middle")
    args = (["predict", str(case["run"]), "new.csv"] if command == "predict"
            else ["export", str(case["run"]), "--format", "torchscript"])
    result = run_cli(*args, "--output", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and (case["work"] / "middle").is_symlink()
    assert target.read_bytes() != b"old\n" and link.read_bytes() == target.read_bytes()
    if command == "export":
        assert (case["outside"] / "kept.out.json").is_file()  # the sidecar beside the file written
    assert not [p for p in case["outside"].iterdir() if p.name.startswith(".")], "a temporary file was left"


# -- checkpoints of the wrong shape (issue 33 item 18) ---------------------------------------------------
# A table of damage x command: every command that loads a checkpoint refuses, before using it, in one
# line naming the file and the field; nothing is left `running`, and no new run is started.

def _damage_checkpoints(c, change) -> None:
    import torch

    for name in ("best.pt", "last.pt"):
        path = c["run"] / "checkpoints" / name
        payload = torch.load(path, weights_only=True)
        torch.save(change(payload) or payload, path)


def _first_weight(payload):
    payload["model"][next(iter(payload["model"]))] = "x"


def _tensor(*shape, dtype="uint8"):
    import torch

    return torch.zeros(*shape, dtype=getattr(torch, dtype))


# name -> (what is done to best.pt and last.pt, words the refusal holds)
CHECKPOINT_DAMAGE = {
    "not a mapping": (lambda p: [1], "not a dl checkpoint"),
    "format unknown": (lambda p: p.update(format=99), "format=99"),
    "state missing": (lambda p: p.pop("state") and None, "state is missing"),
    "state a string": (lambda p: p.update(state="x"), "state is x"),
    "epoch a string": (lambda p: p["state"].update(epoch="abc"), "state.epoch=abc"),
    "epoch negative": (lambda p: p["state"].update(epoch=-5), "state.epoch=-5"),
    "epoch a tensor": (lambda p: p["state"].update(epoch=_tensor(3)), "state.epoch is a tensor"),
    "steps a string": (lambda p: p["state"].update(steps="abc"), "state.steps=abc"),
    "steps negative": (lambda p: p["state"].update(steps=-5), "state.steps=-5"),
    "best epoch after the last": (lambda p: p["state"].update(best_epoch=p["state"]["epoch"] + 7), "state.best_epoch="),
    "model a string": (lambda p: p.update(model="x"), "model is x"),
    "a weight a string": (_first_weight, "is x (of type str), not a tensor"),
    "optimizer a number": (lambda p: p.update(optimizer=5), "optimizer is 5"),
    "rng missing": (lambda p: p.pop("rng") and None, "rng is missing"),
    "rng of floats": (lambda p: p["rng"].update(torch=_tensor(3, dtype="float32")), "rng.torch is a torch.float32 tensor"),
    "rng of another size": (lambda p: p["rng"].update(shuffle=_tensor(10)), "rng.shuffle holds 10 bytes"),
    "cuda rng a string": (lambda p: p["rng"].update(cuda="x"), "rng.cuda is x"),
}

# well formed, but not fitting the run's own optimizer or schedule: only a resume loads those parts
def _optimizer_buffers_of_another_shape(p):
    for values in p["optimizer"]["state"].values():
        values.update({k: _tensor(7, dtype="float32") for k, v in values.items() if getattr(v, "dim", lambda: 0)()})


RESUME_DAMAGE = {
    "optimizer buffers of another shape": (_optimizer_buffers_of_another_shape, "its optimizer does not fit"),
    "optimizer groups of another number": (lambda p: p["optimizer"].update(param_groups=p["optimizer"]["param_groups"] * 2),
                                           "its optimizer does not fit"),
    "schedule field of another kind": (lambda p: p["scheduler"].update(last_epoch="x"), "its scheduler does not fit"),
    "rng bytes that are no generator's state": (lambda p: p["rng"].update(torch=_tensor(p["rng"]["torch"].numel())),
                                                "its rng.torch does not fit"),
}

CHECKPOINT_COMMANDS = {
    "eval": lambda c: ["eval", str(c["run"])],
    "inspect": lambda c: ["inspect", str(c["run"])],
    "predict": lambda c: ["predict", str(c["run"]), "new.csv"],
    "export": lambda c: ["export", str(c["run"]), "--format", "torchscript"],
    "train resume=": lambda c: (interrupted(c), ["train", f"resume={c['run']}"])[1],
    "train resume= longer": lambda c: ["train", f"resume={c['run']}", "trainer.epochs=3"],
}


def _refused_checkpoint(case, args, words) -> None:
    result = check_case(case, args)
    where = " ".join(args)
    assert result.exit_code == 2, (where, result.output)
    assert words in result.stderr and "checkpoints/" in result.stderr and ".pt" in result.stderr, (where, result.stderr)
    assert read(case["run"] / "summary.json")["status"] != "running", where
    assert not (case["work"] / "runs").exists(), (where, "a new run was started")


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(CHECKPOINT_DAMAGE), ids=str)
def test_a_checkpoint_of_the_wrong_shape_against_every_command(case, damage):
    change, words = CHECKPOINT_DAMAGE[damage]
    pristine = case["run"].with_name("pristine")
    shutil.copytree(case["run"], pristine)
    for command in CHECKPOINT_COMMANDS.values():
        shutil.rmtree(case["run"])
        shutil.copytree(pristine, case["run"])
        _damage_checkpoints(case, change)
        _refused_checkpoint(case, command(case), words)


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(RESUME_DAMAGE), ids=str)
def test_a_checkpoint_that_does_not_fit_its_run_is_refused_by_resume(case, damage):
    """Parts only a resume loads: the other commands use the weights and work; both resumes refuse
    before training (and before a longer run's new directory exists)."""
    change, words = RESUME_DAMAGE[damage]
    pristine = case["run"].with_name("pristine")
    shutil.copytree(case["run"], pristine)
    for name, command in CHECKPOINT_COMMANDS.items():
        shutil.rmtree(case["run"])
        shutil.copytree(pristine, case["run"])
        _damage_checkpoints(case, change)
        if name.startswith("train"):
            _refused_checkpoint(case, command(case), words)
        else:
            assert check_case(case, command(case)).exit_code == 0, name


def test_every_checkpoint_damage_is_one_line_naming_the_field(tmp_path):
    """The check itself, without a command: fast, and the same table."""
    import torch

    from dlcli.engine.checkpoint import load_checkpoint
    from dlcli.errors import UserError

    good = {"format": 2, "model": {"w": torch.zeros(2, 2)}, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
            "scheduler": {}, "scaler": {}, "rng": {"torch": torch.get_rng_state(), "shuffle": torch.get_rng_state(), "cuda": []},
            "state": {"epoch": 3, "best_value": 0.5, "best_epoch": 2, "epochs_without_improvement": 1, "stopped_early": False}}
    path = tmp_path / "last.pt"
    torch.save(good, path)
    assert load_checkpoint(path)["state"]["epoch"] == 3
    for name, (change, words) in CHECKPOINT_DAMAGE.items():
        payload = __import__("copy").deepcopy(good)
        torch.save(change(payload) or payload, path)
        with pytest.raises(UserError) as refused:
            load_checkpoint(path)
        message = str(refused.value)
        assert words in message and str(path) in message and "\n" not in message, (name, message)


@pytest.mark.pictures  # the drawing process is what is tested
@pytest.mark.slow  # starts the drawing process
def test_the_picture_drawer_started_inside_a_received_run_runs_nothing_of_it(case, monkeypatch):
    """`cd RUN && dl eval .` draws confusion-test.png in a process of its own, started in the run:
    a matplotlib.py (or numpy.py) planted there must not be what it imports."""
    from dlcli.tracking.plots import wait_for_pictures

    for name in ("matplotlib", "numpy"):
        (case["run"] / f"{name}.py").write_text(f"open({str(case['marker'])!r}, 'w').write('{name}')\n")
    (case["run"] / "confusion-test.png").unlink(missing_ok=True)
    shutil.copy(case["work"] / "table.csv", case["run"] / "table.csv")  # sent with its data (data.path=table.csv)
    monkeypatch.chdir(case["run"])
    evaluated = run_cli("eval", ".", "-q")
    assert evaluated.exit_code == 0, evaluated.output
    wait_for_pictures()
    assert (case["run"] / "confusion-test.png").exists() and not case["marker"].exists()


@pytest.mark.slow  # starts a fork server
def test_the_processes_dl_starts_inside_a_received_run_import_nothing_of_it(case, monkeypatch):
    """`cd RUN && dl train resume=.` on several processes starts multiprocessing's fork server as
    `python -c 'from multiprocessing.forkserver import main ...'` in RUN: a planted multiprocessing
    package there ran in it. dl's entry point keeps the working directory off its children's import
    path (PYTHONSAFEPATH; Python 3.11 and later)."""
    import multiprocessing
    import sys

    from dlcli.system import fork_server
    from dlcli.trust.workdir import children_import_nothing_from_here

    if sys.version_info < (3, 11):
        pytest.skip("PYTHONSAFEPATH is read from Python 3.11")
    (case["run"] / "multiprocessing").mkdir()
    (case["run"] / "multiprocessing" / "__init__.py").write_text(f"open({str(case['marker'])!r}, 'w').write('ran')\n")
    monkeypatch.chdir(case["run"])
    # recorded, so that it is put back as it was when the test ends (a delenv of an unset variable
    # records nothing, and the "1" leaked into every later test of this worker: a script run by
    # path then no longer found the modules beside it)
    monkeypatch.setenv("PYTHONSAFEPATH", "")
    children_import_nothing_from_here()
    fork_server.ready_server(("json",))
    with multiprocessing.get_context("forkserver").Pool(1) as pool:  # a worker forked from it: its imports are done
        assert pool.apply(os.getcwd) == str(case["run"])
    assert not case["marker"].exists()
