"""The Keras 3 masked wrapper, written on ``keras.ops`` (any Keras 3 backend).

Keras 3 has no pruning API, and tfmot works only with tf_keras. :class:`MaskedLayer`
wraps one layer of the model and holds a non-trainable mask variable per weight it prunes
(the layer's own, or those of layers inside it: a nested model's convolutions,
MultiHeadAttention's projections), of the shape of that weight, which keras-lottery sets
between rounds. At every forward pass the wrapped layer computes with ``weight * mask`` in
place of each weight (nothing is assigned, so this is
pure and traces under ``jax.jit`` and ``tf.function`` alike): a masked weight takes no
part in the output, gets a gradient of exactly zero, and so stays exactly zero once
:func:`keras_lottery.masking.set_masks` has zeroed it.

Which weights are pruned: those :mod:`keras_lottery.models.prunable` finds (a custom
layer's ``get_prunable_weights()``, the interface tfmot's ``PrunableLayer`` uses, so one
custom layer serves both paths). A weight must be held in an attribute of its layer
(``self.kernel = self.add_weight(...)`` in ``build``) or of its RNN cell, which is how the
layer reads it in ``call``.

The wrapper serializes with the model (``get_config``/``from_config``, the masks saved as
its weights in a ``.keras`` file); :func:`keras_lottery.masking.strip` returns the plain
model with masked weights zero.
"""

import contextlib

from keras_lottery.backend import keras
from keras_lottery.models.errors import ModelError


def _legacy_spec(layer):
    """The one pruned weight of a wrapper saved before wrappers named their weights: the
    layer's ``get_prunable_weights()`` if it defines one, else its ``kernel``."""
    from keras_lottery.models import prunable

    method = getattr(layer, "get_prunable_weights", None)
    found = list(method()) if callable(method) else [getattr(layer, "kernel", None)]
    if len(found) != 1 or found[0] is None:
        raise ModelError(
            f"layer {layer.name!r} ({type(layer).__name__}) must have one weight to prune: a `kernel`, or a "
            f"get_prunable_weights() method returning one weight (it gave {len(found)})"
        )
    index = next(i for i, v in enumerate(layer.weights) if v is found[0])
    return (), prunable.short_key(index, found[0])


def _holder(layer, variable):
    """``(object, attribute)`` holding ``variable``: ``layer`` itself (Dense keeps its kernel in
    ``_kernel``) or a layer directly inside it (an RNN's cell)."""
    from keras_lottery.models import prunable

    for holder in [layer, *prunable.children(layer), *filter(None, [getattr(layer, "cell", None)])]:
        for name, value in vars(holder).items():
            if value is variable:
                return holder, name
    raise ModelError(
        f"layer {layer.name!r} ({type(layer).__name__}): the weight it prunes ({variable.name}) is not held in an "
        "attribute of the layer; create it in build() as self.<name> = self.add_weight(...)"
    )


@keras.saving.register_keras_serializable(package="keras_lottery")
class MaskedLayer(keras.layers.Wrapper):
    """``layer`` computing with ``weight * mask`` for each weight it prunes; ``pruned`` lists
    them as ``(names of the layers below layer, weight)`` (``[((), "kernel")]`` for a Dense,
    ``[(("query",), "kernel"), ...]`` for MultiHeadAttention). Each mask is a non-trainable
    variable, all ones until set."""

    def __init__(self, layer, pruned=None, **kwargs):
        super().__init__(layer, **kwargs)
        self.pruned = None if pruned is None else [(tuple(inside), str(short)) for inside, short in pruned]

    def build(self, input_shape=None):
        from keras_lottery.models import prunable

        if not self.layer.built:
            self.layer.build(input_shape)
        if self.pruned is None:
            self.pruned = [_legacy_spec(self.layer)]
        self._targets, self.masks = [], []
        for inside, short in self.pruned:
            owner, weight = prunable.resolve(self.layer, (inside, short))
            self._targets.append(_holder(owner, weight))
            self.masks.append(self.add_weight(
                name="_".join([*inside, short, "mask"]), shape=tuple(weight.shape), initializer="ones",
                trainable=False, dtype=weight.dtype,
            ))
        self.built = True

    def pruned_weights(self):
        return [getattr(holder, name) for holder, name in self._targets]

    def call(self, inputs, *args, training=None, **kwargs):
        weights = self.pruned_weights()
        # Each layer reads its weight from this attribute: for this call it holds weight * mask.
        for (holder, name), weight, mask in zip(self._targets, weights, self.masks):
            object.__setattr__(holder, name, keras.ops.multiply(weight, mask))
        try:
            if training is not None:
                kwargs["training"] = training
            return self.layer(inputs, *args, **kwargs)
        finally:
            for (holder, name), weight in zip(self._targets, weights):
                object.__setattr__(holder, name, weight)

    def compute_output_spec(self, *args, **kwargs):
        return self.layer.compute_output_spec(*args, **kwargs)

    def get_config(self):
        config = super().get_config()
        if self.pruned is not None:
            config["pruned"] = [[list(inside), short] for inside, short in self.pruned]
        return config


WRAPPER = MaskedLayer


def wrap_layer(layer, pruned=None):
    """``layer`` inside a :class:`MaskedLayer` named ``masked_<layer>`` pruning the weights
    ``pruned`` (see :class:`MaskedLayer`)."""
    return MaskedLayer(layer, pruned=pruned, name=f"masked_{layer.name}")


def specs(wrapper):
    """What a wrapper prunes, ``[(names below its layer, weight)]``, in the order of its masks."""
    return wrapper.pruned


def weights_and_masks(wrapper):
    """``[(pruned weight, mask variable)]`` of a wrapper."""
    return list(zip(wrapper.pruned_weights(), wrapper.masks))


def cloning():
    """Nothing to adjust while cloning on Keras 3 (see the tf_keras wrapper's)."""
    return contextlib.nullcontext()


def callbacks():
    """Callbacks ``fit`` needs for this wrapper: none (the masks change only between rounds)."""
    return []
