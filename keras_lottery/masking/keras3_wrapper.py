"""The Keras 3 masked wrapper, written on ``keras.ops`` (any Keras 3 backend).

Keras 3 has no pruning API, and tfmot works only with tf_keras. :class:`MaskedLayer`
wraps one layer and holds a non-trainable mask variable, of the shape of the weight it
prunes, which keras-lottery sets between rounds. At every forward pass the wrapped layer
computes with ``weight * mask`` in place of its weight (nothing is assigned, so this is
pure and traces under ``jax.jit`` and ``tf.function`` alike): a masked weight takes no
part in the output, gets a gradient of exactly zero, and so stays exactly zero once
:func:`keras_lottery.masking.set_masks` has zeroed it.

Which weight is pruned: the layer's ``get_prunable_weights()`` if it defines one (the
interface tfmot's ``PrunableLayer`` uses, so one custom layer serves both paths), else
its ``kernel`` (Dense and the convolutions). The weight must be held in an attribute of
the layer (``self.kernel = self.add_weight(...)`` in ``build``), which is how the layer
reads it in ``call``.

The wrapper serializes with the model (``get_config``/``from_config``, the masks saved as
its weights in a ``.keras`` file); :func:`keras_lottery.masking.strip` returns the plain
model with masked weights zero.
"""

from keras_lottery.backend import keras
from keras_lottery.models.errors import ModelError


def prunable_weight(layer):
    """The one weight of ``layer`` that is pruned (see the module's docstring)."""
    method = getattr(layer, "get_prunable_weights", None)
    found = list(method()) if callable(method) else [getattr(layer, "kernel", None)]
    if len(found) != 1 or found[0] is None:
        raise ModelError(
            f"layer {layer.name!r} ({type(layer).__name__}) must have one weight to prune: a `kernel`, or a "
            f"get_prunable_weights() method returning one weight (it gave {len(found)})"
        )
    return found[0]


def _attribute_of(layer, variable):
    """The name of the attribute of ``layer`` holding ``variable`` (Dense keeps its kernel in ``_kernel``)."""
    for name, value in vars(layer).items():
        if value is variable:
            return name
    raise ModelError(
        f"layer {layer.name!r} ({type(layer).__name__}): the weight it prunes ({variable.name}) is not held in an "
        "attribute of the layer; create it in build() as self.<name> = self.add_weight(...)"
    )


@keras.saving.register_keras_serializable(package="keras_lottery")
class MaskedLayer(keras.layers.Wrapper):
    """``layer`` computing with ``weight * mask`` for its prunable weight; the mask is a
    non-trainable variable named ``<weight>_mask``, all ones until set."""

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        weight = prunable_weight(self.layer)
        self._target = _attribute_of(self.layer, weight)
        self.mask = self.add_weight(
            name=f"{weight.name.split('/')[-1]}_mask", shape=tuple(weight.shape), initializer="ones",
            trainable=False, dtype=weight.dtype,
        )
        self.built = True

    def pruned_weight(self):
        return getattr(self.layer, self._target)

    def call(self, inputs, training=None):
        weight = self.pruned_weight()
        # The layer reads its weight from this attribute: for this call it holds weight * mask.
        object.__setattr__(self.layer, self._target, keras.ops.multiply(weight, self.mask))
        try:
            return self.layer(inputs, training=training)
        finally:
            object.__setattr__(self.layer, self._target, weight)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


WRAPPER = MaskedLayer


def wrap_layer(layer):
    """``layer`` inside a :class:`MaskedLayer` named ``masked_<layer>``."""
    return MaskedLayer(layer, name=f"masked_{layer.name}")


def weight_and_mask(wrapper):
    """The pruned weight of a wrapper and its mask variable."""
    return wrapper.pruned_weight(), wrapper.mask


def callbacks():
    """Callbacks ``fit`` needs for this wrapper: none (the masks change only between rounds)."""
    return []
