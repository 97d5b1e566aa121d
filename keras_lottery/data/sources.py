"""Datasets: load train/validation/test splits and feed them to training.

Sources: scikit-learn's bundled ``digits`` (no download), a local ``.npz`` in Keras's
mnist.npz layout (``dataset.path`` or ``--data``), or tensorflow-datasets (``mnist``,
``cifar10``). The validation split is held out of the training data with a fixed seed;
the training stream is reshuffled every epoch in an order fixed by the trial's seed.
"""

import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_lottery.backend import tf

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Per-channel mean and standard deviation of the training images, in [0, 1] units.
NORMALIZATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
VALIDATION_SEED = 0
CLASSES = {"mnist": 10, "cifar10": 10, "digits": 10}  # a small sample may lack some classes


class DataError(ValueError):
    """Data that cannot be loaded; the message says how to supply it."""


@dataclass
class Splits:
    """Images (float32, normalized, NHWC) and integer labels for each split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self):
        return self.x_train.shape[1:]


def load(config) -> Splits:
    """Load the dataset a recipe's ``dataset`` section names."""
    if config.path is not None:
        x_train, y_train, x_test, y_test = load_npz(config.path)
        scale = 255.0
    elif config.name == "digits":
        x_train, y_train, x_test, y_test = load_digits()
        scale = 16.0
    else:
        x_train, y_train, x_test, y_test = load_tfds(config.name, config.data_dir)
        scale = 255.0
    if config.validation_size >= len(x_train):
        raise DataError(
            f"dataset.validation_size ({config.validation_size}) must be smaller than the "
            f"{len(x_train)} training examples; lower it with --set dataset.validation_size=N"
        )
    order = np.random.default_rng(VALIDATION_SEED).permutation(len(x_train))
    val, train = order[: config.validation_size], order[config.validation_size:]
    mean, std = NORMALIZATION.get(config.name, ((0.0,), (1.0,)))

    def prepare(x):
        x = x.astype(np.float32) / scale
        if x.ndim == 3:
            x = x[..., None]
        return ((x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)

    labels = np.concatenate([y_train, y_test])
    return Splits(
        x_train=prepare(x_train[train]), y_train=y_train[train].astype(np.int32),
        x_val=prepare(x_train[val]), y_val=y_train[val].astype(np.int32),
        x_test=prepare(x_test), y_test=y_test.astype(np.int32),
        num_classes=max(int(labels.max()) + 1, CLASSES.get(config.name, 0)),
    )


def load_digits():
    """scikit-learn's 8x8 digits (1,797 images, values 0..16): 1,437 train, 360 test."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    x = digits.images.astype(np.float32)
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(VALIDATION_SEED).permutation(len(x))
    test, train = order[:360], order[360:]
    return x[train], y[train], x[test], y[test]


def load_npz(path):
    """A local npz with x_train, y_train, x_test, y_test (uint8 images, integer labels)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}; pass --data PATH to a local .npz")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in NPZ_KEYS if k not in data.files]
            if missing:
                raise DataError(
                    f"data file {path} lacks {', '.join(missing)}; it needs keys {', '.join(NPZ_KEYS)} "
                    "(Keras's mnist.npz layout)"
                )
            arrays = [data[k] for k in NPZ_KEYS]
    except DataError:
        raise
    except Exception as err:  # zip or format errors from numpy
        raise DataError(f"data file {path} is not a readable .npz ({err}); supply Keras's mnist.npz layout") from None
    check_arrays(path, *arrays)
    check_labels(path, arrays[1], arrays[3])  # a user's file; tfds and digits are known datasets
    return arrays


def check_arrays(source, x_train, y_train, x_test, y_test):
    """Refuse arrays that do not form an image-classification dataset."""
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim not in (3, 4) or len(x) == 0:
            raise DataError(f"{source}: x_{name} must be images shaped (N, H, W) or (N, H, W, C), got {x.shape}")
        if y.shape != (len(x),):
            raise DataError(f"{source}: y_{name} must be shaped ({len(x)},) to match x_{name}, got {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{source}: y_{name} must hold integer class labels, got {y.dtype}")
        if y.min() < 0:
            raise DataError(f"{source}: y_{name} has negative labels; labels must be 0..num_classes-1")
        if x.dtype != np.uint8:
            raise DataError(f"{source}: x_{name} must be uint8 images (0..255), got {x.dtype}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{source}: train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ in shape")


def check_labels(source, y_train, y_test):
    """Labels are 0..C-1 with every class in the training set, and no test-only class."""
    present = np.unique(y_train)
    if len(present) != int(y_train.max()) + 1:
        raise DataError(
            f"{source}: y_train has {len(present)} distinct labels ranging up to {int(y_train.max())}; "
            "labels must be 0..num_classes-1 with every class present in training"
        )
    if y_test.max() > y_train.max():
        raise DataError(
            f"{source}: y_test has label {int(y_test.max())} but y_train only goes up to {int(y_train.max())}; "
            "every test class must appear in training"
        )


def _internet_reachable(host="storage.googleapis.com", port=443, timeout=3.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_tfds(name, data_dir=None):
    """MNIST or CIFAR-10 through tensorflow-datasets, failing fast when offline."""
    import tensorflow_datasets as tfds

    def read(download):
        result = []
        for split in ("train", "test"):
            ds = tfds.load(name, split=split, as_supervised=True, data_dir=data_dir, download=download)
            xs, ys = [], []
            for x, y in tfds.as_numpy(ds.batch(10000)):
                xs.append(x)
                ys.append(y)
            result += [np.concatenate(xs), np.concatenate(ys)]
        return result

    try:
        x_train, y_train, x_test, y_test = read(download=False)
    except AssertionError:  # not prepared in data_dir
        if not _internet_reachable():
            raise DataError(
                f"dataset '{name}' is not in the tensorflow-datasets folder and cannot be downloaded "
                "(no internet); run offline with --data PATH to a local .npz (x_train, y_train, x_test, "
                "y_test) or set dataset.data_dir to a prepared tfds folder"
            ) from None
        x_train, y_train, x_test, y_test = read(download=True)
    # tfds gives (N, H, W, 1) for grey images; Keras's npz layout is (N, H, W).
    x_train = x_train[..., 0] if x_train.shape[-1] == 1 else x_train
    x_test = x_test[..., 0] if x_test.shape[-1] == 1 else x_test
    check_arrays(f"tfds:{name}", x_train, y_train, x_test, y_test)
    return x_train, y_train, x_test, y_test
