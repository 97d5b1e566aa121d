"""Data from the Python API: numpy arrays and tf.data datasets; fingerprints; bad input."""

import re

import numpy as np
import pytest

from keras_lottery import data
from keras_lottery.backend import tf
from keras_lottery.config.recipe import DatasetConfig
from keras_lottery.data import DataError

SPLIT_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def refused(match, load, *args):
    """The DataError of ``load(*args)``, checked to be one line matching ``match``."""
    with pytest.raises(DataError, match=match) as caught:
        load(*args)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def same_splits(a, b):
    for name in SPLIT_ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.num_classes == b.num_classes


def labels(n, classes, seed):
    y = np.random.default_rng(seed).integers(0, classes, n)
    y[:classes] = np.arange(classes)  # every class present
    return y


def images(n, seed, shape=(6, 6, 3)):
    """uint8 images whose channels have very different means and spreads."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, *shape)).astype(np.float64)
    if len(shape) == 3:
        x = x * np.linspace(0.2, 1.0, shape[-1]) + np.linspace(0, 40, shape[-1])
    return np.clip(x, 0, 255).astype(np.uint8)


def config(validation_size=20):
    return DatasetConfig(name="mnist", validation_size=validation_size)  # the name plays no part


def test_float_vectors_pass_through_unchanged_with_the_validation_held_out():
    rng = np.random.default_rng(0)
    x, xt = rng.standard_normal((120, 20)), rng.standard_normal((30, 20))  # float64
    y, yt = labels(120, 4, 1), labels(30, 4, 2)
    splits = data.load(config(20), (x, y, xt, yt))
    assert splits.x_train.shape == (100, 20) and splits.x_val.shape == (20, 20) and splits.input_shape == (20,)
    assert splits.x_train.dtype == np.float32 and splits.y_train.dtype == np.int32
    train, val = data.sources._hold_out(120, 20)
    assert np.array_equal(splits.x_train, x[train].astype(np.float32))
    assert np.array_equal(splits.x_val, x[val].astype(np.float32)) and np.array_equal(splits.y_val, y[val])
    assert np.array_equal(splits.x_test, xt.astype(np.float32)) and np.array_equal(splits.y_test, yt)
    assert splits.num_classes == 4 and splits.source == "arrays from the Python API"
    assert splits.normalization == "as given (float32)"
    # the same hold-out as the built-in datasets (fixed seed)
    assert np.array_equal(val, np.random.default_rng(data.sources.VALIDATION_SEED).permutation(120)[:20])


def test_uint8_images_are_standardized_per_channel_with_the_training_split():
    x, xt = images(300, 0), images(50, 1)
    y, yt = labels(300, 3, 2), labels(50, 3, 3)
    splits = data.load(config(40), (x, y, xt, yt))
    assert splits.x_train.shape == (260, 6, 6, 3) and splits.x_test.shape == (50, 6, 6, 3)
    per_channel = splits.x_train.reshape(-1, 3).astype(np.float64)
    assert np.allclose(per_channel.mean(0), 0, atol=1e-5) and np.allclose(per_channel.std(0), 1, atol=1e-5)
    # statistics of the training part only, after the hold-out; validation and test use them too
    train, val = data.sources._hold_out(300, 40)
    raw = x[train].reshape(-1, 3) / 255.0
    mean, std = raw.mean(0), raw.std(0)
    assert np.allclose(splits.x_test, (xt / 255.0 - mean) / std, atol=1e-5)
    assert np.allclose(splits.x_val, (x[val] / 255.0 - mean) / std, atol=1e-5)
    assert not np.allclose(splits.x_val.reshape(-1, 3).mean(0), 0, atol=1e-5)  # not re-standardized
    assert "per channel" in splits.normalization


def test_uint8_grey_images_get_one_mean_and_deviation_and_no_channel_axis():
    x = images(100, 0, shape=(5, 5))
    x[:, :, 0] = 0  # a column much darker than the rest: per-column statistics would differ
    splits = data.load(config(10), (x, labels(100, 2, 0), images(20, 1, shape=(5, 5)), labels(20, 2, 1)))
    assert splits.x_train.shape == (90, 5, 5)
    assert abs(splits.x_train.mean()) < 1e-5 and abs(splits.x_train.std() - 1) < 1e-5
    assert splits.x_train[:, :, 0].std() < 1e-6  # the dark column was not standardized on its own


def test_channel_stats_are_exact_and_chunked():
    x = images(70, 3, shape=(4, 4, 2))
    means, stds = data.sources.channel_stats(x, chunk=100)
    flat = x.reshape(-1, 2) / 255.0
    assert np.allclose(means, flat.mean(0), rtol=0, atol=1e-12) and np.allclose(stds, flat.std(0), rtol=0, atol=1e-12)
    constant = np.full((10, 3, 3, 1), 7, np.uint8)
    assert data.sources.channel_stats(constant)[1] == (1.0,)


def test_labels_shaped_n_by_1_are_flattened():
    x, xt = np.random.default_rng(0).standard_normal((60, 3)), np.zeros((10, 3))
    y, yt = labels(60, 3, 0), labels(10, 3, 1)
    flat = data.load(config(10), (x, y, xt, yt))
    column = data.load(config(10), [x, y[:, None], xt, yt[:, None]])
    same_splits(flat, column)
    assert column.y_train.shape == (50,)
    refused(r"y_train must be shaped \(60,\) or \(60, 1\)", data.load, config(10), (x, np.stack([y, y], 1), xt, yt))


def datasets_of(parts, batch=None, column_labels=False):
    result = []
    for x, y in parts:
        ds = tf.data.Dataset.from_tensor_slices((x, y[:, None] if column_labels else y))
        result.append(ds.batch(batch) if batch else ds)
    return tuple(result)


@pytest.mark.parametrize("kind", ["uint8 images", "float vectors"])
def test_tf_data_batched_or_not_gives_the_splits_of_the_same_arrays(kind):
    if kind == "uint8 images":
        x, xt = images(90, 0), images(25, 1)
    else:
        x, xt = np.random.default_rng(0).standard_normal((90, 7)), np.random.default_rng(1).standard_normal((25, 7))
    y, yt = labels(90, 3, 0), labels(25, 3, 1)
    expected = data.load(config(15), (x, y, xt, yt))
    train, val = data.sources._hold_out(90, 15)
    parts = [(x[train], y[train]), (x[val], y[val]), (xt, yt)]
    unbatched = data.load(config(5000), datasets_of(parts))  # validation_size plays no part: validation is given
    same_splits(unbatched, expected)
    for batched in (datasets_of(parts, batch=8), datasets_of(parts, batch=8, column_labels=True),
                    datasets_of(parts, batch=1), datasets_of(parts, column_labels=True)):
        again = data.load(config(), list(batched))
        same_splits(again, expected)
    assert unbatched.fingerprint == data.load(config(), datasets_of(parts, batch=8)).fingerprint
    assert unbatched.source == "tf.data datasets from the Python API"
    assert unbatched.fingerprint != expected.fingerprint  # train/validation/test given, not train/test


def test_tf_data_from_a_generator_of_unknown_length_is_read_to_its_end():
    def gen():
        for i in range(12):
            yield np.full(4, i, np.float32), i % 3

    signature = (tf.TensorSpec((4,), tf.float32), tf.TensorSpec((), tf.int64))
    ds = tf.data.Dataset.from_generator(gen, output_signature=signature)
    assert int(ds.cardinality()) == int(tf.data.UNKNOWN_CARDINALITY)
    splits = data.load(config(), (ds, ds.take(3), ds.batch(5)))
    assert splits.x_train.shape == (12, 4) and splits.x_val.shape == (3, 4) and splits.x_test.shape == (12, 4)
    assert splits.y_train.tolist() == [i % 3 for i in range(12)]


def test_infinite_tf_data_is_refused():
    x, y = np.zeros((10, 3), np.float32), labels(10, 2, 0)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    message = refused("the train dataset is infinite", data.load, config(), (ds.repeat(), ds, ds))
    assert "finite" in message
    refused("the test dataset is infinite", data.load, config(), (ds, ds, ds.batch(4).repeat()))


def test_tf_data_must_yield_nonempty_pairs():
    x, y = np.zeros((10, 3), np.float32), labels(10, 2, 0)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    dicts = tf.data.Dataset.from_tensor_slices({"x": x, "y": y})
    refused(r"validation dataset must yield \(x, y\) pairs", data.load, config(), (ds, dicts, ds))
    refused("the test dataset is empty", data.load, config(), (ds, ds, ds.take(0)))
    refused("x_validation is float64", data.load, config(),
            (ds, tf.data.Dataset.from_tensor_slices((x.astype(np.float64), y)), ds))


def test_fingerprint_follows_the_content_not_the_file(tmp_path, fake_npz):
    with np.load(fake_npz) as f:
        arrays = {k: f[k] for k in data.sources.NPZ_KEYS}
    (tmp_path / "elsewhere").mkdir()
    copy = tmp_path / "elsewhere" / "renamed.npz"
    np.savez_compressed(copy, **arrays)  # another path, another container (compressed)
    original = data.load(DatasetConfig(name="mnist", path=str(fake_npz), validation_size=50))
    moved = data.load(DatasetConfig(name="mnist", path=str(copy), validation_size=50))
    assert re.fullmatch(r"[0-9a-f]{64}", original.fingerprint)
    assert moved.fingerprint == original.fingerprint and moved.source == f"npz {copy.resolve()}"
    supplied = data.load(config(50), tuple(arrays[k] for k in data.sources.NPZ_KEYS))
    assert supplied.fingerprint == original.fingerprint  # same content from the Python API
    changed = dict(arrays, x_test=arrays["x_test"].copy())
    changed["x_test"][3, 10, 10] ^= 1  # one bit of one byte
    np.savez(tmp_path / "changed.npz", **changed)
    assert data.load(DatasetConfig(name="mnist", path=str(tmp_path / "changed.npz"), validation_size=50)).fingerprint \
        != original.fingerprint
    fp = data.sources.fingerprint
    x = arrays["y_train"]
    assert fp(x) == fp(x.copy()) and fp(x) != fp(x.astype(np.int64)) and fp(x) != fp(x.reshape(-1, 1))
    assert fp(x[:, None][:, 0]) == fp(x)  # strided views hash their values


def test_builtin_sources_say_where_they_come_from():
    digits = data.load(DatasetConfig(name="digits", validation_size=100))
    assert digits.source == "digits" and digits.normalization == "x/16"
    assert digits.fingerprint == data.load(DatasetConfig(name="digits", validation_size=300)).fingerprint


@pytest.mark.parametrize("supplied, match", [
    ({"x_train": 1}, r"supplied data is a dict; pass \(x_train, y_train, x_test, y_test\) numpy arrays or "
                     r"\(train, validation, test\) tf.data.Datasets"),
    (np.zeros((3, 2)), "supplied data is a ndarray"),
    ((np.zeros((3, 2)), np.zeros(3, int)), "supplied data has 2 items"),
    (((np.zeros((3, 2)), np.zeros(3, int)), (np.zeros((3, 2)), np.zeros(3, int))), "for Keras's"),
    ((np.zeros((3, 2)), [0, 1, 0], np.zeros((3, 2)), np.zeros(3, int)), "y_train is a list, not a numpy array"),
    ((np.zeros((3, 2)),) * 3, "the train item is a ndarray, not a tf.data.Dataset"),
])
def test_bad_supplied_types_give_one_line(supplied, match):
    refused(match, data.load, config(1), supplied)


def test_bad_user_arrays_give_one_line():
    x, y = np.zeros((30, 4), np.float32), labels(30, 3, 0)
    refused("x_train must be uint8 .*, integer ids .* or floating point .*, got complex64", data.load, config(5),
            (x.astype(np.complex64), y, x, y))  # integer inputs are ids (tests/flavoured/test_hardening_flavoured.py)
    refused(r"x_test is float32 \(5,\) per example but x_train is float32 \(4,\)", data.load, config(5),
            (x, y, np.zeros((30, 5), np.float32), y))
    refused(r"x_train must be shaped \(N, ...\)", data.load, config(5), (np.zeros(30, np.float32), y, x, y))
    nan = x.copy()
    nan[2, 1] = np.nan
    refused("x_train has NaN or infinite values", data.load, config(5), (nan, y, x, y))
    refused("y_test must hold integer class labels", data.load, config(5), (x, y, x, y.astype(np.float32)))
    refused("y_train has negative labels", data.load, config(5), (x, y - 1, x, y))
    refused("y_train has 2 distinct labels ranging up to 2", data.load, config(5), (x, np.where(y == 1, 0, y), x, y))
    refused("y_test has label 5 but y_train only goes up to 2", data.load, config(5), (x, y, x, y + 3))
    refused(r"dataset.validation_size \(30\) must be smaller than the 30 training examples", data.load, config(30),
            (x, y, x, y))
