"""Settings are checked in one pass before runs/ is touched and never again; each component
group's own settings are declared once (dlcli.config.own_settings.GROUPS); loggers are built once."""

from collections import Counter

import pytest
from omegaconf import OmegaConf
from torch import nn

from conftest import run_cli
from dlcli.config import build
from dlcli.config.compose import compose
from dlcli.config.own_settings import GROUPS, IMAGE_ONLY_KEYS, OWN_SETTINGS, TABLE_ONLY_KEYS
from dlcli.config.schema import SWEEP_KINDS
from dlcli.engine.optim import build_optimizer
from dlcli.errors import UserError
from dlcli.models import build_model
from dlcli.rundir.directory import best_trial
from dlcli.sweep.kinds import KINDS
from dlcli.tracking import build_loggers
from dlcli.tracking.tensorboard import TensorBoardLogger


@pytest.fixture
def checks(monkeypatch) -> Counter:
    """How many times each group's settings are checked (every check goes through prepare_call)."""
    counted, real = Counter(), build.prepare_call

    def counting(node, group, *args, **kwargs):
        counted[group] += 1
        return real(node, group, *args, **kwargs)

    monkeypatch.setattr(build, "prepare_call", counting)
    return counted


def test_one_train_checks_each_component_group_once_and_builds_its_logger_once(workdir, checks, monkeypatch):
    built, real_init = [], TensorBoardLogger.__init__
    monkeypatch.setattr(TensorBoardLogger, "__init__", lambda self, *a, **k: (built.append(self), real_init(self, *a, **k))[1])
    result = run_cli("train", "data=iris", "trainer.epochs=1", "sched=onecycle", "loss=cross_entropy", "logger=tensorboard",
                     "trainer.plots=false", "-q")
    assert result.exit_code == 0, result.output
    # one-cycle's steps_per_epoch and max_lr are auto: filled in by the run, never checked as given
    assert {group: checks[group] for group in GROUPS} == dict.fromkeys(GROUPS, 1)
    assert checks["logger.tensorboard"] == 1  # checked with the rest of the config, not again as it is built
    assert len(built) == 1  # built once for the run


def test_a_component_built_from_python_is_checked_there_and_once(checks):
    with pytest.raises(UserError, match=r"optim\.lr=-1"):
        build_optimizer(OmegaConf.create({"_target_": "torch.optim.SGD", "lr": -1.0}), nn.Linear(2, 2))
    with pytest.raises(UserError, match=r"optim\.head_lr=0"):  # a setting dl reads itself, from the table
        build_optimizer(OmegaConf.create({"_target_": "torch.optim.SGD", "lr": 0.1, "head_lr": 0}), nn.Linear(2, 2))
    checks.clear()
    build_model(compose(["model.hidden=[8]"]).model, (64,), 10)  # counted on the meta device, then built
    assert checks["model"] == 1


def test_the_settings_dl_reads_itself_never_reach_the_class():
    cfg = compose(["data=iris", "data.standardize=false", "optim.head_lr=null", "sched=step", "+sched.interval=epoch"])
    for group in ("data", "model", "optim", "sched"):
        runtime = dict.fromkeys(GROUPS[group].runtime)
        _, kwargs = build.prepare_call(cfg[group], group, {"seed": 0} if group == "data" else None, runtime)
        assert not set(kwargs) & set(OWN_SETTINGS[group]), group
    # the settings of one kind of data set only are some of data's own
    assert set(TABLE_ONLY_KEYS) | set(IMAGE_ONLY_KEYS) < set(OWN_SETTINGS["data"])


def test_a_logger_is_checked_without_being_built(monkeypatch):
    import importlib.util

    node = OmegaConf.create({"tensorboard": {"_target_": "dlcli.tracking.tensorboard.TensorBoardLogger", "log_every_n_steps": 5}})
    monkeypatch.setattr(TensorBoardLogger, "__init__", lambda self, *a, **k: pytest.fail("built while only checked"))
    assert build_loggers(node, check_only=True) == []
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'dlcli\[tensorboard\]'"):
        build_loggers(node, check_only=True)


def test_the_sweep_kinds_the_run_directory_knows_are_those_of_dl_sweep():
    assert tuple(KINDS) == SWEEP_KINDS


@pytest.mark.parametrize("kind", ["grid", "bogus"])
def test_a_sweep_without_a_best_trial_names_its_own_kind_or_none(tmp_path, kind):
    (tmp_path / "sweep.yaml").write_text(f"kind: {kind}\noverrides: []\n")
    with pytest.raises(UserError) as refused:
        best_trial(tmp_path)
    message = str(refused.value)
    if kind == "grid":
        assert f"finish the sweep with dl sweep grid --resume {tmp_path}" in message
    else:  # never guessed (it was tpe): a resume would refuse this sweep.yaml too
        assert "names no kind of sweep (grid, random, tpe): restore sweep.yaml" in message and "tpe --resume" not in message
