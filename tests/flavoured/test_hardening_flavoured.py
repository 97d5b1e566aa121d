"""Hardening that holds on every Keras (issue 22): a model nested as a layer (looked into since
issue 20), a custom layer
whose weights have no names, mixed precision and integer ids are one line or work, never a
traceback (see tests/flavoured/__init__.py for how these run on each Keras)."""

import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery import api, data, masking, models, results
from keras_lottery.backend import keras
from keras_lottery.config.recipe import DatasetConfig, ModelConfig
from keras_lottery.models import layers
from keras_lottery.models.errors import ModelError

FLAVOUR = "tf_keras" if kl.backend.LEGACY else "keras3"


# ---- a model used as a layer --------------------------------------------------------------------


def nested_functional():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.Dense(3, name="inner_dense")(inner_in), name="block")
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))


def nested_sequential():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.LayerNormalization(name="layer_normalization")],
                             name="norm_block")
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))


def test_a_model_used_as_a_layer_is_looked_into():
    plain = models.source(nested_functional, (4,), 2).build(0)
    kinds = models.layer_kinds(plain)
    assert list(kinds.items())[0] == ("block/inner_dense/kernel", "dense")  # found inside, pruned as dense
    assert list(kinds.values())[1:] == ["output"]
    wrapped = masking.wrap(plain, kinds)
    assert sorted(masking.get_masks(wrapped)) == sorted(kinds)
    # a nested model without prunable layers trains and saves: its weights keyed by their path
    weights = masking.get_weights(models.source(nested_sequential, (4,), 2).build(0))
    assert [key for key in weights if key.startswith("norm_block/")] == [
        "norm_block/layer_normalization/gamma", "norm_block/layer_normalization/beta"]


# ---- a custom layer whose weights have no names ----------------------------------------------------


class Unnamed(keras.layers.Layer):
    """Weights created without names, as the Keras guides write them."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], self.units))
        self.b = self.add_weight(shape=(self.units,), initializer="zeros")

    def call(self, x):
        return keras.ops.matmul(x, self.w) + self.b if hasattr(keras, "ops") else x @ self.w + self.b

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def unnamed_model():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(Unnamed(3, name="pw")(inputs)))


def test_weights_without_names_are_keyed_by_position_and_old_keys_still_read():
    source = models.source(unnamed_model, (4,), 2)
    plain = source.build(0)
    weights = masking.get_weights(plain)
    assert list(weights) == ["pw/weight_0", "pw/weight_1", "out/kernel", "out/bias"]
    source.check_seeds()
    wrapped = masking.wrap(source.build(0), {"out": 0.2})  # the clone names its variables anew
    assert list(masking.get_weights(wrapped)) == list(weights)
    masking.set_weights(wrapped, weights)
    # a run directory written before: the layer's weights under Keras's own names, in order
    old = {("pw/variable" if key == "pw/weight_0" else "pw/variable_7" if key == "pw/weight_1" else key): value + 1
           for key, value in weights.items()}
    masking.set_weights(wrapped, old)
    assert np.array_equal(masking.get_weights(wrapped)["pw/weight_1"], weights["pw/weight_1"] + 1)
    with pytest.raises(ValueError, match="saved weights do not match the model"):
        masking.set_weights(wrapped, {**old, "pw/variable_7": np.zeros((5,), np.float32)})


# ---- mixed precision ---------------------------------------------------------------------------------


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def small():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(3)(inputs)))


def test_mixed_precision_is_refused_naming_the_policy(mixed_precision):
    message = r"computes in float16 \(the global dtype policy is 'mixed_float16'\), but keras-lottery trains in float32"
    with pytest.raises(ModelError, match=message):
        models.source(small, (4,), 2).build(0)
    with pytest.raises(ModelError, match=message):
        models.build(ModelConfig(name="mlp", hidden=(3,)), (4,), 2, 0)


# ---- integer inputs are ids -----------------------------------------------------------------------


def ids(dtype, n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 20, (n, 6)).astype(dtype)
    return x, (x[:, 0] % 2).astype(np.int64)


def embedding_model(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    x = keras.layers.Embedding(20, 4, name="tokens")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="out")(keras.layers.Dense(8, name="fc")(x)))


def dense_model(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(keras.layers.Flatten()(inputs)))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int16])
def test_integer_inputs_are_ids_used_as_given(dtype):
    (x, y), (x_test, y_test) = ids(dtype), ids(dtype, 100, 1)
    splits = data.load(DatasetConfig(validation_size=50), (x, y, x_test, y_test))
    assert splits.x_train.dtype == np.int32 and splits.normalization == "as given (integer ids, int32)"
    assert np.array_equal(np.sort(np.concatenate([splits.x_train, splits.x_val]), axis=0), np.sort(x, axis=0))
    with pytest.raises(data.DataError, match=r"x_train holds integers from -1 to 19; integer inputs are ids"):
        data.load(DatasetConfig(validation_size=50), (np.where(x == 0, -1, x), y, x_test, y_test))


def test_uint8_inputs_of_a_model_reading_them_with_an_embedding_are_ids():
    recipe = kl.load_recipe("quickstart_digits", overrides={"keras": FLAVOUR})
    (x, y), (x_test, y_test) = ids(np.uint8), ids(np.uint8, 100, 1)
    assert layers.takes_ids(embedding_model((6,), 2)) and not layers.takes_ids(dense_model((6,), 2))
    given = api._uint8_ids(recipe, embedding_model, (x, y, x_test, y_test))
    assert given[0].dtype == np.int32 and np.array_equal(given[0], x)
    assert api._uint8_ids(recipe, dense_model, (x, y, x_test, y_test))[0] is x  # images: standardized as before


def test_a_run_on_uint8_token_ids_trains(tmp_path):
    (x, y), (x_test, y_test) = ids(np.uint8), ids(np.uint8, 100, 1)
    recipe = kl.load_recipe("quickstart_digits", rounds=2, overrides={
        "keras": FLAVOUR, "training.iterations": 20, "training.eval_every": 10, "controls": [],
        "dataset.validation_size": 50, "pruning.rates": {"dense": 0.2, "output": 0.1}})
    result = kl.run(recipe, model=embedding_model, data=(x, y, x_test, y_test), out=tmp_path / "run", log=lambda _: None,
                    report=False)
    assert [results.status(row) for row in result.rows] == [results.OK, results.OK]  # ids were not standardized
    assert all(0.0 <= row["early_stop_test_accuracy"] <= 1.0 for row in result.rows)
