"""Hardening of the surfaces 0.2 and 0.3 added (issue 22): recipes that name code, export's
--out, bounds on counts and on tf.data, messages. Bad input: one line, exit 2, nothing written.
What holds on every Keras (nested models, unnamed weights, mixed precision, integer ids) is
in tests/flavoured/test_hardening_flavoured.py."""

import re
import sys
import textwrap
import warnings

import numpy as np
import pytest

import keras_lottery as kl
from conftest import TINY, merge, save_recipe
from test_hardening import cli, one_line, snapshot
from keras_lottery import models
from keras_lottery.config import recipe as recipes
from keras_lottery.config.recipe import ModelConfig, RecipeError
from keras_lottery.models.errors import ModelError
from keras_lottery.rundir import layout, storage


# A model function of the user's own that leaves a mark each time it is called.
MARKED = '''
from pathlib import Path
from keras_lottery.backend import keras

MARKER = Path(__file__).with_name("called.txt")


def build(input_shape, num_classes, width=16):
    with open(MARKER, "a") as marker:
        marker.write("called\\n")
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(width, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))
'''
RECIPE = {**merge(TINY, {"training": {"iterations": 40}, "pruning": {"rounds": 2}, "controls": []}),
          "model": {"name": "marked_models:build", "width": 16}}


