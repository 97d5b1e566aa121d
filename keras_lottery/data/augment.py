"""Training-set augmentation for CIFAR-10: random horizontal flips and 4-pixel shifts.

:func:`flip_and_crop` takes a batch ``(images, labels)`` and returns it augmented, so
it can be passed as ``augment`` to :func:`keras_lottery.data.train_stream`. Each image
is flipped left-right with probability 1/2, zero-padded by 4 pixels on every side and
cropped back to its size at a uniformly random offset (the standard CIFAR recipe the
paper uses for VGG-19 and Resnet-18). Images are already normalized, so the padding is
the mean pixel.

The random draws are stateless, seeded by an exact integer checksum of the batch
itself. A batch therefore gets the same augmentation whatever the thread schedule of
the parallel input pipeline, and a stream resumed at step k (late rewinding) sees the
same augmentations as one that ran from step 0. The batch order changes every epoch
(fixed by the trial's seed), so the augmentations do too.
"""

from keras_lottery.backend import tf

PAD = 4


def batch_seed(images, labels):
    """A stateless-RNG seed from the bits of the batch (an integer sum: order-independent)."""
    bits = tf.cast(tf.bitcast(tf.cast(images, tf.float32), tf.int32), tf.int64)
    return tf.stack([tf.reduce_sum(bits), tf.reduce_sum(tf.cast(labels, tf.int64))])


def flip_and_crop(images, labels, pad=PAD):
    """Randomly flip each image left-right and shift it by up to ``pad`` pixels."""
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(batch_seed(images, labels), 2))
    flip = tf.random.stateless_uniform([batch, 1, 1, 1], seed=flip_seed) < 0.5
    images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.random.stateless_uniform([batch, 2], seed=crop_seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None, :]  # (batch, height)
    cols = offsets[:, 1:] + tf.range(width)[None, :]  # (batch, width)
    images = tf.gather(padded, rows, axis=1, batch_dims=1)
    images = tf.gather(images, cols, axis=2, batch_dims=1)
    return images, labels
