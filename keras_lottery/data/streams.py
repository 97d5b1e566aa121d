"""Streams that feed training and evaluation: a resumable, reshuffled training stream and
cached evaluation batches."""

import weakref

from keras_lottery.backend import tf
from keras_lottery.data import inputs

_TENSORS = {}  # id(array) -> tensor of it, dropped when the array is garbage-collected


def as_tensor(array):
    """``array`` as a tensor, converted once while the array lives.

    Every round builds a new training stream; sharing one tensor of the training images
    keeps a round from copying them again (and, until Python's cycle collector runs,
    from holding the previous round's copy: +1 copy of x_train per round otherwise).
    """
    key = id(array)
    if key not in _TENSORS:
        _TENSORS[key] = tf.constant(array)
        weakref.finalize(array, _TENSORS.pop, key, None)
    return _TENSORS[key]


def train_stream(x, y, batch_size, seed, start_step=0, augment=None):
    """An endless batch stream, reshuffled every epoch, starting at batch ``start_step``.

    ``x`` may be a numpy array or a tensor (see :class:`lottery.Experiment`, which holds the
    training images as one tensor), or a tuple or dict of them (several inputs,
    :mod:`.inputs`): each batch gathers the same examples from every one.

    Epoch ``e`` is ordered by a permutation fixed by ``(seed, e)``, so the stream is the
    same on every run and can be resumed at any step without replaying earlier batches.
    """
    n = inputs.length(x)
    skip = start_step * batch_size
    first_epoch, offset = divmod(skip, n)
    images = inputs.apply(lambda a: a if tf.is_tensor(a) else as_tensor(a), x)
    labels = as_tensor(y)

    def epoch_indices(epoch):
        return tf.data.Dataset.from_tensor_slices(
            tf.random.experimental.stateless_shuffle(tf.range(n), seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        )

    ds = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch_indices).skip(offset)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda idx: (inputs.apply(lambda a: tf.gather(a, idx), images), tf.gather(labels, idx)),
                num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(x, y, batch_size):
    """A finite, cached batch stream for evaluation (``x``: one array, or a tuple or dict of them)."""
    return tf.data.Dataset.from_tensor_slices((inputs.normalized(x), y)).batch(batch_size).cache().prefetch(tf.data.AUTOTUNE)
