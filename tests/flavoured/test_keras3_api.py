"""Keras 3 only: a functional model written with plain ``import keras`` (a convolution,
batch normalization, and a custom layer that names its prunable weight with
``get_prunable_weights()``), passed to ``keras_lottery.run``, which picks the Keras 3 path
by itself and prunes the custom layer."""

import re

import numpy as np
import pytest

from keras_lottery import backend

if backend.LEGACY:
    pytest.skip("Keras 3 only: this process runs tf_keras (tests/test_keras3.py runs these on Keras 3)",
                allow_module_level=True)

import keras  # noqa: E402  (Keras 3: what the user writes)

import keras_lottery as kl  # noqa: E402
from keras_lottery.rundir import layout, storage  # noqa: E402

RATES = {"features": 0.2, "hidden": 0.3, "logits": 0.15}


@keras.saving.register_keras_serializable(package="flavoured_tests")
class ScaledDense(keras.layers.Dense):
    """A user's layer: a Dense layer with a learned output scale, which must not be pruned."""

    def build(self, input_shape):
        super().build(input_shape)
        self.scale = self.add_weight(name="scale", shape=(self.units,), initializer="ones")

    def call(self, inputs):
        return self.activation(keras.ops.matmul(inputs, self.kernel) * self.scale + self.bias)

    def get_prunable_weights(self):
        return [self.kernel]


def functional_model(seed):
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="features")(inputs)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.Flatten()(x)
    x = ScaledDense(48, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))


def digits_arrays():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]  # float32: used as given
    y = digits.target.astype(np.int64)
    return x[:1400], y[:1400], x[1400:], y[1400:]


@pytest.fixture(scope="module")
def api_run(tmp_path_factory):
    recipe = kl.load_recipe("quickstart_digits", overrides={  # the recipe says tf_keras, the default
        "training.iterations": 60, "training.eval_every": 20, "pruning.rounds": 2, "controls": ["random_reinit"],
        "pruning.rates": {"conv": 0.2, "dense": 0.3, "output": 0.15}})
    assert recipe.keras == "tf_keras"
    lines = []
    result = kl.run(recipe, model=functional_model, data=digits_arrays(),
                    out=tmp_path_factory.mktemp("api") / "run", log=lines.append, report=False)
    return result, lines


def test_a_keras_3_model_function_runs_on_keras_3_by_itself(api_run):
    result, lines = api_run
    assert f"keras: Keras 3 on the {backend.BACKEND} backend, keras-lottery's masked wrapper" in lines
    assert result.recipe.keras == "keras3"
    assert storage.read_json(layout.recipe_file(result.run_dir))["keras"] == "keras3"
    assert storage.read_json(layout.identity_file(result.run_dir))["identity"]["backend"] == backend.BACKEND
    assert [(row["round"], row["variant"], row["status"]) for row in result.rows] == [
        (0, "ticket", "ok"), (1, "ticket", "ok"), (1, "random_reinit", "ok")]
    table = result.table().splitlines()
    assert table[0].split()[:2] == ["round", "remaining"] and len(table) == 2 + 2


def test_the_custom_layer_is_pruned_through_get_prunable_weights(api_run):
    result, lines = api_run
    said = "\n".join(lines)
    assert re.search(r"hidden\b.*30% per round", said), said
    for round_index in (0, 1):
        masks = storage.load_arrays(layout.mask(result.run_dir, 0, round_index, "ticket"))
        final = storage.load_arrays(layout.final(result.run_dir, 0, round_index, "ticket"))
        assert sorted(masks) == sorted(RATES)  # batch normalization is never pruned
        assert bool(np.any(masks["hidden"] == 0)) == (round_index > 0)
        for layer, rate in RATES.items():
            kept = max(1, int(np.floor(masks[layer].size * (1 - rate) ** round_index + 0.5)))
            assert int(masks[layer].sum()) == kept, (round_index, layer)
            assert np.all(final[f"{layer}/kernel"][masks[layer] == 0] == 0.0)
        scale = final["hidden/scale"]  # the layer's other weight trains and is never masked
        assert scale.shape == (48,) and np.count_nonzero(scale) == 48 and not np.allclose(scale, 1.0)


def test_the_exported_custom_layer_model_predicts_like_the_run(api_run, tmp_path):
    result, _ = api_run
    model = result.export(1, tmp_path / "ticket")
    final = storage.load_arrays(layout.final(result.run_dir, 0, 1, "ticket"))
    masks = storage.load_arrays(layout.mask(result.run_dir, 0, 1, "ticket"))
    assert isinstance(model.get_layer("hidden"), ScaledDense)
    for layer, mask in masks.items():
        kernel = np.asarray(model.get_layer(layer).kernel.numpy())
        assert np.array_equal(kernel, final[f"{layer}/kernel"]) and np.all(kernel[mask == 0] == 0.0)
    _, _, x_test, y_test = digits_arrays()
    predicted = np.argmax(np.asarray(model.predict(x_test, verbose=0)), axis=-1)
    summary = storage.read_json(layout.summary(result.run_dir, 0, 1, "ticket"))
    assert np.mean(predicted == y_test) == pytest.approx(summary["final_test_accuracy"], abs=1e-6)
