"""The tf_keras masked wrapper: tfmot's ``prune_low_magnitude`` holding masks that we set.

The wrapper's own schedule never fires (:class:`FixedMask`): masks are computed by
:mod:`keras_lottery.pruning` between rounds and assigned to the wrapper's mask
variables, which stay fixed while a round trains. The wrapper assigns ``kernel * mask``
to each kernel at every forward pass; after the last optimizer step masked weights may
be non-zero again, so :func:`keras_lottery.masking.apply_masks` runs before any read
that must see zeros. Each layer is given the weights to prune through tfmot's
``PrunableLayer`` interface (:func:`wrap_layer`); a custom layer may define
``get_prunable_weights()`` itself.
"""

import contextlib

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


def wrap_layer(layer, pruned=None):
    """``layer`` inside tfmot's pruning wrapper, with a schedule that never changes its mask,
    pruning the weights ``pruned``: ``[(names of the layers below layer, weight)]``.

    tfmot's wrapper holds one mask per weight its layer's ``get_prunable_weights()`` returns,
    and assigns ``weight * mask`` to each at every forward pass. The layer is given that method
    (on the instance, since which weights are pruned is the recipe's choice) returning the
    weights ``pruned`` names, found once the wrapper has built the layer; a layer whose class
    defines the method itself keeps it. So tfmot's masking serves every type of the table
    (keras_lottery.models.prunable), layers inside layers and nested models included.
    """
    from keras_lottery.models import prunable

    if pruned is not None and not _defines_own(layer):
        specs = [(tuple(inside), short) for inside, short in pruned]
        object.__setattr__(layer, "get_prunable_weights",
                           lambda: [prunable.resolve(layer, spec)[1] for spec in specs])
        object.__setattr__(layer, "_lottery_pruned", specs)
    else:
        make_prunable(layer)
    # The wrapper itself, not prune_low_magnitude, which would prune a nested model's layers into a new model.
    return PruneLowMagnitude(layer, pruning_schedule=FixedMask())


def _defines_own(layer):
    return any("get_prunable_weights" in vars(cls) for cls in type(layer).__mro__)


@contextlib.contextmanager
def cloning():
    """While cloning a model into or out of wrappers: a wrapper counts as the layer it wraps in
    tf_keras's rule for a nested model's first call node. A functional model used as a layer
    has a node of its own that the model's config leaves out; a wrapper around one has not, so
    without this the clone looks for a node that never comes (and loops forever)."""
    from tf_keras.src.engine import functional

    original = functional._should_skip_first_node
    functional._should_skip_first_node = lambda layer: original(layer.layer if isinstance(layer, WRAPPER) else layer)
    try:
        yield
    finally:
        functional._should_skip_first_node = original


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


def specs(wrapper):
    """What a wrapper prunes, ``[(names below its layer, weight)]``, in the order of its masks."""
    from keras_lottery.models import prunable

    layer = wrapper.layer
    given = getattr(layer, "_lottery_pruned", None)
    if given is not None:
        return given
    keys = {id(v): prunable.short_key(i, v) for i, v in enumerate(layer.weights)}
    return [((), keys[id(weight)]) for weight, _, _ in wrapper.pruning_vars]


def weights_and_masks(wrapper):
    """``[(pruned weight, mask variable)]`` of a wrapper."""
    return [(weight, mask) for weight, mask, _ in wrapper.pruning_vars]


def callbacks():
    """Callbacks ``fit`` needs for this wrapper (tfmot's step counter)."""
    return [tfmot.sparsity.keras.UpdatePruningStep()]
