"""Recipes that name the user's code and any tensorflow-datasets dataset, end to end."""

import json
import textwrap

import numpy as np
from click.testing import CliRunner

from keras_lottery.cli import main
from keras_lottery.rundir import layout, storage

MY_MODELS = textwrap.dedent('''
    from keras_lottery import keras


    def build_cnn(seed, num_classes, width=8):
        inputs = keras.Input(shape=(8, 8, 1))
        x = keras.layers.Conv2D(width, 3, activation="relu", name="features")(inputs)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
        return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x))
''')

SHORT = ["--rounds", "2", "--set", "training.iterations=40", "--set", "training.eval_every=20",
         "--set", "controls=[\"random_reinit\"]"]


def test_a_recipe_names_a_module_function_whose_extra_keys_are_its_arguments(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(MY_MODELS)
    recipe = {"name": "mine", "extends": "quickstart_digits",
              "model": {"name": "my_models:build_cnn", "width": 4},
              "pruning": {"rates": {"conv": 0.2, "dense": 0.3, "output": 0.15}, "exclude": ["hid.*"]}}
    (tmp_path / "mine.json").write_text(json.dumps(recipe))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(main, ["run", "mine.json", "--out", "run", *SHORT])
    assert result.exit_code == 0, result.output
    assert "features" in result.output and "stays dense" in result.output
    masks = storage.load_arrays(layout.mask(tmp_path / "run", 0, 1, "ticket"))
    assert sorted(masks) == ["features", "logits"]  # hidden excluded by the pattern
    assert masks["features"].shape == (3, 3, 1, 4)  # width=4 reached the function
    saved = storage.read_json(layout.recipe_file(tmp_path / "run"))
    assert saved["model"] == {"name": "my_models:build_cnn", "initializer": "glorot_normal", "dropout": 0.0,
                              "hidden": None, "options": {"width": 4}, "vocabulary_size": None}
    # the run directory's own recipe resumes it: nothing is trained again
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").glob(f"{layout.TRIAL_GLOB}/*/*/{layout.SUMMARY}")}
    again = CliRunner().invoke(main, ["run", str(tmp_path / "run" / layout.RECIPE), "--out", "run", *SHORT])
    assert again.exit_code == 0, again.output
    assert len(stamps) == 3 and {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_missing_module_or_function_is_refused_with_one_line(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(MY_MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, expected in (("no_such_module:build", "no module named 'no_such_module'"),
                           ("my_models:no_such_function", "has no function 'no_such_function'")):
        recipe = {"name": "bad", "extends": "quickstart_digits", "model": {"name": name}}
        (tmp_path / "bad.json").write_text(json.dumps(recipe))
        result = CliRunner().invoke(main, ["run", "bad.json", "--out", "run"])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
        assert not (tmp_path / "run").exists()


def test_a_tfds_name_runs_under_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    recipe = {"name": "fashion", "extends": "quickstart_digits",
              "dataset": {"name": "tfds:mnist", "validation_size": 20},
              "model": {"name": "mlp", "hidden": [16]}}
    (tmp_path / "fashion.json").write_text(json.dumps(recipe))
    with tfds.testing.mock_data(num_examples=80):
        result = CliRunner().invoke(main, ["run", str(tmp_path / "fashion.json"), "--out", str(tmp_path / "run"),
                                           *SHORT])
    assert result.exit_code == 0, result.output
    identity = storage.read_json(layout.identity_file(tmp_path / "run"))
    assert identity["data_source"] == "tfds:mnist"
    final = storage.load_arrays(layout.final(tmp_path / "run", 0, 1, "ticket"))
    assert final["fc1/kernel"].shape == (784, 16)
    assert np.isfinite(final["output/kernel"]).all()
