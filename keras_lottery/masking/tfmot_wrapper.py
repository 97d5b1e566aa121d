"""The tf_keras masked wrapper: tfmot's ``prune_low_magnitude`` holding masks that we set.

The wrapper's own schedule never fires (:class:`FixedMask`): masks are computed by
:mod:`keras_lottery.pruning` between rounds and assigned to the wrapper's mask
variables, which stay fixed while a round trains. The wrapper assigns ``kernel * mask``
to each kernel at every forward pass; after the last optimizer step masked weights may
be non-zero again, so :func:`keras_lottery.masking.apply_masks` runs before any read
that must see zeros. A custom layer opts in through tfmot's ``PrunableLayer``
interface: a ``get_prunable_weights()`` method returning the one weight to prune.
"""

from keras_lottery.backend import tf, tfmot

# The wrapper class is not exported by tfmot.sparsity.keras; prune_low_magnitude returns it.
from tensorflow_model_optimization.python.core.sparsity.keras.prunable_layer import PrunableLayer
from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude  # noqa: E402

WRAPPER = PruneLowMagnitude


class FixedMask(tfmot.sparsity.keras.PruningSchedule):
    """A pruning schedule that never updates the mask."""

    def __call__(self, step):
        return tf.constant(False), tf.constant(0.0, dtype=tf.float32)

    def get_config(self):
        return {"class_name": self.__class__.__name__, "config": {}}


def wrap_layer(layer):
    """``layer`` inside tfmot's pruning wrapper, with a schedule that never changes its mask."""
    return tfmot.sparsity.keras.prune_low_magnitude(make_prunable(layer), pruning_schedule=FixedMask())


def make_prunable(layer):
    """``layer``, opted in to tfmot's ``PrunableLayer`` interface if tfmot's registry does not
    know its class (a subclass of Dense or a convolution): its ``kernel`` is pruned.

    The class gets ``get_prunable_weights`` (unless it defines it) and is registered as a
    virtual ``PrunableLayer``; a custom layer may define ``get_prunable_weights`` itself.
    """
    if PruneRegistry.supports(layer) or isinstance(layer, PrunableLayer):
        return layer
    cls = type(layer)
    if "get_prunable_weights" not in vars(cls):
        cls.get_prunable_weights = lambda self: [self.kernel]
    PrunableLayer.register(cls)
    return layer


def weight_and_mask(wrapper):
    """The pruned weight of a wrapper and its mask variable."""
    (weight, mask, _), = wrapper.pruning_vars
    return weight, mask


def callbacks():
    """Callbacks ``fit`` needs for this wrapper (tfmot's step counter)."""
    return [tfmot.sparsity.keras.UpdatePruningStep()]
