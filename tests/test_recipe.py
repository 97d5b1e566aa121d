"""Recipes: strict parsing, overrides, and the identity that names run directories."""

import json

import pytest

from keras_lottery.config import recipe as recipes
from keras_lottery.config.recipe import RecipeError
from conftest import RECIPES, TINY, merge


def test_shipped_core_recipes_parse():
    for name in ("lenet300_mnist", "quickstart_digits"):
        recipe = recipes.load(RECIPES / f"{name}.json")
        assert recipe.name == name


def test_lenet_recipe_is_the_paper_protocol():
    r = recipes.load(RECIPES / "lenet300_mnist.json")
    assert (r.model.name, r.model.initializer) == ("lenet_300_100", "glorot_normal")
    assert (r.training.optimizer, r.training.learning_rate, r.training.batch_size) == ("adam", 0.0012, 60)
    assert (r.training.iterations, r.training.eval_every, r.dataset.validation_size) == (50000, 100, 5000)
    assert r.pruning.rates == {"dense": 0.2, "output": 0.1} and r.pruning.rounds == 19
    assert r.rewind.iteration == 0 and r.trials == 5
    assert set(r.controls) == {"random_reinit", "random_prune"}


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"training": {"batch_size": 0}}, "training.batch_size"),
        ({"training": {"iterations": -5}}, "training.iterations"),
        ({"training": {"learning_rate": "fast"}}, "training.learning_rate"),
        ({"pruning": {"rates": {"dense": 1.2}}}, "pruning.rates.dense"),
        ({"pruning": {"rates": {"dense": 0.0}}}, "pruning.rates.dense"),
        ({"pruning": {"rates": {"attention": 0.2}}}, "pruning.rates"),
        ({"pruning": {"scope": "global", "rates": {"dense": 0.2, "output": 0.1}}}, "pruning.rates"),
        ({"model": {"name": "alexnet"}}, "model.name"),
        ({"dataset": {"name": "imagenet"}}, "dataset.name"),
        ({"training": {"optimizer": "lamb"}}, "training.optimizer"),
        ({"controls": ["random_everything"]}, "controls"),
        ({"trials": 0}, "trials"),
        ({"colour": "blue"}, "colour"),
        ({"training": {"epochs": 3}}, "training.epochs"),
        ({"training": {"iterations": 50, "eval_every": 20}}, "training.eval_every"),
        ({"rewind": {"iteration": 60}}, "rewind.iteration"),
    ],
)
def test_bad_values_name_the_key(changes, key):
    with pytest.raises(RecipeError) as err:
        recipes.parse(merge(TINY, changes))
    message = str(err.value)
    assert key in message and "\n" not in message


def test_missing_data_file_is_refused_before_training(tmp_path):
    with pytest.raises(RecipeError, match="data file not found"):
        recipes.parse(merge(TINY, {"dataset": {"path": str(tmp_path / "nope.npz")}}))


def test_invalid_json_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x",\n "trials": }')
    with pytest.raises(RecipeError, match=r"broken.json is not valid JSON.*line 2"):
        recipes.load(path)


def test_set_overrides_any_field(write_recipe):
    path = write_recipe(TINY)
    r = recipes.load(path, ["training.iterations=2000", "controls=[]", "dataset.name=digits",
                            'pruning.rates={"dense": 0.5}'])
    assert r.training.iterations == 2000 and r.controls == () and r.pruning.rates == {"dense": 0.5}


def test_set_refuses_unknown_keys(write_recipe):
    with pytest.raises(RecipeError, match="unknown recipe key 'training.epochs'"):
        recipes.load(write_recipe(TINY), ["training.epochs=3"])


def test_rounds_trials_and_data_options(write_recipe, fake_npz):
    r = recipes.load(write_recipe(TINY), data_path=fake_npz, rounds=1, trials=2)
    assert r.pruning.rounds == 1 and r.trials == 2 and r.dataset.path == str(fake_npz)


def test_identity_ignores_what_only_adds_work():
    base = recipes.parse(TINY)
    more = recipes.parse(merge(TINY, {"trials": 3, "controls": [], "pruning": {"rounds": 9}}))
    other = recipes.parse(merge(TINY, {"training": {"learning_rate": 0.01}}))
    assert base.short_hash() == more.short_hash() != other.short_hash()


def test_resolved_recipe_round_trips():
    r = recipes.parse(TINY)
    assert recipes.parse(json.loads(json.dumps(r.to_dict()))) == r
