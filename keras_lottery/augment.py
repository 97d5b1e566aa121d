"""Training-set augmentation for CIFAR-10: random horizontal flips and 4-pixel shifts.

:func:`flip_and_crop` takes a batch ``(images, labels)`` and returns it augmented, so
it can be passed as ``augment`` to :func:`keras_lottery.data.train_stream`. Each image
is flipped left-right with probability 1/2, zero-padded by 4 pixels on every side and
cropped back to its size at a uniformly random offset (the standard CIFAR recipe the
paper uses for VGG-19 and Resnet-18). Images are already normalized, so the padding is
the mean pixel. The random ops are seeded from the global seed that
``keras.utils.set_random_seed`` fixes before each round, so a round's augmentations
are the same on every run.
"""

from keras_lottery.backend import tf

PAD = 4


def flip_and_crop(images, labels, pad=PAD):
    """Randomly flip each image left-right and shift it by up to ``pad`` pixels."""
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    flip = tf.random.uniform([batch, 1, 1, 1], seed=1) < 0.5
    images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.random.uniform([batch, 2], 0, 2 * pad + 1, dtype=tf.int32, seed=2)
    rows = offsets[:, :1] + tf.range(height)[None, :]  # (batch, height)
    cols = offsets[:, 1:] + tf.range(width)[None, :]  # (batch, width)
    images = tf.gather(padded, rows, axis=1, batch_dims=1)
    images = tf.gather(images, cols, axis=2, batch_dims=1)
    return images, labels
