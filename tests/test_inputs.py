"""Inputs that are not one array: a tuple or a dict of arrays (keras_lottery.data.inputs).

Fingerprints (one array's unchanged, so old run directories stay valid), splits, the
per-array preparation (integer ids as given, never normalized), tf.data datasets of dict
inputs, the training stream and evaluation batches, the model checks, ``model.json``'s
shapes, and the refusals: each one line naming the problem and the fix.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from keras_lottery import data, models
from keras_lottery.backend import keras, tf
from keras_lottery.data import inputs, sources
from keras_lottery.models.errors import ModelError
from keras_lottery.training import evaluation

CONFIG = SimpleNamespace(validation_size=10)
VOCAB, LENGTH = 30, 6


def token_data(n, seed):
    rng = np.random.default_rng(seed)
    x = {"token_ids": rng.integers(0, VOCAB, (n, LENGTH)).astype(np.int64),
         "padding_mask": (rng.random((n, LENGTH)) < 0.7)}
    y = np.arange(n) % 3
    return x, y


def test_one_array_fingerprint_is_what_it_was():
    """The value the code before several inputs gave (a run directory's recorded identity)."""
    x = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    y = np.array([0, 1])
    assert sources.fingerprint(x, y, x, y) == "5cd854f41b7dc4c88c9a91aa89c2a4240efa178fb217b6a202268e55125ebd21"


def test_fingerprint_reads_every_array_and_the_names():
    x, y = token_data(20, 0)
    base = sources.fingerprint(x, y, x, y)
    assert sources.fingerprint(dict(reversed(list(x.items()))), y, x, y) == base  # key order does not matter
    changed = {k: v.copy() for k, v in x.items()}
    changed["padding_mask"][3, 2] = not changed["padding_mask"][3, 2]
    assert sources.fingerprint(changed, y, x, y) != base  # a byte of the second input
    renamed = {"ids": x["token_ids"], "padding_mask": x["padding_mask"]}
    assert sources.fingerprint(renamed, y, x, y) != base  # an input's name
    as_tuple = (x["padding_mask"], x["token_ids"])
    assert sources.fingerprint(as_tuple, y, as_tuple, y) != base  # the same arrays as a tuple
    assert sources.fingerprint(list(as_tuple), y, list(as_tuple), y) == sources.fingerprint(as_tuple, y, as_tuple, y)


def test_dict_splits_hold_out_the_same_examples_from_every_input():
    x_train, y_train = token_data(50, 0)
    x_test, y_test = token_data(12, 1)
    x_train["position"] = np.arange(50, dtype=np.int32)[:, None] * np.ones((1, LENGTH), np.int32)
    x_test["position"] = np.zeros((12, LENGTH), np.int32)
    splits = data.load(CONFIG, (x_train, y_train, x_test, y_test))
    assert list(splits.x_train) == ["padding_mask", "position", "token_ids"]
    assert inputs.length(splits.x_train) == 40 and inputs.length(splits.x_val) == 10
    held = np.concatenate([splits.x_train["position"][:, 0], splits.x_val["position"][:, 0]])
    assert sorted(held) == list(range(50))  # every example once, the same rows from every input
    rows = splits.x_train["position"][:, 0]
    assert np.array_equal(splits.x_train["token_ids"], x_train["token_ids"][rows])
    assert np.array_equal(splits.y_train, y_train[rows])
    # integer ids and the boolean mask are used as given: never normalized
    assert splits.x_train["token_ids"].dtype == np.int32 and splits.x_train["padding_mask"].dtype == np.bool_
    assert np.array_equal(splits.x_test["token_ids"], x_test["token_ids"])
    assert splits.input_shape == {"padding_mask": (LENGTH,), "position": (LENGTH,), "token_ids": (LENGTH,)}
    assert "token_ids: as given (integer ids, int32)" in splits.normalization
    assert splits.fingerprint == sources.fingerprint(x_train, y_train, x_test, y_test)


def test_tuple_inputs_prepare_each_array_by_its_dtype():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 4, 4, 3), dtype=np.uint8)
    ids = rng.integers(0, 9, (30, 5)).astype(np.int16)
    y = np.arange(30) % 2
    splits = data.load(CONFIG, [(images, ids), y, (images[:6], ids[:6]), y[:6]])
    assert isinstance(splits.x_train, tuple)
    prepared_images, prepared_ids = splits.x_train
    assert prepared_images.dtype == np.float32 and abs(float(prepared_images.mean())) < 0.2  # standardized
    assert prepared_ids.dtype == np.int32 and prepared_ids.max() <= 8  # as given
    assert splits.input_shape == ((4, 4, 3), (5,))
    assert inputs.shape_json(splits.input_shape) == [[4, 4, 3], [5]]
    assert inputs.shape_of([[4, 4, 3], [5]]) == ((4, 4, 3), (5,))  # read back from model.json
    assert inputs.shape_json((28, 28)) == [28, 28]  # one input: as model.json always held it


