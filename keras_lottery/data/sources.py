"""Datasets: load train/validation/test splits and feed them to training.

Sources (:func:`load`):

- scikit-learn's bundled ``digits`` (no download);
- a local ``.npz`` in Keras's mnist.npz layout (``dataset.path`` or ``--data``);
- tensorflow-datasets: ``mnist`` and ``cifar10`` (fixed normalization constants), or
  ``tfds:NAME``, any tfds image classification dataset with train and test splits
  (features ``dataset.image_key`` and ``dataset.label_key``), standardized per channel
  with its training split's statistics, or a text classification dataset (a text
  feature, e.g. ``tfds:imdb_reviews``), as word ids (:mod:`.text`);
- data from the Python API: ``(x_train, y_train, x_test, y_test)`` numpy arrays, or
  ``(train, validation, test)`` ``tf.data.Dataset``\\ s of ``(x, y)`` pairs.

The validation split is held out of the training data with a fixed seed (unless it is
given); the training stream is reshuffled every epoch in an order fixed by the trial's seed.
Every :class:`Splits` carries the :func:`fingerprint` of the data it came from.
"""

import hashlib
import os
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_lottery.backend import tf
from keras_lottery.config.recipe import PYTHON_DATA as PYTHON
from keras_lottery.data import inputs, text
from keras_lottery.errors import UsageError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Per-channel mean and standard deviation of the training images, in [0, 1] units.
NORMALIZATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
VALIDATION_SEED = 0
CLASSES = {"mnist": 10, "cifar10": 10, "digits": 10}  # a small sample may lack some classes
TFDS_PREFIX = "tfds:"
TFDS_NAMES = {"mnist": "mnist", "cifar10": "cifar10"}  # dataset.name -> tensorflow-datasets name
SPLIT_NAMES = ("train", "validation", "test")
ACCEPTED = (
    "(x_train, y_train, x_test, y_test) numpy arrays or (train, validation, test) "
    "tf.data.Datasets yielding (x, y) pairs"
)


class DataError(UsageError):
    """Data that cannot be loaded; the message says how to supply it."""


@dataclass
class Splits:
    """Inputs (float32, normalized; or integer ids as given) and integer labels for each split.

    Built-in image sources give NHWC images (a channel axis is added to grey images);
    user data keeps the shape it was given. ``fingerprint`` identifies the raw data (see
    :func:`fingerprint`), ``source`` says where it came from, and ``normalization`` how the
    inputs were scaled (data with the same fingerprint can be normalized differently,
    e.g. an npz file named ``mnist`` and the same arrays given through the Python API).
    """

    x_train: object  # an array, or a tuple or dict of arrays (keras_lottery.data.inputs)
    y_train: np.ndarray
    x_val: object
    y_val: np.ndarray
    x_test: object
    y_test: np.ndarray
    num_classes: int
    fingerprint: str = ""
    source: str = ""
    normalization: str = ""

    @property
    def input_shape(self):
        """One example's shape: a tuple, or a tuple or dict of them for several inputs."""
        return inputs.example_shape(self.x_train)