@pytest.fixture(scope="module")
def user_code(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_code")
    (folder / "marked_models.py").write_text(textwrap.dedent(MARKED))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop("marked_models", None)


@pytest.fixture(scope="module")
def finished(user_code, tmp_path_factory):
    """A finished 2-round run of the user's marked model, and the output of ``run``."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = cli("run", save_recipe(user_code, RECIPE, "marked.json"), "--out", out)
    assert result.exit_code == 0, result.output
    return out, result.output


# ---- recipes that name code -----------------------------------------------------------------


@pytest.mark.parametrize("model", [
    {"name": "os:system", "command": "echo pwned > {marker}"},
    {"name": "subprocess:getoutput", "cmd": "echo pwned > {marker}"},
])
def test_a_recipe_naming_the_standard_library_is_refused_before_anything_runs(tmp_path, monkeypatch, model):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned.txt"
    model = {key: value.format(marker=marker) for key, value in model.items()}
    path = save_recipe(tmp_path, {"extends": "quickstart_digits", "model": model}, "evil.json")
    before = snapshot(tmp_path)
    line = one_line(cli("run", path), 2, f"model.name '{model['name']}': module '{model['name'].split(':')[0]}' "
                                          "is from Python's standard library, not a model function of your own")
    assert "docs/recipes-that-name-code.md" in line
    assert not marker.exists() and snapshot(tmp_path) == before  # the command never ran; nothing written


USER_MODULE = '''
import os
import subprocess
from os import system
from subprocess import getoutput

from keras_lottery.backend import keras

shell = system
output = getoutput
resnet = keras.applications.ResNet50 if hasattr(keras, "applications") else None


class Builder:
    def __call__(self):
        return None


builder = Builder()


def build():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))
'''


@pytest.fixture
def user_module(write_module):
    return write_module(USER_MODULE, "hostile")


@pytest.mark.parametrize("attribute, message", [
    ("shell", r"{m}.shell \(a built-in function of (posix|os)\) is from Python's standard library"),
    ("output", r"{m}.output \(defined in subprocess\) is from Python's standard library"),
    ("builder", r"{m}.builder is a Builder, not a function; name a function \(def\) that returns the model$"),
])
def test_only_a_function_of_the_users_own_is_called(user_module, attribute, message):
    with pytest.raises(ModelError, match=message.format(m=user_module)) as err:
        models.import_function(f"{user_module}:{attribute}")
    assert "\n" not in str(err.value)
    assert models.import_function(f"{user_module}:build").__name__ == "build"


@pytest.mark.parametrize("name, message", [
    ("numpy:load", "module 'numpy' is from numpy, a package keras-lottery depends on"),
    ("tensorflow.io:write_file", "module 'tensorflow.io' is from tensorflow, a package keras-lottery depends on"),
    ("keras_lottery.models.lenet:mlp", "module 'keras_lottery.models.lenet' is from keras_lottery, a package"),
    ("keras.utils:get_file", "module 'keras.utils' is from keras, a package keras-lottery depends on"),
    # a class: one message, not one that contradicts itself
    ("tf_keras:Sequential", "module 'tf_keras' is from tf_keras, a package "
                            "keras-lottery depends on, not a model function of your own"),
])
def test_dependencies_are_refused_but_keras_model_builders_allowed(name, message):
    with pytest.raises(ModelError, match=f"^model.name '{re.escape(name)}': {re.escape(message)}"):
        models.import_function(name)
    builder = models.import_function("tf_keras.applications:MobileNet")
    assert builder.__module__.startswith("tf_keras.src.applications")


def test_run_says_which_file_the_model_comes_from_and_nothing_else_calls_it(finished, user_code, tmp_path):
    run_dir, output = finished
    origin = user_code / "marked_models.py"
    lines = [line for line in output.splitlines() if line.startswith("model: ")]
    assert lines == [f"model: marked_models:build, the function in {origin}"]
    marker = user_code / "called.txt"
    assert marker.is_file()
    marker.unlink()
    assert cli("export", run_dir, "--round", "1", "--out", tmp_path / "exported").exit_code == 0
    assert cli("report", run_dir, "--out", tmp_path / "report").exit_code == 0
    assert cli("analyze", "forgetting", run_dir, "--grid", "0").exit_code == 0
    listed = cli("recipes", "--dir", user_code)  # listing recipes does not build their models either
    assert listed.exit_code == 0 and "marked_models:build" in listed.output
    assert not marker.exists()


def test_export_refuses_a_model_file_without_architecture_rather_than_calling_the_function(finished, user_code,
                                                                                          tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(finished[0], run_dir)
    saved = storage.read_json(layout.model_file(run_dir))
    del saved["architecture"]
    storage.write_json(layout.model_file(run_dir), saved)
    (user_code / "called.txt").unlink(missing_ok=True)
    one_line(cli("export", run_dir, "--round", "1", "--out", tmp_path / "out"), 2, "lacks the architecture")
    assert not (user_code / "called.txt").exists() and not (tmp_path / "out").exists()


# ---- export --out ---------------------------------------------------------------------------------


def test_export_out_holding_the_run_is_refused_and_nothing_changes(finished):
    run_dir = finished[0]
    parent = run_dir.parent
    before = snapshot(parent)
    one_line(cli("export", run_dir, "--round", "1", "--out", parent, "--force"), 2,
             f"--out {parent} holds the run directory {run_dir}")
    one_line(cli("export", run_dir, "--round", "1", "--out", run_dir / "sub"), 2, "is inside the run directory")
    assert snapshot(parent) == before


def test_export_out_below_a_file_is_one_line(finished, tmp_path):
    (tmp_path / "file").write_text("x")
    one_line(cli("export", finished[0], "--round", "1", "--out", tmp_path / "file" / "sub"), 2,
             f"is below {tmp_path / 'file'}, which is a file, not a folder")


def test_export_force_removes_an_earlier_export_and_only_that(finished, tmp_path):
    out = tmp_path / "holder" / "exported"
    out.mkdir(parents=True)
    (tmp_path / "holder" / "beside.txt").write_text("outside the chosen folder")
    (out / "model.keras").write_text("an earlier Keras 3 export")
    (out / "variables").mkdir()
    (out / "variables" / "stale.index").write_text("stale")
    (out / "notes.txt").write_text("the user's")
    outside = snapshot(tmp_path / "holder")
    one_line(cli("export", finished[0], "--round", "1", "--out", out), 2, "is not empty")
    assert snapshot(tmp_path / "holder") == outside
    result = cli("export", finished[0], "--round", "1", "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert not (out / "model.keras").exists() and not (out / "variables" / "stale.index").exists()
    assert (out / "notes.txt").read_text() == "the user's" and (out / "saved_model.pb").is_file()
    after = snapshot(tmp_path / "holder")
    assert {k: v for k, v in after.items() if not k.startswith("exported")} == \
        {k: v for k, v in outside.items() if not k.startswith("exported")}


# ---- bounds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["instability", "--alphas", "100000000"], "--alphas must be from 2 (both ends of the line) to 1001"),
    (["instability", "--copies", "1000000"], "--copies must be from 2 (a line needs two ends) to 64"),
    (["instability", "--rewind-points", ",".join(str(20 * i) for i in range(300))], "--rewind-points lists more"),
    (["forgetting", "--grid", "100000000"], "--grid 100000000 must be from 0 (no grid) to 400"),
    (["forgetting", "--top", "100000000"], "--top 100000000 must be from 1 to 1000"),
])
def test_counts_are_bounded(finished, args, message):
    run_dir = finished[0]
    before = snapshot(run_dir)
    one_line(cli("analyze", args[0], run_dir, *args[1:]), 2, message)
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("flag, value, message", [
    ("--trials", "100000000", "recipe key 'trials': must be an integer <= 10000"),
    ("--rounds", "100000000", "recipe key 'pruning.rounds': must be an integer <= 1000"),
])
def test_run_counts_are_bounded(tmp_path, flag, value, message):
    one_line(cli("run", save_recipe(tmp_path, TINY), flag, value, "--out", tmp_path / "run"), 2, message)
    assert not (tmp_path / "run").exists()


def test_a_tf_data_split_of_unknown_length_is_read_with_a_bound(monkeypatch):
    from keras_lottery import data
    from keras_lottery.backend import tf
    from keras_lottery.data import sources

    x, y = np.zeros((50, 4), np.float32), np.arange(50) % 2
    finite = tf.data.Dataset.from_tensor_slices((x, y))
    endless = finite.repeat().filter(lambda a, b: True)
    assert int(endless.cardinality()) == int(tf.data.UNKNOWN_CARDINALITY)
    monkeypatch.setattr(sources, "read_limit", lambda: 100_000)
    with pytest.raises(data.DataError, match=r"^the train dataset yielded more than 0.1 MB without ending .*"
                                             r"pass a finite dataset that fits \(e.g. .take\(N\)\), or arrays$"):
        data.load(recipes.DatasetConfig(), (endless, finite, finite))
    with pytest.raises(data.DataError, match="is infinite"):
        data.load(recipes.DatasetConfig(), (finite.repeat(), finite, finite))
    assert len(data.load(recipes.DatasetConfig(), (finite.filter(lambda a, b: True), finite, finite)).x_train) == 50
    assert sources.read_limit.__module__  # the real limit: a quarter of the memory available
    monkeypatch.undo()
    assert 1 << 20 <= sources.read_limit()


# ---- analyses: options first, then extend ---------------------------------------------------------


def test_an_earlier_analysis_does_not_hide_bad_options_and_other_options_extend_it(finished):
    run_dir = finished[0]
    assert cli("analyze", "forgetting", run_dir, "--grid", "0").exit_code == 0
    one_line(cli("analyze", "forgetting", run_dir, "--top", "0"), 2, "--top 0 must be from 1")
    one_line(cli("analyze", "instability", run_dir, "--alphas", "0"), 2, "--alphas must be from 2")
    folder = layout.analysis_dir(run_dir, "forgetting")
    result = cli("analyze", "forgetting", run_dir, "--grid", "0", "--top", "5", "--alpha", "0.1")
    assert result.exit_code == 0, result.output
    assert storage.read_json(folder / layout.ANALYSIS_OPTIONS)["top"] == 5
    summary = storage.read_json(folder / "forgetting.json")
    assert summary["top"] == 5 and summary["alpha"] == 0.1
    assert storage.read_json(folder / "round_01.json")["alpha"] == 0.1  # recomputed with the new alpha


def test_instability_adds_rewind_points_and_recomputes_curves_from_saved_copies(finished, user_code):
    from keras_lottery.analyses import instability

    run_dir = finished[0]
    (user_code / "called.txt").unlink(missing_ok=True)
    folder = layout.analysis_dir(run_dir, "instability")
    result = cli("analyze", "instability", run_dir, "--rounds", "1", "--rewind-points", "0", "--alphas", "2")
    assert result.exit_code == 0, result.output
    copies = {p: p.stat().st_mtime_ns for p in (folder / instability.COPIES_DIR).iterdir()}
    assert len(copies) == 2
    result = cli("analyze", "instability", run_dir, "--rounds", "1", "--rewind-points", "20", "--alphas", "3")
    assert result.exit_code == 0, result.output
    entries = storage.read_json(folder / instability.TABLE_JSON)
    assert [(e["round"], e["k"], len(e["alphas"])) for e in entries] == [(1, 0, 3), (1, 20, 3)]
    now = {p: p.stat().st_mtime_ns for p in (folder / instability.COPIES_DIR).iterdir()}
    assert {p: now[p] for p in copies} == copies and len(now) == 4  # k=0's copies reused, k=20's trained
    assert not (user_code / "called.txt").exists()  # the analysis never called the recipe's function


# ---- messages -------------------------------------------------------------------------------------


def test_a_run_resumed_on_another_keras_or_backend_says_which():
    from keras_lottery.lottery.experiment import _difference

    tf_keras = {"recipe": {"seed": 1}, "data": "abc"}
    jax = {"recipe": {"seed": 1, "keras": "keras3"}, "data": "abc", "backend": "jax"}
    tensorflow = {**jax, "backend": "tensorflow"}
    assert _difference(jax, tensorflow) == ("a run made on Keras 3 / jax, and this process runs Keras 3 / tensorflow "
                                            "(resume it with --keras keras3 and KERAS_BACKEND=jax)")
    assert _difference(tf_keras, jax) == ("a run made on tf_keras, and this process runs Keras 3 / jax "
                                          "(resume it with --keras tf_keras)")
    assert "and of another recipe" in _difference({**jax, "recipe": {"seed": 2, "keras": "keras3"}}, tf_keras)
    assert _difference(tf_keras, {**tf_keras, "recipe": {"seed": 2}}) == "a different recipe"


def test_a_long_extends_chain_is_called_so(tmp_path):
    save_recipe(tmp_path, {"extends": "quickstart_digits"}, "r0.json")
    for i in range(1, 3000):
        save_recipe(tmp_path, {"extends": f"r{i - 1}.json"}, f"r{i}.json")
    line = one_line(cli("run", tmp_path / "r2999.json"), 2, "its chain of 'extends' is longer than 64 files")
    assert "nested too deeply" not in line


def test_no_warning_at_zero_percent_of_weights(tmp_path):
    from matplotlib.figure import Figure

    from keras_lottery.reporting import plots

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.remaining_axis(Figure().add_subplot(), [100.0, 10.0, 0.04, 0.0])


def test_overrides_take_numpy_numbers_and_refuse_other_objects():
    recipe = kl.load_recipe("quickstart_digits", overrides={"seed": np.int64(5), "training.learning_rate": np.float64(.5)})
    assert (recipe.seed, recipe.training.learning_rate) == (5, 0.5)
    with pytest.raises(RecipeError, match=r"^overrides\['seed'\]: object <object object at .*> is not a recipe value; "
                                          r"pass a number, a string, true/false, None, a list or a dict$"):
        kl.load_recipe("quickstart_digits", overrides={"seed": object()})
    with pytest.raises(RecipeError, match=r"^recipe must be a shipped recipe's name .* or a recipe file's path, got None$"):
        kl.load_recipe(None)


MODULE = '''
from keras_lottery.backend import keras


def number():
    return 3


def build(width):
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(width)(inputs)))
'''


def test_wording(write_module):
    from keras_lottery.data import sources

    name = write_module(MODULE, "wording")
    with pytest.raises(ModelError, match=rf"{name}:number returned an int; it must return a keras model"):
        models.source(ModelConfig(name=f"{name}:number"), (4,), 2).build(0)
    config = recipes.parse({**TINY, "model": {"name": f"{name}:build", "width": 3, "nonsense": 1}}).model
    with pytest.raises(RecipeError, match=rf"^recipe key 'model.nonsense': {name}:build has no parameter "
                                          r"'nonsense'; its parameters are width$"):
        models.source(config, (4,), 2)
    assert sources._first_line(ValueError("Dataset nothing_xyz not found.\nDetails")) == "Dataset nothing_xyz not found"
