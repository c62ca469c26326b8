import pytest

from dlcli.config.compose import compose
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
        (["model=resnet50x"], "unknown model 'resnet50x': choose one of alexnet, attention, cifar_cnn, cnn1d, densenet, googlenet, gru, lenet"),
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
    assert compose(["model=cnn1d", *seq]).optim.lr == 0.1
    assert compose(["model=cnn1d", *seq, "optim.lr=0.05"]).optim.lr == 0.05
    adam = compose(["model=cnn1d", *seq, "optim=adam"]).optim
    assert adam._target_ == "torch.optim.Adam" and adam.lr == 0.001  # the model's SGD rate is not put on Adam
    assert compose(["model=alexnet"]).optim._target_ == "torch.optim.Adam"
    tuned = compose(["model=alexnet", "optim.lr=0.0001"]).optim  # a rate typed for the model's own optimizer
    assert tuned._target_ == "torch.optim.Adam" and tuned.lr == 0.0001
    assert compose(["model=alexnet", "optim=sgd"]).optim._target_ == "torch.optim.SGD"
    assert compose(["model=mlp"]).optim.lr == 0.03  # a model without its own keeps the optimizer's
    assert compose(["experiment=lenet_fashion"]).optim.lr == 0.9  # a recipe sets its training for its model itself
    assert compose(["experiment=lenet_fashion", "model=cnn1d"]).optim.lr == 0.1  # another model: its own (dlcli.config.recipes)
    own = tmp_path / "conf" / "model"
    own.mkdir(parents=True)
    (own / "sneaky.yaml").write_text("_target_: dlcli.models.MLP\nhidden: [8]\ntrain_with: ['+callbacks.x._target_=os.system']\n")
    with pytest.raises(UserError, match=r"model.train_with holds '\+callbacks.x._target_=os.system': it may only set optim"):
        compose(["model=sneaky"], [tmp_path / "conf"])


# the optimizer settings each shipped recipe gives its own model (as before recipes declared them)
RECIPE_TRAINING = {"house_prices_kfold": ("torch.optim.Adam", 0.05, None), "lenet_fashion": ("torch.optim.SGD", 0.9, 0.0),
                   "mlp_fashion": ("torch.optim.SGD", 0.1, 0.0), "softmax_fashion": ("torch.optim.SGD", 0.1, 0.0),
                   "vgg_small_fashion": ("torch.optim.SGD", 0.05, 0.0), "cifar_cnn": ("torch.optim.SGD", 0.001, 0.9),
                   "linreg_synthetic": ("torch.optim.SGD", 0.03, 0.0)}


@pytest.mark.slow  # composes the recipe with every model: over half a second a recipe in the fast lane
@pytest.mark.parametrize("recipe", sorted(RECIPE_TRAINING))
def test_a_recipe_s_settings_for_its_model_give_way_when_the_user_swaps_the_model(recipe):
    """A recipe's rate tuned for its model is not kept for another: the chosen model trains as its own
    option makes it (its own training defaults, yielding to what the recipe chose for every model)."""
    target, lr, momentum = RECIPE_TRAINING[recipe]
    own = compose([f"experiment={recipe}"])
    assert (own.optim._target_, own.optim.lr, own.optim.get("momentum")) == (target, lr, momentum) and own.recipe is None
    made_for = own.model.copy()
    for model in ("mlp", "alexnet", "lstm"):
        swapped = compose([f"experiment={recipe}", f"model={model}"])
        if swapped.model._target_ == made_for._target_:
            continue
        alone = compose([f"model={model}"])
        assert swapped.model == alone.model  # none of the recipe's settings for its own model
        assert swapped.recipe.name == recipe and any(g.startswith("optim.lr=") for g in swapped.recipe.gave_way)
        recipe_chose_optim = recipe == "house_prices_kfold"  # it chooses Adam for every model
        expected = compose([f"model={model}", "optim=adam"]) if recipe_chose_optim else alone
        assert (swapped.optim._target_, swapped.optim.lr) == (expected.optim._target_, expected.optim.lr), (recipe, model)
        assert swapped.trainer.epochs == own.trainer.epochs  # what suits every model stays
    typed = compose([f"experiment={recipe}", "model=mlp", "optim.lr=0.007"])
    assert typed.optim.lr == 0.007  # whatever the user types wins


def test_a_swapped_recipe_says_what_gave_way_in_the_run_log(workdir):
    import sys
    from pathlib import Path

    from dlcli.experiment import build_experiment

    sys.path.insert(0, str(Path(__file__).parent))
    from test_predict import house_prices

    house_prices(80, 0).to_csv(workdir / "train.csv", index=False)
    notes = "\n".join(build_experiment(compose(["experiment=house_prices_kfold", "data.path=train.csv", "model=mlp",
                                                 "trainer.epochs=1"])).notes)
    assert ("experiment=house_prices_kfold was made for model=linreg; with model=mlp its settings for linreg gave way "
            "(optim.lr=0.05): model=mlp trains as its own option makes it, with optim=adam at optim.lr=0.001") in notes
    own = "\n".join(build_experiment(compose(["experiment=house_prices_kfold", "data.path=train.csv", "trainer.epochs=1"])).notes)
    assert "was made for" not in own


def test_the_brought_defaults_are_in_the_saved_config_and_said_at_the_start(workdir):
    from conftest import only_run, run_cli

    # iris as a sequence of its 4 columns, a small 1-D CNN: the digits' 64 steps took 10 s (the check is of the config)
    result = run_cli("train", "model=cnn1d", "data=iris", "+data.as_sequence=true", "trainer.epochs=1",
                     "trainer.plots=false")
    assert result.exit_code == 0, result.output
    assert "this model brings its own training defaults (model.train_with): optim.lr=0.1" in result.stdout
    saved = (only_run(workdir) / "config.yaml").read_text()
    assert "lr: 0.1\n" in saved  # resume, refit and eval read this: the run repeats exactly
