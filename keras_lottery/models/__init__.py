"""Models: the paper's networks by name, or the user's own.

A recipe's ``model.name`` is a built-in name (:data:`BUILTIN`) or ``module:function``,
a function of the user's that returns an uncompiled Keras model. The Python API also
takes the function itself. Builders live in :mod:`.lenet`, :mod:`.conv`, :mod:`.vgg`
and :mod:`.resnet`; :mod:`.layers` finds the layers to prune and their kinds.

This module is TensorFlow-free (parsing a recipe reads it); the builders import
TensorFlow on first use.
"""

import importlib
import re

# name -> "module:function" of the builder, imported when the model is built.
BUILTIN = {
    "lenet_300_100": "keras_lottery.models.lenet:lenet_300_100",
    "mlp": "keras_lottery.models.lenet:mlp",
    "conv2": "keras_lottery.models.conv:conv2",
    "conv4": "keras_lottery.models.conv:conv4",
    "conv6": "keras_lottery.models.conv:conv6",
    "vgg19": "keras_lottery.models.vgg:vgg19",
    "resnet18": "keras_lottery.models.resnet:resnet18",
}
USER_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_user_function(name):
    """True for ``module:function`` names (the user's model functions)."""
    return bool(USER_FUNCTION.match(name))


def import_function(spec):
    """The function named by ``module:function`` (imported from the current directory or PYTHONPATH)."""
    module_name, _, function_name = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, function_name)


_LAYERS = ("build", "kernel_layers", "kernel_sizes", "kernel_weight_count", "layer_kind", "layer_kinds",
           "seeded_initializers")


def __getattr__(name):
    if name in _LAYERS:
        from keras_lottery.models import layers

        return getattr(layers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
