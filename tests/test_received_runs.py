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
    finally:
        os.chdir(previous)
    run = next((home / "runs" / "sent").iterdir())
    sweep = next((home / "runs" / "sweeps" / "sent").iterdir())
    return home, run, sweep


@pytest.fixture
def case(made, tmp_path, monkeypatch):
    """A fresh copy of the received directories in an empty working directory, plus a folder
    outside them holding files a hostile link may point at."""
    home, run, sweep = made
    work = tmp_path / "work"
    work.mkdir()
    for name in ("table.csv", "new.csv"):
        shutil.copy(home / name, work / name)
    received_run, received_sweep = work / "received" / "run", work / "received" / "sweep"
    shutil.copytree(run, received_run, symlinks=True)
    shutil.copytree(sweep, received_sweep, symlinks=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("precious\n")
    (outside / "001").mkdir()
    (outside / "001" / "keep").write_text("keep me\n")
    monkeypatch.chdir(work)
    return {"run": received_run, "sweep": received_sweep, "outside": outside, "marker": tmp_path / "MARK", "work": work}


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


def an_optimizer_that_needs_a_closure(c):
    edit_config(c["run"] / "config.yaml", lambda cfg: cfg["optim"].update(_target_="torch.optim.LBFGS"))


def a_program_as_a_target(c):
    edit_config(c["run"] / "config.yaml", lambda cfg: cfg["optim"].update(_target_="dlcli.__main__.X"))


RUN_PAYLOADS = [code_in_data_target, hub_load_of_a_local_hubconf, os_system_as_a_callback, environment_interpolation,
                yaml_alias_bomb, hostile_overrides_file, lock_is_a_link_out, temporary_names_are_links_out,
                log_is_a_link_out, checkpoints_folder_is_a_link_out, runs_and_mlflow_store_elsewhere,
                dl_class_that_writes_where_it_is_told, a_logger_class_elsewhere_with_a_store_outside,
                overrides_reach_hydra_searchpath, overrides_with_an_escaped_interpolation, overrides_send_the_run_elsewhere,
                a_download_into_a_place_the_file_names, json_files_of_other_shapes, summary_fields_of_other_types,
                an_optimizer_that_needs_a_closure, a_program_as_a_target]


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


SWEEP_PAYLOADS = [sweep_override_runs_code, sweep_trials_is_a_link_out, sweep_study_is_a_link_out,
                  sweep_environment_interpolation, sweep_yaml_bomb, sweep_logs_to_a_store_outside,
                  sweep_space_changed_under_its_study]


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
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_case(c, args: list[str]) -> None:
    before = snapshot(c["outside"])
    started = time.perf_counter()
    result = run_cli(*args)
    seconds = time.perf_counter() - started
    where = " ".join(args)
    assert not c["marker"].exists(), f"code ran: {where}"
    assert snapshot(c["outside"]) == before, f"wrote outside the received directory: {where}"
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
    from dlcli.trust import is_trusted

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
