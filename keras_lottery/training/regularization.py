"""Weight decay on the surviving weights of conv and dense kernels.

The kernels decayed are those of the layers pruned by type
(:func:`keras_lottery.models.is_kernel_layer`: Dense and Conv1D/2D/3D, Conv2D/3DTranspose),
whether or not a recipe prunes them.

``training.weight_decay`` is the decay λ of SGD's update ``w -= lr * (grad + λ w)``
(PyTorch's convention, the paper's 1e-4). Keras expresses it as a loss term
``l * sum(w**2)`` whose gradient is ``2 l w``, so ``l = λ / 2``.

The term is added to the masked model. The pruning wrapper multiplies every kernel by
its mask at the start of each forward pass, so when the loss is computed the pruned
entries are exactly zero: they add nothing to the loss and get no decay gradient, and
only the survivors decay. Biases and batch-normalization parameters are not decayed.
"""

from keras_lottery import masking, models
from keras_lottery.backend import LEGACY, keras, tf


def l2_factor(weight_decay):
    """The Keras L2 factor ``l`` whose gradient equals SGD weight decay ``λ``: ``l = λ / 2``."""
    return weight_decay / 2.0


def add_weight_decay(model, weight_decay):
    """Add ``λ/2 * sum(kernel**2)`` for every conv/dense kernel of ``model`` (wrapped or not)."""
    if not weight_decay:
        return model
    factor = l2_factor(weight_decay)
    for layer in model.layers:
        layer = masking.base_layer(layer)
        if not models.is_kernel_layer(layer):
            continue
        if LEGACY:
            layer.add_loss(lambda kernel=layer.kernel: factor * tf.reduce_sum(tf.square(kernel)))
        else:  # Keras 3 adds a variable's regularizer to the model's losses (its JAX step included)
            layer.kernel.regularizer = keras.regularizers.L2(factor)
    return model