def load(config, supplied=None) -> Splits:
    """The splits of the recipe's ``dataset`` section (``config``), or of user data.

    ``supplied`` is None (load what ``config`` names), or data from the Python API:

    - a tuple or list of 4 numpy arrays ``(x_train, y_train, x_test, y_test)``: the
      validation split (``config.validation_size`` examples) is held out of the training
      data with a fixed seed, as for the built-in datasets;
    - a tuple or list of 3 ``tf.data.Dataset``\\ s ``(train, validation, test)`` yielding
      ``(x, y)`` pairs, batched or not. They are read once into memory and must be finite;
      the validation split is the one given (``config.validation_size`` is not used).
      They are not streamed as given because every round must replay the same training
      order and be resumable at any step, which the package's own seeded stream
      (:func:`keras_lottery.data.streams.train_stream`) over in-memory arrays provides.

    User inputs may have any shape the model accepts, ``(N, ...)``; labels are integers
    shaped ``(N,)`` or ``(N, 1)``, 0..C-1 with every class in the training data. Float
    inputs are used as given (as float32). Other integer inputs (int8 to int64, uint16 to
    uint64) are ids, tokens for an Embedding: used as given (int32, or int64 beyond its
    range), never normalized, and 0 or more. :func:`keras_lottery.run` passes uint8 inputs
    as such ids too when the model takes integers or feeds its input to an Embedding
    (:func:`keras_lottery.models.layers.takes_ids`). Other uint8 inputs are scaled to [0, 1] and
    standardized with the mean and standard deviation of the training split (after the
    validation hold-out): per channel (the last axis) when inputs have 4 or more axes
    (``(N, H, W, C)``), otherwise one mean and one deviation over all values (``(N, H, W)``
    grey images, ``(N, D)`` vectors). No channel axis is added to user inputs.
    """
    if supplied is None:
        return _load_configured(config)
    if isinstance(supplied, (tuple, list)):
        if len(supplied) == 4 and all(_arrays(a, structure=i % 2 == 0) for i, a in enumerate(supplied)):
            return _from_arrays(config, *(inputs.normalized(a) for a in supplied))
        if len(supplied) == 3 and all(isinstance(d, tf.data.Dataset) for d in supplied):
            return _from_datasets(*supplied)
        if len(supplied) == 4:
            bad = next(i for i, a in enumerate(supplied) if not _arrays(a, structure=i % 2 == 0))
            what = "holds something other than numpy arrays (inputs may be a tuple or dict of arrays)" \
                if inputs.structured(supplied[bad]) else \
                f"is a {type(supplied[bad]).__name__}, not a numpy array"
            raise DataError(f"supplied data: {NPZ_KEYS[bad]} {what}; pass {ACCEPTED}")
        if len(supplied) == 3:
            bad = next(i for i, d in enumerate(supplied) if not isinstance(d, tf.data.Dataset))
            raise DataError(
                f"supplied data: the {SPLIT_NAMES[bad]} item is a {type(supplied[bad]).__name__}, not a "
                f"tf.data.Dataset; pass {ACCEPTED}"
            )
        hint = ""
        if len(supplied) == 2 and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in supplied):
            hint = " (for Keras's ((x_train, y_train), (x_test, y_test)) pass (x_train, y_train, x_test, y_test))"
        raise DataError(f"supplied data has {len(supplied)} items{hint}; pass {ACCEPTED}")
    raise DataError(f"supplied data is a {type(supplied).__name__}; pass {ACCEPTED} as a tuple or list")


def _arrays(x, structure):
    """True for a numpy array, or (``structure``: inputs) a tuple, list or dict of them."""
    if structure and inputs.structured(x):
        values = x.values() if isinstance(x, dict) else x
        return bool(values) and all(isinstance(a, np.ndarray) for a in values)
    return isinstance(x, np.ndarray)


def fingerprint(*parts) -> str:
    """A sha256 (hex) of the raw data: the dtype, shape and bytes of each array, in order.

    A part may be inputs of several arrays (a tuple or dict, :mod:`.inputs`): their form
    (tuple length, dict keys) is read, then each array. One array's fingerprint is the
    same as before several inputs were accepted, so earlier run directories stay valid.
    The same content gives the same fingerprint whatever file or container it came in;
    any changed byte, shape, dtype or input name gives another one.
    """
    digest = hashlib.sha256(f"keras-lottery data, {len(parts)} arrays\n".encode())
    for part in parts:
        for item in inputs.fingerprint_parts(part):
            if isinstance(item, str):
                digest.update(f"{item}\n".encode())
                continue
            array = np.asarray(item)
            digest.update(f"{array.dtype.str} {array.shape}\n".encode())
            digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    return digest.hexdigest()


