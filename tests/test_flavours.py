"""Which Keras runs: the recipe's ``keras`` field, ``--keras``, the model function's Keras,
one Keras per process, and the backend in a run's identity (keras_lottery.flavours)."""

import json
import types

import pytest
from click.testing import CliRunner

import keras_lottery as kl
from keras_lottery import flavours
from keras_lottery.cli import main
from keras_lottery.config import identity
from keras_lottery.config import recipe as recipes
from keras_lottery.config.recipe import RecipeError
from conftest import RECIPES, TINY, merge, save_recipe


def test_keras_field_defaults_to_tf_keras_and_leaves_the_hash_alone():
    default = recipes.load(RECIPES / "quickstart_digits.json")
    assert default.keras == "tf_keras"
    assert "keras" not in identity.recipe_identity(default)  # the hash of recipes that leave it is unchanged
    chosen = recipes.load(RECIPES / "quickstart_digits.json", ['keras="keras3"'])
    assert chosen.keras == "keras3" and identity.recipe_identity(chosen)["keras"] == "keras3"
    assert identity.short_hash(default, "d") != identity.short_hash(chosen, "d")


def test_the_backend_is_part_of_a_keras3_runs_identity():
    r = recipes.parse({"keras": "keras3"})
    on_tf, on_jax = identity.identity(r, "d", None, "tensorflow"), identity.identity(r, "d", None, "jax")
    assert on_tf["backend"] == "tensorflow" and on_jax["backend"] == "jax"
    assert identity.short_hash(r, "d", None, "tensorflow") != identity.short_hash(r, "d", None, "jax")
    assert "backend" not in identity.identity(recipes.parse({}), "d")  # tf_keras: as before


def test_unknown_keras_is_one_clear_line():
    with pytest.raises(RecipeError, match=r"^recipe key 'keras': must be one of tf_keras, keras3, got \"keras4\""):
        recipes.parse({"keras": "keras4"})


def test_cli_keras_option_and_bad_value_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["run", "quickstart_digits", "--keras", "keras4"])
    assert result.exit_code == 2 and "keras4" in result.output
    result = CliRunner().invoke(main, ["run", "quickstart_digits", "--set", 'keras="jax"', "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "error: recipe key 'keras': must be one of tf_keras, keras3, got \"jax\""
    )
    assert not (tmp_path / "r").exists()


def test_this_process_runs_one_keras(tmp_path):
    import keras_lottery.backend  # noqa: F401  (the test process runs tf_keras)

    assert flavours.current() == "tf_keras" and flavours.loaded()
    assert flavours.choose("tf_keras") == "tf_keras"
    with pytest.raises(flavours.FlavourError, match=r"is keras3, but this process already runs tf_keras .*new Python process"):
        flavours.choose("keras3")
    # a Keras 3 recipe from Python in this process: refused in one line, nothing written
    recipe = recipes.parse(merge(TINY, {"keras": "keras3"}))
    with pytest.raises(kl.UsageError, match=r"already runs tf_keras"):
        kl.run(recipe, out=tmp_path / "run", report=False)
    assert not (tmp_path / "run").exists()
    # and from the command line, exit 2
    path = save_recipe(tmp_path, merge(TINY, {"keras": "keras3"}), "k3.json")
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "already runs tf_keras" in result.output
    assert not (tmp_path / "run").exists()


def _function_in_module(source):
    module = types.ModuleType("users_models")
    exec(source, module.__dict__)
    return module.build


@pytest.mark.parametrize("source, expected", [
    ("import keras\ndef build(seed):\n    return keras.Sequential()\n", "keras3"),
    ("from keras import layers\ndef build(seed):\n    return layers.Dense(1)\n", "keras3"),
    ("import tf_keras as keras\ndef build(seed):\n    return keras.Sequential()\n", "tf_keras"),
    ("import keras_lottery as kl\nkeras = None\ndef build(seed):\n    return kl\n", None),
    ("def build(seed):\n    return None\n", None),
])
def test_the_keras_a_model_function_is_written_with(source, expected):
    assert flavours.of_function(_function_in_module(source)) == expected


def test_the_keras_of_a_model():
    import keras as keras3
    import tf_keras

    assert flavours.of_model(keras3.layers.Dense(1)) == "keras3"
    assert flavours.of_model(tf_keras.layers.Dense(1)) == "tf_keras"
    assert flavours.of_model(object()) is None


def test_resolve_picks_keras3_for_a_keras3_model_function_and_records_it():
    build = _function_in_module("import keras\ndef build(seed):\n    return keras.Sequential()\n")
    recipe = recipes.parse(TINY)
    with pytest.raises(flavours.FlavourError, match="model function's Keras is keras3"):
        flavours.resolve(recipe, build)  # this process runs tf_keras: refused, as a new process would pick keras3
    assert flavours.resolve(recipe, _function_in_module("def build(seed):\n    return None\n")) is recipe


def test_a_run_directory_names_its_keras(tmp_path):
    assert flavours.of_run(tmp_path) == "tf_keras"  # no recipe.json: as before 0.3
    (tmp_path / "recipe.json").write_text(json.dumps({"name": "x", "keras": "keras3"}))
    assert flavours.of_run(tmp_path) == "keras3"
    (tmp_path / "recipe.json").write_text(json.dumps({"name": "x"}))  # made by 0.1/0.2
    assert flavours.of_run(tmp_path) == "tf_keras"
