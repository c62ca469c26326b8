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