def _load_configured(config) -> Splits:
    name = config.name
    info_classes = 0
    if config.path is not None:
        raw = load_npz(config.path)
        scale, source = 255.0, f"npz {Path(config.path).resolve()}"
    elif name == "digits":
        raw = load_digits()
        scale, source = 16.0, "digits"
    elif name in TFDS_NAMES:
        raw, _ = load_tfds(TFDS_NAMES[name], config.data_dir)
        scale, source = 255.0, f"{name} (tensorflow-datasets)"
    elif name.startswith(TFDS_PREFIX) and len(name) > len(TFDS_PREFIX):
        raw, info_classes = load_tfds(name[len(TFDS_PREFIX):], config.data_dir, config.image_key, config.label_key)
        scale, source = 255.0, name
        if raw[0].dtype == object:  # a text feature: token ids of a tokenizer fitted on the training split
            return _text_splits(config, raw, info_classes, source)
    elif name == "npz":
        raise DataError("dataset.name is 'npz' but dataset.path is not set; pass --data PATH to a local .npz")
    elif name == PYTHON:
        raise DataError(
            "this recipe's data was passed to keras_lottery.run from Python; pass it again there "
            "(data=...), or set dataset.name to a dataset the command line can load"
        )
    else:
        raise DataError(f"dataset.name '{name}' is not one of mnist, cifar10, digits, npz or tfds:NAME")
    x_train, y_train, x_test, y_test = raw
    digest = fingerprint(*raw)
    train, val = _hold_out(len(x_train), config.validation_size)
    if name.startswith(TFDS_PREFIX):  # also a tfds: dataset's npz copy (--data): normalized alike
        mean, std = channel_stats(x_train[train])
        normalization = "x/255, standardized per channel with the training split's statistics"
    else:
        mean, std = NORMALIZATION.get(name, ((0.0,), (1.0,)))
        normalization = f"x/{scale:g}" + (f", standardized with {name}'s constants" if name in NORMALIZATION else "")

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
        num_classes=max(int(labels.max()) + 1, CLASSES.get(name, 0), info_classes or 0),
        fingerprint=digest, source=source, normalization=normalization,
    )


def _text_splits(config, raw, info_classes, source) -> Splits:
    """Splits of a text dataset: token ids (:mod:`.text`), used as given."""
    x_train, y_train, x_test, y_test = raw
    digest = fingerprint(*text.raw_arrays(x_train), y_train, *text.raw_arrays(x_test), y_test)
    train, val = _hold_out(len(x_train), config.validation_size)
    index = text.vocabulary(x_train[train], config.vocabulary_size)

    def ids(texts):
        return text.encode(texts, index, config.sequence_length)

    labels = np.concatenate([y_train, y_test])
    return Splits(
        x_train=ids(x_train[train]), y_train=y_train[train].astype(np.int32),
        x_val=ids(x_train[val]), y_val=y_train[val].astype(np.int32),
        x_test=ids(x_test), y_test=y_test.astype(np.int32),
        num_classes=max(int(labels.max()) + 1, info_classes or 0), fingerprint=digest, source=source,
        normalization=f"word ids (as given): the {len(index)} most frequent training words, "
                      f"{config.sequence_length} per example",
    )


def _hold_out(n, validation_size):
    """Indices ``(train, validation)`` of ``n`` training examples, fixed by VALIDATION_SEED."""
    if validation_size >= n:
        raise DataError(
            f"dataset.validation_size ({validation_size}) must be smaller than the "
            f"{n} training examples; lower it with --set dataset.validation_size=N"
        )
    order = np.random.default_rng(VALIDATION_SEED).permutation(n)
    return order[validation_size:], order[:validation_size]


def _from_arrays(config, x_train, y_train, x_test, y_test) -> Splits:
    source = "arrays from the Python API"
    labels = check_user_data(source, {"train": (x_train, y_train), "test": (x_test, y_test)})
    digest = fingerprint(x_train, y_train, x_test, y_test)  # as given: labels before (N, 1) -> (N,)
    y_train, y_test = labels
    train, val = _hold_out(inputs.length(x_train), config.validation_size)
    return _user_splits(
        source, digest, inputs.take(x_train, train), y_train[train], inputs.take(x_train, val), y_train[val],
        x_test, y_test,
    )


def _from_datasets(train, validation, test) -> Splits:
    source = "tf.data datasets from the Python API"
    parts = [read_dataset(split, ds) for split, ds in zip(SPLIT_NAMES, (train, validation, test))]
    digest = fingerprint(*(a for part in parts for a in part))
    labels = check_user_data(source, dict(zip(SPLIT_NAMES, parts)))
    (x_train, _), (x_val, _), (x_test, _) = parts
    return _user_splits(source, digest, x_train, labels[0], x_val, labels[1], x_test, labels[2])


