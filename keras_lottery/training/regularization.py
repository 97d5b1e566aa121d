"""Weight decay on the surviving weights of conv and dense kernels.

The weights decayed are the prunable weights (:mod:`keras_lottery.models.prunable`: the
kernels of Dense and the convolutions, depthwise and pointwise kernels, embeddings,
attention projections, RNN kernels), at any depth, whether or not a recipe prunes them.

``training.weight_decay`` is the decay λ of SGD's update ``w -= lr * (grad + λ w)``
(PyTorch's convention, the paper's 1e-4). Keras expresses it as a loss term
``l * sum(w**2)`` whose gradient is ``2 l w``, so ``l = λ / 2``.

The term is added to the masked model. The pruning wrapper multiplies every kernel by
its mask at the start of each forward pass, so when the loss is computed the pruned
entries are exactly zero: they add nothing to the loss and get no decay gradient, and
only the survivors decay. Biases and batch-normalization parameters are not decayed.
"""

from keras_lottery.backend import LEGACY, keras, tf


def l2_factor(weight_decay):
    """The Keras L2 factor ``l`` whose gradient equals SGD weight decay ``λ``: ``l = λ / 2``."""
    return weight_decay / 2.0


def add_weight_decay(model, weight_decay):
    """Add ``λ/2 * sum(w**2)`` for every prunable weight ``w`` of ``model`` (wrapped or not)."""
    if not weight_decay:
        return model
    from keras_lottery.models import prunable

    factor = l2_factor(weight_decay)
    for weight in prunable.weights(model):
        if LEGACY:
            weight.layer.add_loss(lambda kernel=weight.variable: factor * tf.reduce_sum(tf.square(kernel)))
        else:  # Keras 3 adds a variable's regularizer to the model's losses (its JAX step included)
            weight.variable.regularizer = keras.regularizers.L2(factor)
    return model