def test_dict_datasets_are_read_batched_or_not():
    x, y = token_data(24, 2)
    batched = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    read_x, read_y = sources.read_dataset("train", batched)
    assert set(read_x) == {"token_ids", "padding_mask"} and np.array_equal(read_x["token_ids"], x["token_ids"])
    unbatched = tf.data.Dataset.from_tensor_slices((x, y))
    again, _ = sources.read_dataset("train", unbatched)
    assert np.array_equal(again["padding_mask"], x["padding_mask"]) and np.array_equal(read_y, y)
    splits = data.load(CONFIG, (batched, batched.take(2), batched.take(1)))
    assert inputs.length(splits.x_val) == 10 and inputs.length(splits.x_test) == 5


def test_training_stream_and_evaluation_batches_keep_examples_together():
    n = 20
    x = {"a": np.arange(n, dtype=np.int32)[:, None], "b": np.arange(n, dtype=np.float32)[:, None] * 2}
    y = np.arange(n, dtype=np.int32)
    stream = iter(data.train_stream(x, y, 4, seed=3))
    for _ in range(6):  # across an epoch's end
        bx, by = next(stream)
        assert np.array_equal(bx["a"].numpy()[:, 0], by.numpy())
        assert np.array_equal(bx["b"].numpy()[:, 0], 2 * by.numpy())
    resumed = iter(data.train_stream(x, y, 4, seed=3, start_step=5))
    fresh = iter(data.train_stream(x, y, 4, seed=3))
    for _ in range(5):
        next(fresh)
    assert np.array_equal(next(resumed)[1].numpy(), next(fresh)[1].numpy())
    full_x, full_y, last_x, last_y = evaluation.stacked_batches(data.eval_dataset((x["a"], x["b"]), y, 6))
    assert full_x[0].shape == (3, 6, 1) and full_x[1].shape == (3, 6, 1) and last_x[0].shape == (2, 1)
    assert np.array_equal(full_x[1].numpy()[:, :, 0], 2 * full_y.numpy())


def two_inputs(input_shape, names=("token_ids", "padding_mask"), as_dict=True):
    first = keras.Input((LENGTH,), dtype="int32", name=names[0])
    second = keras.Input((LENGTH,), dtype="int32", name=names[1])
    hidden = keras.layers.Add()([keras.layers.Embedding(VOCAB, 4)(first), keras.layers.Embedding(2, 4)(second)])
    output = keras.layers.Dense(3)(keras.layers.Flatten()(hidden))
    return keras.Model({names[0]: first, names[1]: second} if as_dict else [first, second], output)


def test_model_inputs_must_match_the_data():
    shape = {"padding_mask": (LENGTH,), "token_ids": (LENGTH,)}
    assert len(models.source(two_inputs, shape, 3).build(0).inputs) == 2
    with pytest.raises(ModelError, match=r"inputs named 'ids', 'padding_mask'.*dict of 'padding_mask', 'token_ids': "
                                         r"name the inputs as the dict's keys"):
        models.source(lambda: two_inputs(None, names=("ids", "padding_mask")), shape, 3).build(0)
    with pytest.raises(ModelError, match=r"2 inputs, but the data is a tuple of 3 arrays"):
        models.source(lambda: two_inputs(None, as_dict=False), ((LENGTH,),) * 3, 3).build(0)
    with pytest.raises(ModelError, match=r"input 1 takes shape \(6,\), but the data's array 1 has shape \(7,\)"):
        models.source(lambda: two_inputs(None, as_dict=False), ((LENGTH,), (7,)), 3).build(0)
    with pytest.raises(ModelError, match=r"model lenet_300_100 takes one input, but the data has several"):
        models.source("lenet_300_100", shape, 3)
    with pytest.raises(ModelError, match=r"2 inputs; give it one input.*tuple or dict of arrays"):
        models.source(lambda: two_inputs(None), (LENGTH,), 3).build(0)


@pytest.mark.parametrize("supplied, message", [
    ((({"a": np.zeros((4, 2))}, np.zeros(4, int), np.zeros((4, 2)), np.zeros(4, int))),
     r"x_test is array but x_train is dict of 'a'; give every split the same inputs"),
    ((({"a": np.zeros((4, 2)), "b": np.zeros((3, 2))}, np.zeros(4, int)) * 2),
     r"the inputs of x_train hold different numbers of examples \(a: 4, b: 3\)"),
    ((({"a": np.zeros((4, 2)), "b": np.full((4, 2), -1)}, np.arange(4) % 2) * 2),
     r"x_train\['b'\] holds integers from -1 to -1; integer inputs are ids"),
    ((({"a": np.zeros((4, 2)), "b": [1, 2, 3, 4]}, np.zeros(4, int)) * 2),
     r"x_train holds something other than numpy arrays"),
    ((({1: np.zeros((4, 2))}, np.zeros(4, int)) * 2), r"key 1; name each input with a string"),
    ((((np.zeros((4, 2)), (np.zeros((4, 2)),)), np.zeros(4, int)) * 2), r"x_train holds something other than numpy arrays"),
])
def test_bad_structures_are_refused_in_one_line(supplied, message):
    with pytest.raises((sources.DataError, inputs.InputsError), match=message) as caught:
        data.load(CONFIG, supplied)
    assert "\n" not in str(caught.value)