def _user_splits(source, digest, x_train, y_train, x_val, y_val, x_test, y_test) -> Splits:
    """Splits of user inputs, each array prepared by :func:`_preparation` (its dtype's rule)."""
    prepared, notes = {"train": [], "val": [], "test": []}, []
    for (label, train), val, test in zip(inputs.items(x_train), inputs.arrays(x_val), inputs.arrays(x_test)):
        prepare, normalization = _preparation(train, (train, val, test))
        for split, x in (("train", train), ("val", val), ("test", test)):
            prepared[split].append(prepare(x))
        notes.append(f"{inputs.name(label)}: {normalization}" if label else normalization)

    def rebuilt(split, like):
        values = iter(prepared[split])
        return inputs.apply(lambda _: next(values), like)

    labels = np.concatenate([y_train, y_val, y_test])
    return Splits(
        x_train=rebuilt("train", x_train), y_train=y_train.astype(np.int32),
        x_val=rebuilt("val", x_val), y_val=y_val.astype(np.int32),
        x_test=rebuilt("test", x_test), y_test=y_test.astype(np.int32),
        num_classes=int(labels.max()) + 1, fingerprint=digest, source=source, normalization="; ".join(notes),
    )


def _preparation(x_train, every):
    """``(prepare, description)`` of one input array: uint8 standardized with the training
    split's statistics, other integers (ids) and booleans as given, floats as float32."""
    if x_train.dtype == np.uint8:
        mean, std = (np.asarray(v, np.float32) for v in channel_stats(x_train))
        normalization = "x/255, standardized " + ("per channel " if x_train.ndim >= 4 else "") + \
            "with the training split's statistics"

        def prepare(x):
            return ((x.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
    elif x_train.dtype == np.bool_:  # e.g. a padding mask, among several inputs
        normalization = "as given (bool)"

        def prepare(x):
            return x
    elif np.issubdtype(x_train.dtype, np.integer):  # ids (tokens for an Embedding): never normalized
        wide = max(int(x.max()) for x in every) > np.iinfo(np.int32).max
        normalization = f"as given (integer ids, {'int64' if wide else 'int32'})"

        def prepare(x):
            return x.astype(np.int64 if wide else np.int32)
    else:
        normalization = "as given (float32)"

        def prepare(x):
            return x.astype(np.float32)
    return prepare, normalization


def channel_stats(x, chunk=1 << 20):
    """Mean and standard deviation of uint8 inputs, in [0, 1] units, as tuples.

    Per channel (the last axis) when ``x`` has 4 or more axes, else one value over all of
    ``x``. Computed exactly from the counts of the 256 values (no rounding from the order
    of a sum). A constant channel gets a deviation of 1 (it becomes 0 after centering).
    """
    flat = x.reshape(-1, x.shape[-1]) if x.ndim >= 4 else x.reshape(-1, 1)
    values = np.arange(256, dtype=np.float64)
    means, stds = [], []
    for c in range(flat.shape[1]):
        counts = np.zeros(256, np.int64)
        for start in range(0, len(flat), chunk):
            counts += np.bincount(flat[start:start + chunk, c], minlength=256)
        n = counts.sum()
        mean = float(counts @ values) / n
        std = float(np.sqrt(float(counts @ (values - mean) ** 2) / n))
        means.append(mean / 255.0)
        stds.append(std / 255.0 if std > 0 else 1.0)
    return tuple(means), tuple(stds)


def _check_input(source, name, x, first_name, x_first, several=False):
    """Refuse one input array ``name`` that cannot be used, or differs from the training split's."""
    if x.ndim < (1 if several else 2) or len(x) == 0:
        raise DataError(f"{source}: {name} must be shaped (N, ...) with at least one example, got {x.shape}")
    if 0 in x.shape:
        raise DataError(f"{source}: {name} has a dimension of size 0 {x.shape}; every example needs values")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
            or (several and x.dtype == np.bool_)):
        raise DataError(
            f"{source}: {name} must be uint8 (standardized with the training statistics), integer ids "
            f"(used as given) or floating point (used as given), got {x.dtype}; convert it with .astype(np.float32)"
        )
    if x.dtype != np.uint8 and np.issubdtype(x.dtype, np.integer) and (
            x.min() < 0 or int(x.max()) > np.iinfo(np.int64).max):
        raise DataError(
            f"{source}: {name} holds integers from {x.min()} to {x.max()}; integer inputs are ids (e.g. tokens "
            "for an Embedding), 0 or more: shift them, or convert them with .astype(np.float32) to use them as numbers"
        )
    if x.dtype != x_first.dtype or x.shape[1:] != x_first.shape[1:]:
        raise DataError(
            f"{source}: {name} is {x.dtype} {x.shape[1:]} per example but {first_name} is "
            f"{x_first.dtype} {x_first.shape[1:]}; give every split the same dtype and example shape"
        )
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{source}: {name} has NaN or infinite values; replace or drop them")


def check_user_data(source, splits):
    """Check user inputs and labels (``{split: (x, y)}``, train first); return the labels as (N,).

    Inputs may be one array or several (a tuple or dict, :mod:`.inputs`); each array is
    checked as one input is, and every split must have the same form (dict keys)."""
    labels = []
    first, (x_first, _) = next(iter(splits.items()))
    for split, (x, y) in splits.items():
        if inputs.form(x) != inputs.form(x_first):
            raise DataError(
                f"{source}: x_{split} is {inputs.form(x)} but x_{first} is {inputs.form(x_first)}; give every split "
                "the same inputs"
            )
        for (label, a), a_first in zip(inputs.items(x), inputs.arrays(x_first)):
            _check_input(source, f"x_{split}{label}", a, f"x_{first}{label}", a_first, several=inputs.structured(x))
        if len({len(a) for a in inputs.arrays(x)}) > 1:
            counts = ", ".join(f"{inputs.name(label)}: {len(a)}" for label, a in inputs.items(x))
            raise DataError(f"{source}: the inputs of x_{split} hold different numbers of examples ({counts}); "
                            "give every input one row per example")
        x = inputs.arrays(x)[0]
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.reshape(-1)
        if y.shape != (len(x),):
            raise DataError(f"{source}: y_{split} must be shaped ({len(x)},) or ({len(x)}, 1) to match x_{split}, got {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{source}: y_{split} must hold integer class labels 0..C-1, got {y.dtype}")
        if y.min() < 0:
            raise DataError(f"{source}: y_{split} has negative labels; labels must be 0..num_classes-1")
        labels.append(y)
    for split, y in zip(list(splits)[1:], labels[1:]):
        check_labels(source, labels[0], y, f"y_{split}")
    return labels


def read_dataset(split, ds):
    """Arrays ``(x, y)`` of a finite ``tf.data.Dataset`` of ``(x, y)`` pairs, batched or not.

    ``x`` may be a tuple or dict of tensors (several inputs, :mod:`.inputs`); it is read as
    a tuple or dict of arrays."""
    spec = ds.element_spec
    x_specs = tf.nest.flatten(spec[0]) if isinstance(spec, tuple) and len(spec) == 2 else []
    if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], tf.TensorSpec) and x_specs
            and all(isinstance(s, tf.TensorSpec) for s in x_specs)
            and (isinstance(spec[0], (tf.TensorSpec, tuple, dict)))):
        raise DataError(f"the {split} dataset must yield (x, y) pairs of dense tensors (x may be a tuple or dict "
                        f"of them), got elements {spec}")
    if int(ds.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        raise DataError(
            f"the {split} dataset is infinite (e.g. .repeat()); pass a finite dataset, it is read once "
            "into memory and the package makes its own seeded, repeating training stream"
        )
    x_spec, y_spec = spec
    if y_spec.shape.rank is None or any(s.shape.rank is None for s in x_specs):
        raise DataError(f"the {split} dataset has elements of unknown rank {spec}; give its tensors static ranks")
    batched = _is_batched(x_specs[0].shape, y_spec.shape)
    xs, ys = [], []
    limit, read = read_limit(), 0
    for x, y in ds.as_numpy_iterator():
        x = inputs.normalized(x)
        if batched and any(len(a) != len(y) for a in inputs.arrays(x)):
            count = len(next(a for a in inputs.arrays(x) if len(a) != len(y)))
            raise DataError(f"the {split} dataset has a batch of {count} inputs but {len(y)} labels; pair each input with one label")
        xs.append(x)
        ys.append(y)
        read += sum(np.asarray(a).nbytes for a in inputs.arrays(x)) + np.asarray(y).nbytes
        if read > limit:  # a dataset whose length TensorFlow cannot tell (e.g. .repeat().filter(...))
            raise DataError(
                f"the {split} dataset yielded more than {_gb(limit)} without ending (a quarter of the memory "
                "available, the most one split may take); pass a finite dataset that fits (e.g. .take(N)), or arrays"
            )
    if not xs:
        raise DataError(f"the {split} dataset is empty; every split needs at least one example")
    try:
        if batched:
            return inputs.concatenate(xs), np.concatenate(ys)
        return inputs.stack(xs), np.stack(ys)
    except ValueError:
        raise DataError(f"the {split} dataset's examples differ in shape; give every input (and label) one shape") from None


def _is_batched(x_shape, y_shape):
    """Whether elements are batches: labels (B,) or (B, 1), not one example's () or (1,)."""
    if y_shape.rank == 0:
        return False
    if y_shape.rank >= 2 or y_shape[0] is None or y_shape[0] != 1:
        return True
    # labels shaped (1,): a batch of one if the inputs also lead with 1, else one example's label
    return x_shape.rank >= 1 and x_shape[0] == 1


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
    _check_container(path)
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


def _available_memory():
    """Bytes of memory available to this process now (None if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def read_limit():
    """Bytes of one tf.data split read into memory at most: a quarter of the memory available
    now (the float32 copy of uint8 inputs is four times larger), or 16 GB where unknown."""
    available = _available_memory()
    return max(available // 4, 1 << 20) if available else 16 * 10**9


def _gb(n):
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _check_container(path):
    """Refuse a file that is not an npz archive (an .npy, a text file), and an npz whose
    arrays, as declared in their headers, would not fit in the available memory, before
    anything is decompressed."""
    with open(path, "rb") as handle:
        head = handle.read(6)
    if head == b"\x93NUMPY":
        raise DataError(
            f"data file {path} is a single .npy array, not an .npz archive; save x_train, y_train, x_test and "
            "y_test together with numpy.savez"
        )
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"data file {path} is not an .npz (zip) archive; save x_train, y_train, x_test and y_test together "
            "with numpy.savez (Keras's mnist.npz layout)"
        )
    declared = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for key in NPZ_KEYS:
                name = f"{key}.npy"
                if name not in archive.namelist():
                    continue
                with archive.open(name) as member:
                    version = np.lib.format.read_magic(member)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(member)
                size = int(np.prod(shape, dtype=object)) * dtype.itemsize
                declared += size + (int(np.prod(shape, dtype=object)) * 4 if key.startswith("x_") else 0)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, TypeError) as err:
        raise DataError(f"data file {path} is not a readable .npz ({type(err).__name__}: {err}); "
                        "supply Keras's mnist.npz layout") from None
    available = _available_memory()
    if available is not None and declared > available:
        raise DataError(
            f"data file {path} ({_gb(path.stat().st_size)} on disk) declares arrays needing about {_gb(declared)} "
            f"of memory (with their float32 copies), more than the {_gb(available)} available; use a smaller "
            "data file or a machine with more memory"
        )


def check_arrays(source, x_train, y_train, x_test, y_test):
    """Refuse arrays that do not form an image-classification dataset."""
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim not in (3, 4) or len(x) == 0:
            raise DataError(f"{source}: x_{name} must be images shaped (N, H, W) or (N, H, W, C), got {x.shape}")
        if 0 in x.shape:
            raise DataError(f"{source}: x_{name} has a dimension of size 0 {x.shape}; every image needs pixels")
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


def check_labels(source, y_train, y_test, test_name="y_test"):
    """Labels are 0..C-1 with every class in the training set, and no class only in ``y_test``."""
    present = np.unique(y_train)
    if len(present) != int(y_train.max()) + 1:
        raise DataError(
            f"{source}: y_train has {len(present)} distinct labels ranging up to {int(y_train.max())}; "
            "labels must be 0..num_classes-1 with every class present in training"
        )
    if y_test.max() > y_train.max():
        raise DataError(
            f"{source}: {test_name} has label {int(y_test.max())} but y_train only goes up to {int(y_train.max())}; "
            f"every {test_name[2:]} class must appear in training"
        )


def _internet_reachable(host="storage.googleapis.com", port=443, timeout=3.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _first_line(err):
    """The first line of an error's message, without its closing full stop (a clause follows)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0].rstrip(".;: ") if lines else type(err).__name__


def load_tfds(name, data_dir=None, image_key="image", label_key="label"):
    """A tensorflow-datasets image classification dataset, failing fast when offline.

    ``name`` is a tfds name (``mnist``, ``fashion_mnist``, ``cifar10``, ``name/config:version``)
    with ``train`` and ``test`` splits of fixed-size uint8 images (feature ``image_key``) and
    integer labels (feature ``label_key``). Returns ``(x_train, y_train, x_test, y_test)`` in
    Keras's layout (grey images as (N, H, W)) and the number of classes the dataset declares
    (0 if its label feature does not say).
    """
    import tensorflow_datasets as tfds

    source = f"tfds:{name}"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as err:  # unknown name, config or version; a missing optional module
        raise DataError(
            f"{source}: {_first_line(err)}; use a tensorflow-datasets name from "
            "https://www.tensorflow.org/datasets/catalog"
        ) from None
    features = builder.info.features
    keys = list(features.keys()) if hasattr(features, "keys") else []
    for field, key in (("image_key", image_key), ("label_key", label_key)):
        if key not in keys:
            raise DataError(
                f"{source} has no feature '{key}' (dataset.{field}); its features are {', '.join(keys) or 'not named'}; "
                f"set dataset.image_key and dataset.label_key to two of them"
            )
    is_text = isinstance(features[image_key], tfds.features.Text)
    shape = getattr(features[image_key], "shape", None)
    if not is_text and shape is not None and any(d is None for d in shape):
        raise DataError(
            f"{source}: feature '{image_key}' has images of varying size {tuple(shape)}; only fixed-size image "
            "datasets are supported (resize them and pass arrays through the Python API)"
        )
    if builder.info.splits:
        missing = [s for s in ("train", "test") if s not in builder.info.splits]
        if missing:
            raise DataError(
                f"{source} has no '{missing[0]}' split (it has {', '.join(builder.info.splits)}); only datasets "
                "with train and test splits are supported (pass arrays through the Python API)"
            )

    def read(download):
        result = []
        for split in ("train", "test"):
            try:
                ds = tfds.load(name, split=split, data_dir=data_dir, download=download)
            except ValueError as err:  # e.g. an unknown split
                raise DataError(f"{source}: {_first_line(err)}; it needs train and test splits") from None
            ds = ds.map(lambda features: (features[image_key], features[label_key]))
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
            display = name if name in TFDS_NAMES else source
            fix = ("set dataset.data_dir to a prepared tfds folder, or pass token ids through the Python API"
                   if is_text else "run offline with --data PATH to a local .npz (x_train, y_train, x_test, "
                   "y_test) or set dataset.data_dir to a prepared tfds folder")
            raise DataError(
                f"dataset '{display}' is not in the tensorflow-datasets folder and cannot be downloaded "
                f"(no internet); {fix}"
            ) from None
        x_train, y_train, x_test, y_test = read(download=True)
    if is_text:  # texts (bytes) with integer labels: tokenized by the caller (_text_splits)
        for split, y in (("train", y_train), ("test", y_test)):
            if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
                raise DataError(f"{source}: feature '{label_key}' of the {split} split is not one class label per "
                                "text; set dataset.label_key to an integer label feature")
        return (x_train.astype(object), y_train, x_test.astype(object), y_test), \
            int(getattr(features[label_key], "num_classes", 0) or 0)
    # tfds gives (N, H, W, 1) for grey images; Keras's npz layout is (N, H, W).
    x_train = x_train[..., 0] if x_train.shape[-1] == 1 else x_train
    x_test = x_test[..., 0] if x_test.shape[-1] == 1 else x_test
    check_arrays(source, x_train, y_train, x_test, y_test)
    return (x_train, y_train, x_test, y_test), int(getattr(features[label_key], "num_classes", 0) or 0)
