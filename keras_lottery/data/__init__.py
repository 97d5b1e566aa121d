"""Data: the splits a recipe (or a user) supplies, and the streams that feed training.

- :mod:`.sources`: the named datasets (digits, mnist, cifar10, ``tfds:NAME``), local files, and user
  arrays or tf.data datasets, split, normalized and fingerprinted;
- :mod:`.streams`: the reshuffled, resumable training stream and cached evaluation batches;
- :mod:`.inputs`: inputs that are one array, or a tuple or dict of arrays (several model inputs);
- :mod:`.augment`: flips and crops for CIFAR-style training.
"""

from keras_lottery.data import inputs  # noqa: F401
from keras_lottery.data.sources import PYTHON, DataError, Splits, load  # noqa: F401
from keras_lottery.data.streams import as_tensor, eval_dataset, train_stream  # noqa: F401
