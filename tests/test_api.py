"""The Python API: your own model and data, with every guarantee of the command line."""

import re
import subprocess
import shutil
import sys

import numpy as np
import pytest

from conftest import ROOT
import keras_lottery as kl
from keras_lottery.rundir import layout, storage


def small_cnn(seed):
    """A functional model of the user's own: Conv2D + BatchNormalization + Dense, free names."""
    keras = kl.keras
    inputs = keras.Input(shape=(8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="features")(inputs)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs)


def digits_arrays():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images * (255 / 16)).astype(np.uint8)[..., None]
    y = digits.target.astype(np.int64)
    return x[:1400], y[:1400], x[1400:], y[1400:]


OVERRIDES = {
    "training.iterations": 60, "training.eval_every": 20, "pruning.rounds": 3,
    "pruning.rates": {"conv": 0.2, "dense": 0.3, "output": 0.15}, "controls": ["random_reinit", "random_prune"],
}


@pytest.fixture(scope="module")
def api_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    lines = []
    recipe = kl.load_recipe("quickstart_digits", overrides=OVERRIDES)
    result = kl.run(recipe, model=small_cnn, data=digits_arrays(), out=out, log=lines.append)
    return recipe, result, lines


def test_the_api_runs_a_users_model_on_arrays(api_run):
    recipe, result, lines = api_run
    assert result.run_dir.is_dir()
    assert {(row["round"], row["variant"]) for row in result.rows} == {
        (0, "ticket"), *((r, v) for r in (1, 2) for v in ("ticket", "random_reinit", "random_prune"))}
    table = result.table()
    assert table.splitlines()[0].split() == ["round", "remaining", "|", "ticket", "ES", "iter", "test", "acc", "start",
                                             "acc", "|", "random_reinit", "ES", "iter", "test", "acc", "start", "acc",
                                             "|", "random_prune", "ES", "iter", "test", "acc", "start", "acc"]
    assert storage.read_csv(layout.results_csv(result.run_dir))[0]["variant"] == "ticket"
    assert result.report is not None and result.report.is_file()
    assert any(layout.tensorboard(result.run_dir).rglob("events.out.tfevents.*"))
    # the layers pruned by type, and said so
    said = "\n".join(lines)
    for layer, rate in (("features", "20%"), ("hidden", "30%"), ("logits", "15%")):
        assert re.search(rf"{layer}\b.*{rate}", said), said
    masks = storage.load_arrays(layout.mask(result.run_dir, 0, 2, "ticket"))
    assert sorted(masks) == ["features", "hidden", "logits"]  # batch norm is never pruned
    for layer, mask in masks.items():
        kept = int(mask.sum())
        rate = {"features": 0.2, "hidden": 0.3, "logits": 0.15}[layer]
        assert kept == max(1, int(np.floor(mask.size * (1 - rate) ** 2 + 0.5)))  # the schedule's count
    final = storage.load_arrays(layout.final(result.run_dir, 0, 2, "ticket"))
    for layer, mask in masks.items():
        assert np.all(final[f"{layer}/kernel"][mask == 0] == 0)  # masked weights exactly zero


def test_the_run_directory_records_where_model_and_data_came_from(api_run):
    _, result, _ = api_run
    saved = storage.read_json(layout.recipe_file(result.run_dir))
    assert saved["model"]["name"] == "python:test_api.small_cnn"
    assert saved["dataset"]["name"] == "python"
    identity = storage.read_json(layout.identity_file(result.run_dir))
    assert identity["data_source"] == "arrays from the Python API"
    assert identity["identity"]["model"] and identity["identity"]["data"]


def test_the_api_resumes_and_refuses_other_data_or_another_model(api_run):
    recipe, result, _ = api_run
    summaries = sorted(result.run_dir.glob(f"{layout.TRIAL_GLOB}/*/*/{layout.SUMMARY}"))
    stamps = [p.stat().st_mtime_ns for p in summaries]
    again = kl.run(recipe, model=small_cnn, data=digits_arrays(), out=result.run_dir, log=lambda _: None)
    assert again.rows == result.rows
    assert [p.stat().st_mtime_ns for p in summaries] == stamps  # nothing trained again
    x_train, y_train, x_test, y_test = digits_arrays()
    other = x_train.copy()
    other[0, 0, 0, 0] ^= 1  # one bit of other data
    with pytest.raises(kl.UsageError, match="other data"):
        kl.run(recipe, model=small_cnn, data=(other, y_train, x_test, y_test), out=result.run_dir, log=lambda _: None)

    def wider(seed):
        keras = kl.keras
        inputs = keras.Input(shape=(8, 8, 1))
        x = keras.layers.Flatten()(inputs)
        return keras.Model(inputs, keras.layers.Dense(10, name="logits")(keras.layers.Dense(64, name="hidden")(x)))

    with pytest.raises(kl.UsageError, match="another model"):
        kl.run(recipe, model=wider, data=digits_arrays(), out=result.run_dir, log=lambda _: None)
    assert [p.stat().st_mtime_ns for p in summaries] == stamps


