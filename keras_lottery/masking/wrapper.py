"""Masked models: tfmot's ``prune_low_magnitude`` wrapper holding masks that we set.

The wrapper's own schedule never fires (:class:`FixedMask`): masks are computed by
:mod:`keras_lottery.pruning` between rounds and assigned to the wrapper's mask
variables, which stay fixed while a round trains. The wrapper multiplies each kernel
by its mask at every forward pass; after the last optimizer step masked weights may be
non-zero again, so :func:`apply_masks` runs before any read that must see zeros.
"""

import numpy as np

from keras_lottery.backend import keras, tf, tfmot
from keras_lottery.models.errors import ModelError

# The wrapper class is not exported by tfmot.sparsity.keras; prune_low_magnitude returns it.
from tensorflow_model_optimization.python.core.sparsity.keras.prunable_layer import PrunableLayer
from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude  # noqa: E402


class FixedMask(tfmot.sparsity.keras.PruningSchedule):
    """A pruning schedule that never updates the mask."""

    def __call__(self, step):
        return tf.constant(False), tf.constant(0.0, dtype=tf.float32)

    def get_config(self):
        return {"class_name": self.__class__.__name__, "config": {}}


def wrap(model, prunable):
    """Clone ``model`` with the layers named in ``prunable`` inside pruning wrappers.

    ``prunable`` names layers of :data:`keras_lottery.models.PRUNABLE_TYPES` (see
    :func:`keras_lottery.models.prunable_layers`). Every other layer is rebuilt from its
    config, so a custom layer needs ``get_config``; weights are set afterwards by name.
    """
    from keras_lottery import models

    prunable = set(prunable)
    by_name = {layer.name: layer for layer in model.layers}
    missing = sorted(prunable - set(by_name))
    if missing:
        raise ModelError(f"cannot prune unknown layers: {', '.join(missing)}; the model's layers are {', '.join(by_name)}")
    wrong = sorted(name for name in prunable if not models.is_kernel_layer(by_name[name]))
    if wrong:
        kinds = ", ".join(t.__name__ for t in models.PRUNABLE_TYPES)
        raise ModelError(f"cannot prune layer {wrong[0]!r} ({type(by_name[wrong[0]]).__name__}): only {kinds} layers are pruned")

    def clone(layer):
        if layer.name in prunable:
            return tfmot.sparsity.keras.prune_low_magnitude(make_prunable(layer), pruning_schedule=FixedMask())
        try:
            config = layer.get_config()
        except NotImplementedError:
            raise ModelError(
                f"layer {layer.name!r} ({type(layer).__name__}) cannot be copied into the pruned model: "
                "give its class a get_config() method returning its constructor arguments"
            ) from None
        return layer.__class__.from_config(config)

    wrapped = keras.models.clone_model(model, clone_function=clone)
    missing = prunable - set(wrappers(wrapped))
    if missing:
        raise ModelError(f"cannot prune layers {', '.join(sorted(missing))}: the cloned model does not wrap them")
    return wrapped


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


def base_layer(layer):
    return layer.layer if isinstance(layer, PruneLowMagnitude) else layer


def wrappers(model):
    """Pruning wrappers keyed by the name of the layer they wrap."""
    return {layer.layer.name: layer for layer in model.layers if isinstance(layer, PruneLowMagnitude)}


def _mask_variable(wrapper):
    (_, mask, _), = wrapper.pruning_vars
    return mask


def _kernel_variable(wrapper):
    (kernel, _, _), = wrapper.pruning_vars
    return kernel


def get_masks(model):
    """The current masks (float32 arrays of 0 and 1) keyed by layer name."""
    return {name: _mask_variable(w).numpy() for name, w in wrappers(model).items()}


def set_masks(model, masks):
    """Assign masks (keyed by layer name) and zero the weights they remove."""
    layers = wrappers(model)
    if set(masks) != set(layers):
        raise ModelError(f"masks for {sorted(masks)} do not match the pruned layers {sorted(layers)}")
    for name, wrapper in layers.items():
        _mask_variable(wrapper).assign(np.asarray(masks[name], dtype=np.float32))
    apply_masks(model)


def apply_masks(model):
    """Make every masked weight exactly zero (weights = weights * mask)."""
    for wrapper in wrappers(model).values():
        kernel = _kernel_variable(wrapper)
        kernel.assign(kernel * _mask_variable(wrapper))


def dense_masks(model):
    """All-ones masks for every pruned layer of a wrapped model."""
    return {name: np.ones(_kernel_variable(w).shape, np.float32) for name, w in wrappers(model).items()}


def named_variables(model):
    """The model's own variables keyed ``layer/weight`` (wrappers' masks left out).

    Two weights of one layer with the same last name (a model nested as a layer, or a
    custom layer's ``add_weight`` calls sharing a name) raise ModelError: saved weights
    are keyed by these names, so one would silently overwrite the other.
    """
    variables = {}
    for layer in model.layers:
        layer = base_layer(layer)
        for variable in layer.weights:
            short = variable.name.split("/")[-1].split(":")[0]
            key = f"{layer.name}/{short}"
            if key in variables:
                raise ModelError(
                    f"layer {layer.name!r} has two weights named {short!r} ({variables[key].name}, {variable.name}); "
                    "give each weight of a layer its own name, and do not nest models as layers"
                )
            variables[key] = variable
    return variables


def get_weights(model):
    """A copy of every weight as numpy arrays keyed ``layer/weight``."""
    return {name: v.numpy() for name, v in named_variables(model).items()}


def set_weights(model, weights):
    """Assign weights keyed ``layer/weight``; every variable of the model must be given."""
    variables = named_variables(model)
    if set(weights) != set(variables):
        raise ValueError(
            "saved weights do not match the model: "
            f"missing {sorted(set(variables) - set(weights))}, extra {sorted(set(weights) - set(variables))}"
        )
    for name, variable in variables.items():
        variable.assign(weights[name])
