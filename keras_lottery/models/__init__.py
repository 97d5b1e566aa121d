"""Models: the paper's networks by name, or the user's own.

A recipe's ``model.name`` is a built-in name (:data:`BUILTIN`) or ``module:function``,
a function of the user's that returns an uncompiled Keras model. The Python API also
takes the function itself. Builders live in :mod:`.lenet`, :mod:`.conv`, :mod:`.vgg`
and :mod:`.resnet`; :mod:`.layers` finds the layers to prune and their kinds.

:func:`source` turns a recipe's model (or the user's function) into a
:class:`~.builder.ModelSource` whose ``build(seed)`` returns the plain model;
:func:`prunable_layers`, :func:`rates_by_layer` and :func:`describe_pruning` choose the
layers to prune by type (see :mod:`.layers`).

This module is TensorFlow-free (parsing a recipe reads it); the builders import
TensorFlow on first use.
"""

import importlib
import os
import re
import sys

from keras_lottery.models.errors import ModelError  # noqa: F401

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
PYTHON_PREFIX = "python:"  # a function passed to keras_lottery.run, as its run's recipe.json records it


def is_user_function(name):
    """True for ``module:function`` names (the user's model functions)."""
    return bool(USER_FUNCTION.match(name))


def python_name(function):
    """How a run records a model function passed from Python: ``python:module.qualname``."""
    module = getattr(function, "__module__", None) or "?"
    return f"{PYTHON_PREFIX}{module}.{getattr(function, '__qualname__', type(function).__name__)}"


def is_python_function(name):
    return name.startswith(PYTHON_PREFIX)


def import_function(spec):
    """The function named by ``module:function``, imported from the current directory or PYTHONPATH.

    A missing module or function raises :class:`ModelError` saying how to make it importable.
    """
    module_name, _, function_name = spec.partition(":")
    where = f"model.name {spec!r}"
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)  # console scripts do not put the current directory on the path
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            file = module_name.replace(".", "/") + ".py"
            raise ModelError(
                f"{where}: no module named {missing!r} (run from the folder holding {file} "
                "or add that folder to PYTHONPATH)"
            ) from None
        raise ModelError(f"{where}: importing {module_name!r} failed: no module named {missing!r} (install it)") from None
    function = getattr(module, function_name, None)
    if function is None:
        raise ModelError(
            f"{where}: module {module_name!r} ({getattr(module, '__file__', '?')}) has no function "
            f"{function_name!r}; define it there or fix the name"
        )
    if not callable(function):
        raise ModelError(f"{where}: {module_name}.{function_name} is a {type(function).__name__}, not a function")
    return function


_LAYERS = ("build", "kernel_layers", "kernel_sizes", "kernel_weight_count", "layer_kind", "layer_kinds",
           "seeded_initializers", "PRUNABLE_TYPES", "is_kernel_layer", "prunable_layers", "rates_by_layer",
           "describe_pruning")
_SOURCE = ("source", "ModelSource")


def __getattr__(name):
    if name in _LAYERS:
        from keras_lottery.models import layers

        return getattr(layers, name)
    if name in _SOURCE:
        from keras_lottery.models import builder

        return getattr(builder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