def test_an_exported_ticket_of_a_users_model_predicts_like_the_run(api_run, tmp_path):
    _, result, _ = api_run
    from keras_lottery.backend import tf

    model = result.export(2, tmp_path / "ticket")
    weights = storage.load_arrays(layout.final(result.run_dir, 0, 2, "ticket"))
    masks = storage.load_arrays(layout.mask(result.run_dir, 0, 2, "ticket"))
    for layer, mask in masks.items():
        kernel = model.get_layer(layer).kernel.numpy()
        assert np.array_equal(kernel, weights[f"{layer}/kernel"]) and np.all(kernel[mask == 0] == 0)
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype(np.float32)
    loaded = tf.saved_model.load(str(tmp_path / "ticket"))
    np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-5)


def test_the_api_takes_tf_data_datasets():
    from keras_lottery.backend import tf

    x_train, y_train, x_test, y_test = digits_arrays()
    split = 1100
    datasets = tuple(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(100)
        for x, y in ((x_train[:split], y_train[:split]), (x_train[split:], y_train[split:]), (x_test, y_test))
    )
    recipe = kl.load_recipe("quickstart_digits", overrides={**OVERRIDES, "pruning.rounds": 2, "controls": []})
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        result = kl.run(recipe, model=small_cnn, data=datasets, out=out, log=lambda _: None, report=False)
        assert [(row["round"], row["variant"]) for row in result.rows] == [(0, "ticket"), (1, "ticket")]
        assert storage.read_json(layout.identity_file(out))["data_source"].startswith("tf.data")


@pytest.mark.parametrize("model, message", [
    ("not a function", "got str"),
    (42, "int"),
])
def test_a_model_that_is_not_a_keras_model_function_is_refused(model, message, tmp_path):
    with pytest.raises(kl.UsageError, match=message) as err:
        kl.run(kl.load_recipe("quickstart_digits", overrides=OVERRIDES), model=model, out=tmp_path / "run",
               log=lambda _: None)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_a_keras_3_model_is_refused_naming_keras_lottery_keras(tmp_path):
    def keras3_model(seed):
        import keras

        inputs = keras.Input(shape=(8, 8, 1))
        return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))

    with pytest.raises(kl.UsageError, match="keras_lottery.keras") as err:
        kl.run(kl.load_recipe("quickstart_digits", overrides=OVERRIDES), model=keras3_model, out=tmp_path / "run",
               log=lambda _: None)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_importing_the_package_and_reading_recipes_does_not_import_tensorflow():
    code = (
        "import sys, keras_lottery as kl\n"
        "r = kl.load_recipe('resnet18_cifar10', overrides={'training.iterations': 2000})\n"
        "assert r.training.iterations == 2000\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_readme_example_runs(tmp_path, monkeypatch):
    """README's Python API example, as written (it trains a few hundred iterations)."""
    text = (ROOT / "README.md").read_text()
    example = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert example, "README.md lost its Python API example"
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(example.group(1), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert len(result.rows) >= 3 and (tmp_path / "runs" / "mine" / "results.csv").is_file()


def test_a_ticket_whose_saved_architecture_cannot_be_rebuilt_exports_with_the_models_function(api_run, tmp_path):
    """Where Keras cannot rebuild the architecture model.json holds (tf_keras and ConvNeXt),
    ``keras-lottery export`` says so in one line and how to export from Python, and
    ``Result.export`` / ``kl.export_ticket`` build the model with the function instead."""
    from keras_lottery import export
    from keras_lottery.rundir import integrity

    _, result, _ = api_run
    run_dir = tmp_path / "copy"
    shutil.copytree(result.run_dir, run_dir)
    saved = integrity.read_json(layout.model_file(run_dir))
    saved["architecture"]["config"]["layers"][1]["class_name"] = "NoSuchLayer"
    storage.write_json(layout.model_file(run_dir), saved)
    with pytest.raises(export.ExportError, match=r"cannot rebuild the model saved in .*export_ticket\(") as err:
        export.export(run_dir, 2, tmp_path / "refused")
    assert "\n" not in str(err.value) and not (tmp_path / "refused").exists()
    model = kl.export_ticket(run_dir, 2, tmp_path / "ticket", model=small_cnn)
    again = kl.Result(run_dir, [], result.recipe, model=small_cnn).export(2, tmp_path / "again")
    weights = storage.load_arrays(layout.final(run_dir, 0, 2, "ticket"))
    for exported in (model, again):
        assert np.array_equal(exported.get_layer("hidden").kernel.numpy(), weights["hidden/kernel"])
    assert (tmp_path / "ticket" / "saved_model.pb").is_file()
