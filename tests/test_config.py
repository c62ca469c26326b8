import pytest

from dlcli.config import compose
from dlcli.errors import UserError


def test_defaults_compose_to_the_digits_mlp():
    cfg = compose()
    assert cfg.data.name == "digits"
    assert cfg.model._target_ == "dlcli.models.MLP"
    assert cfg.optim._target_ == "torch.optim.SGD"
    assert cfg.split.seed == cfg.seed  # interpolation resolved


def test_overrides_use_hydra_grammar():
    cfg = compose(["model=lenet", "optim=adam", "optim.lr=0.003", "+optim.amsgrad=true", "~model.init"])
    assert cfg.model._target_ == "dlcli.models.LeNet"
    assert cfg.optim.lr == 0.003
    assert cfg.optim.amsgrad is True
    assert "init" not in cfg.model


def test_scheduler_interpolates_epochs():
    assert compose(["sched=cosine", "trainer.epochs=7"]).sched.T_max == 7


@pytest.mark.parametrize(
    "override, expected",
    [
        (["model=resnet50x"], "unknown model 'resnet50x': choose one of alexnet, cifar_cnn, cnn1d, densenet, googlenet, gru, lenet"),
        (["optim.lrr=0.1"], "optim.lrr is not a setting of torch.optim.SGD: valid settings are dampening"),
        (["optim.lr=="], "malformed override 'optim.lr=='"),
        (["optim.lr=0.1,0.2"], "use `dl sweep`"),
        (["+optim.lr=0.1"], "use key=value to change an existing key"),
    ],
)
def test_bad_overrides_get_one_line_messages(override, expected):
    with pytest.raises(UserError) as info:
        compose(override)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_local_conf_directory_extends_the_search_path(workdir):
    (workdir / "conf" / "model").mkdir(parents=True)
    (workdir / "conf" / "model" / "wide.yaml").write_text("_target_: dlcli.models.MLP\nhidden: [512, 512]\n")
    assert list(compose(["model=wide"]).model.hidden) == [512, 512]


def test_config_dir_option_extends_the_search_path(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tiny.yaml").write_text("_target_: dlcli.models.MLP\nhidden: [8]\n")
    assert list(compose(["model=tiny"], [tmp_path]).model.hidden) == [8]
    with pytest.raises(UserError, match="no such directory"):
        compose([], [tmp_path / "absent"])


def test_a_model_brings_its_own_training_defaults_and_whatever_the_user_types_wins(tmp_path):
    """model.train_with: composed before the user's overrides; a value is dropped when its key, a
    key under it or its group is typed, a choice when its group is chosen, all under a recipe."""
    seq = ["+data.as_sequence=true"]
    assert compose(["model=gru", *seq]).optim.lr == 0.1
    assert compose(["model=gru", *seq, "optim.lr=0.05"]).optim.lr == 0.05
    adam = compose(["model=gru", *seq, "optim=adam"]).optim
    assert adam._target_ == "torch.optim.Adam" and adam.lr == 0.001  # the model's SGD rate is not put on Adam
    assert compose(["model=alexnet"]).optim._target_ == "torch.optim.Adam"
    tuned = compose(["model=alexnet", "optim.lr=0.0001"]).optim  # a rate typed for the model's own optimizer
    assert tuned._target_ == "torch.optim.Adam" and tuned.lr == 0.0001
    assert compose(["model=alexnet", "optim=sgd"]).optim._target_ == "torch.optim.SGD"
    assert compose(["model=mlp"]).optim.lr == 0.03  # a model without its own keeps the optimizer's
    assert compose(["experiment=lenet_fashion", "model=gru"]).optim.lr == 0.9  # a recipe sets its training itself
    own = tmp_path / "conf" / "model"
    own.mkdir(parents=True)
    (own / "sneaky.yaml").write_text("_target_: dlcli.models.MLP\nhidden: [8]\ntrain_with: ['+callbacks.x._target_=os.system']\n")
    with pytest.raises(UserError, match=r"model.train_with holds '\+callbacks.x._target_=os.system': it may only set optim"):
        compose(["model=sneaky"], [tmp_path / "conf"])


def test_the_brought_defaults_are_in_the_saved_config_and_said_at_the_start(workdir):
    from conftest import only_run, run_cli

    result = run_cli("train", "model=gru", "+data.as_sequence=true", "trainer.epochs=1", "trainer.plots=false")
    assert result.exit_code == 0, result.output
    assert "this model brings its own training defaults (model.train_with): optim.lr=0.1" in result.stdout
    saved = (only_run(workdir) / "config.yaml").read_text()
    assert "lr: 0.1\n" in saved  # resume, refit and eval read this: the run repeats exactly
