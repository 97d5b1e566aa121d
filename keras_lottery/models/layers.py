"""The layers of a model: which ones are pruned and of what kind; building the built-in models.

Every builder takes ``(input_shape, num_classes, config, kernel_init)`` and returns a
plain (unwrapped) ``tf_keras`` functional model. ``kernel_init()`` returns a freshly
seeded initializer on every call, so one seed fixes every layer's initial weights.

Layer names say how a layer is pruned (see :func:`layer_kind`): ``conv*`` layers are
convolutions, ``shortcut*`` are 1x1 downsampling shortcuts, ``output`` is the last
dense layer, and any other dense layer is a hidden fully-connected layer.
"""

from keras_lottery.backend import keras
from keras_lottery.models import BUILTIN, import_function


def layer_kind(layer):
    """The pruning kind of a layer with a kernel: conv, shortcut, output or dense."""
    if layer.name.startswith("shortcut"):
        return "shortcut"
    if isinstance(layer, keras.layers.Conv2D):
        return "conv"
    if layer.name == "output":
        return "output"
    return "dense"


def kernel_layers(model):
    """The conv and dense layers of an unwrapped model, in order."""
    return [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
    ]


def seeded_initializers(name, seed):
    """A callable that returns a new initializer ``name`` with the next seed on each call."""
    counter = iter(range(10**9))

    def make():
        return keras.initializers.get({"class_name": name, "config": {"seed": seed * 1000 + next(counter)}})

    return make


def build(config, input_shape, num_classes, seed):
    """Build the recipe's model (unwrapped) with initial weights fixed by ``seed``."""
    builder = import_function(BUILTIN[config.name])
    return builder(tuple(input_shape), num_classes, config, seeded_initializers(config.initializer, seed))


def kernel_weight_count(model):
    """Number of conv/dense kernel weights: what the paper counts as the network's weights."""
    return sum(kernel_sizes(model).values())


def layer_kinds(model):
    """``{layer name: kind}`` for the conv and dense layers of an unwrapped model."""
    return {layer.name: layer_kind(layer) for layer in kernel_layers(model)}


def kernel_sizes(model):
    """``{layer name: number of kernel weights}`` for an unwrapped model."""
    return {layer.name: int(layer.kernel.shape.num_elements()) for layer in kernel_layers(model)}
