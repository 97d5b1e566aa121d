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


def one_line(error):
    assert "\n" not in str(error.value)
    return str(error.value)


def test_tfds_name_under_mock_data_is_standardized_with_its_training_split():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=60):
        grey = data.load(DatasetConfig(name="tfds:mnist", validation_size=10))
        colour = data.load(DatasetConfig(name="tfds:cifar10", validation_size=10))
        again = data.load(DatasetConfig(name="tfds:mnist", validation_size=10))
    assert grey.x_train.shape == (50, 28, 28, 1) and grey.x_test.shape[1:] == (28, 28, 1)
    assert grey.num_classes == 10 and grey.source == "tfds:mnist" and again.fingerprint == grey.fingerprint
    assert abs(float(grey.x_train.mean())) < 1e-4 and abs(float(grey.x_train.std()) - 1) < 1e-4
    per_channel = colour.x_train.reshape(-1, 3).astype(np.float64)
    assert colour.x_train.shape == (50, 32, 32, 3)
    assert np.allclose(per_channel.mean(0), 0, atol=1e-4) and np.allclose(per_channel.std(0), 1, atol=1e-4)


def test_tfds_features_named_otherwise():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        splits = data.load(DatasetConfig(name="tfds:smallnorb", label_key="label_category", validation_size=5))
        with pytest.raises(DataError, match="tfds:smallnorb has no feature 'label' .*label_category") as error:
            data.load(DatasetConfig(name="tfds:smallnorb", validation_size=5))
        one_line(error)
        with pytest.raises(DataError, match=r"no feature 'picture' \(dataset.image_key\)"):
            data.load(DatasetConfig(name="tfds:mnist", image_key="picture", validation_size=5))
    assert splits.x_train.shape == (35, 96, 96, 1) and splits.num_classes == 5  # from the dataset info
    assert splits.y_train.max() < 5


def test_tfds_datasets_it_cannot_use_are_refused_in_one_line(tmp_path):
    start = time.perf_counter()
    with pytest.raises(DataError, match="tfds:no_such_dataset_xyz: Dataset no_such_dataset_xyz not found") as error:
        data.load(DatasetConfig(name="tfds:no_such_dataset_xyz", data_dir=str(tmp_path)))
    one_line(error)
    with pytest.raises(DataError, match="varying size") as error:
        data.load(DatasetConfig(name="tfds:cats_vs_dogs", data_dir=str(tmp_path)))
    one_line(error)
    assert time.perf_counter() - start < 30


def test_tfds_name_offline_fails_within_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr(data.sources, "_internet_reachable", lambda *a, **k: False)
    start = time.perf_counter()
    with pytest.raises(DataError, match="dataset 'tfds:fashion_mnist' is not in the tensorflow-datasets folder.*--data PATH") as error:
        data.load(DatasetConfig(name="tfds:fashion_mnist", data_dir=str(tmp_path)))
    one_line(error)
    assert time.perf_counter() - start < 30


def test_npz_copy_of_a_tfds_dataset_is_standardized_like_it(fake_npz):
    splits = data.load(DatasetConfig(name="tfds:mnist", path=str(fake_npz), validation_size=100))
    assert splits.x_train.shape == (600, 28, 28, 1)
    assert abs(float(splits.x_train.mean())) < 1e-4 and abs(float(splits.x_train.std()) - 1) < 1e-4


def test_npz_name_without_a_path_is_refused():
    with pytest.raises(DataError, match="dataset.path is not set; pass --data PATH"):
        data.load(DatasetConfig(name="npz"))


@pytest.mark.parametrize("fields", [
    {"name": "tfds:fashion_mnist"}, {"name": "tfds:mnist_corrupted/shot_noise"}, {"name": "tfds:cifar10:3.0.2"},
    {"name": "tfds:smallnorb", "label_key": "label_category"}, {"name": "digits"},
])
def test_dataset_config_accepts(fields):
    DatasetConfig(**fields).check("dataset")


@pytest.mark.parametrize("fields, match", [
    ({"name": "tfds:"}, "recipe key 'dataset.name': must be one of"),
    ({"name": "fashion_mnist"}, "or tfds:NAME"),
    ({"name": "tfds:fashion mnist"}, "tfds:NAME with a tensorflow-datasets name such as"),
    ({"name": "mnist", "label_key": "digit"}, "'dataset.label_key': applies to tfds:NAME datasets only"),
    ({"name": "tfds:mnist", "image_key": " "}, "'dataset.image_key': must be the name of a feature"),
    ({"name": "tfds:mnist", "image_key": "label"}, "'dataset.label_key': must be another feature than image_key"),
    ({"name": "npz"}, "'dataset.path': must be a file path when name is 'npz'"),
])
def test_dataset_config_refuses(fields, match):
    from keras_lottery.config.recipe import RecipeError

    with pytest.raises(RecipeError, match=match) as error:
        DatasetConfig(**fields).check("dataset")
    one_line(error)
