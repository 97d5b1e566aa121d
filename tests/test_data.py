"""Data: digits, local npz (real MNIST where present), tfds under mock data, fast failures."""

import time

import numpy as np
import pytest

from keras_lottery import data
from keras_lottery.data import DataError
from keras_lottery.config.recipe import DatasetConfig


def test_digits_need_no_download():
    splits = data.load(DatasetConfig(name="digits", validation_size=200))
    assert splits.x_train.shape == (1437 - 200, 8, 8, 1) and splits.x_test.shape == (360, 8, 8, 1)
    assert splits.num_classes == 10 and splits.x_val.shape[0] == 200


def test_validation_split_is_held_out_of_training_with_a_fixed_seed(fake_npz):
    a = data.load(DatasetConfig(name="mnist", path=str(fake_npz), validation_size=100))
    b = data.load(DatasetConfig(name="mnist", path=str(fake_npz), validation_size=100))
    assert len(a.x_train) + len(a.x_val) == 700
    assert np.array_equal(a.x_val, b.x_val)
    rows = {row.tobytes() for row in a.x_train}
    assert not any(row.tobytes() in rows for row in a.x_val)


def test_real_mnist_npz(mnist_npz):
    splits = data.load(DatasetConfig(name="mnist", path=str(mnist_npz), validation_size=5000))
    assert splits.x_train.shape == (55000, 28, 28, 1) and splits.x_val.shape == (5000, 28, 28, 1)
    assert splits.x_test.shape == (10000, 28, 28, 1) and splits.num_classes == 10
    assert abs(float(splits.x_train.mean())) < 0.05 and abs(float(splits.x_train.std()) - 1) < 0.05


def test_missing_npz_fails_fast(tmp_path):
    with pytest.raises(DataError, match="data file not found.*--data"):
        data.sources.load_npz(tmp_path / "missing.npz")


def test_npz_with_wrong_keys_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match="lacks x_train, y_train, x_test, y_test"):
        data.sources.load_npz(path)


def test_tfds_path_under_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=60):
        splits = data.load(DatasetConfig(name="mnist", validation_size=10))
    assert splits.x_train.shape == (50, 28, 28, 1) and splits.x_test.shape[1:] == (28, 28, 1)
    with tfds.testing.mock_data(num_examples=40):
        splits = data.load(DatasetConfig(name="cifar10", validation_size=10))
    assert splits.x_train.shape == (30, 32, 32, 3)


def test_tfds_offline_fails_within_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr(data.sources, "_internet_reachable", lambda *a, **k: False)
    start = time.perf_counter()
    with pytest.raises(DataError, match="--data PATH"):
        data.load(DatasetConfig(name="mnist", data_dir=str(tmp_path)))
    assert time.perf_counter() - start < 30


def test_train_stream_reshuffles_each_epoch_and_resumes_exactly():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10, dtype=np.int32)
    stream = [b[1].numpy().tolist() for b in data.train_stream(x, y, 5, seed=3).take(6)]
    first_epoch, second_epoch = stream[0] + stream[1], stream[2] + stream[3]
    assert sorted(first_epoch) == list(range(10)) and sorted(second_epoch) == list(range(10))
    assert first_epoch != second_epoch
    resumed = [b[1].numpy().tolist() for b in data.train_stream(x, y, 5, seed=3, start_step=3).take(3)]
    assert resumed == stream[3:6]
    other = [b[1].numpy().tolist() for b in data.train_stream(x, y, 5, seed=4).take(2)]
    assert other != stream[:2]
