"""Models: the paper's networks by name, or the user's own.

A recipe's ``model.name`` is a built-in name (:data:`BUILTIN`) or ``module:function``,
a function of the user's that returns an uncompiled Keras model. The Python API also
takes the function itself. Builders live in :mod:`.lenet`, :mod:`.conv`, :mod:`.vgg`
and :mod:`.resnet`; :mod:`.prunable` is the table of prunable layer types and finds the
weights to prune at any depth, :mod:`.layers` their kinds.

:func:`source` turns a recipe's model (or the user's function) into a
:class:`~.builder.ModelSource` whose ``build(seed)`` returns the plain model;
:func:`prunable_layers`, :func:`rates_by_layer` and :func:`describe_pruning` choose the
layers to prune by type (see :mod:`.layers`).

Recipes that name code
----------------------
A recipe's ``module:function`` is code that keras-lottery imports and calls, and recipes and
run directories travel between people. So :func:`import_function` calls only a *function
of the user's own*: a Python function (``def``) defined in a module that is neither part of
Python's standard library nor of keras-lottery's own dependencies (TensorFlow, NumPy, ...,
everything ``pip show keras-lottery`` pulls in, and keras-lottery itself). Such a name is
refused before its module is imported, and a built-in, a class or any other callable is
refused before it is called. One exception: Keras's model builders
(``keras.applications.*``, ``tf_keras.applications.*``), which return a model and nothing
else. ``keras-lottery run`` says which file the function comes from; ``export``,
``report``, ``analyze`` and ``recipes`` never call it (they rebuild the model from the
architecture the run saved, or do without it). See ``docs/recipes-that-name-code.md``.

This module is TensorFlow-free (parsing a recipe reads it); the builders import
TensorFlow on first use.
"""

import functools
import importlib
import inspect
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
    "transformer": "keras_lottery.models.transformer:transformer",
}
TEXT_MODELS = ("transformer",)  # built-in models of token ids: they need model.vocabulary_size
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


# Keras's own model builders: the one kind of function of a dependency a recipe may name.
KERAS_BUILDERS = ("keras.applications", "keras.src.applications", "tf_keras.applications",
                  "tf_keras.src.applications")
# Always counted as keras-lottery's dependencies, even where package metadata is missing.
_DEPENDENCIES = ("keras_lottery", "tensorflow", "tf_keras", "keras", "tensorflow_model_optimization",
                 "tensorflow_datasets", "numpy", "scipy", "sklearn", "matplotlib", "click", "jax", "jaxlib",
                 "torch", "pip", "setuptools", "pkg_resources")


@functools.lru_cache(maxsize=1)
def dependency_modules():
    """Top-level module names of keras-lottery's dependencies (all of what installing it pulls in)."""
    import importlib.metadata as metadata

    found, names = set(), set(_DEPENDENCIES)
    pending = ["keras-lottery", "jax", "torch"]
    while pending:
        wanted = pending.pop()
        key = re.sub(r"[-_.]+", "-", wanted).lower()
        if key in found:
            continue
        found.add(key)
        try:
            requires = metadata.distribution(wanted).requires or []
        except (metadata.PackageNotFoundError, ValueError, OSError):
            continue
        for requirement in requires:
            if "extra ==" not in requirement:
                match = re.match(r"[A-Za-z0-9._-]+", requirement)
                if match:
                    pending.append(match.group(0))
    try:
        for module, distributions in metadata.packages_distributions().items():
            if any(re.sub(r"[-_.]+", "-", d).lower() in found for d in distributions):
                names.add(module)
    except (OSError, ValueError):
        pass
    return frozenset(names)


def _foreign(module_name):
    """Why ``module_name`` is not the user's own code (standard library or a dependency), or None."""
    if any(module_name == prefix or module_name.startswith(prefix + ".") for prefix in KERAS_BUILDERS):
        return None
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        return "Python's standard library"
    if top in dependency_modules():
        return f"{top}, a package keras-lottery depends on"
    return None


def _refused(spec, what, where):
    return ModelError(
        f"model.name {spec!r}: {what} is from {where}, not a model function of your own; a recipe may name only a "
        "function defined in your own module (or a Keras model builder such as keras.applications:ResNet50), "
        "see docs/recipes-that-name-code.md"
    )


def import_function(spec):
    """The function named by ``module:function``, imported from the current directory or PYTHONPATH.

    Only a Python function of the user's own module (or a Keras model builder) is returned;
    anything else is refused before it is imported or called (see "Recipes that name code"
    above). A missing module or function raises :class:`ModelError` saying how to make it
    importable.
    """
    module_name, _, function_name = spec.partition(":")
    where = f"model.name {spec!r}"
    foreign = _foreign(module_name)
    if foreign:
        raise _refused(spec, f"module {module_name!r}", foreign)
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
    defined_in = getattr(function, "__module__", None) or ""
    if not inspect.isfunction(function):
        kind = "a class" if inspect.isclass(function) else ("a built-in function" if inspect.isbuiltin(function)
                                                             else a_or_an(type(function).__name__))
        foreign = _foreign(defined_in) if defined_in else None
        if foreign:
            raise _refused(spec, f"{module_name}.{function_name} ({kind} of {defined_in})", foreign)
        raise ModelError(
            f"{where}: {module_name}.{function_name} is {kind}, not a function; name a function (def) that "
            "returns the model"
        )
    foreign = _foreign(defined_in)
    if foreign:
        raise _refused(spec, f"{module_name}.{function_name} (defined in {defined_in})", foreign)
    return function


def builtin_function(name):
    """The builder of the built-in model ``name`` (one of :data:`BUILTIN`)."""
    module_name, _, function_name = BUILTIN[name].partition(":")
    return getattr(importlib.import_module(module_name), function_name)


def origin(function):
    """The file a model function is defined in (for ``run`` to say), or None."""
    try:
        return inspect.getsourcefile(function) or inspect.getfile(function)
    except (TypeError, OSError):
        return None


def a_or_an(word):
    """``word`` with its indefinite article: "an int", "a dict"."""
    return f"{'an' if str(word)[:1].lower() in 'aeiou' else 'a'} {word}"


_LAYERS = ("build", "kernel_layers", "kernel_sizes", "kernel_weight_count", "layer_kinds",
           "seeded_initializers", "is_kernel_layer", "prunable_layers", "rates_by_layer",
           "describe_pruning", "identical_weights")
_SOURCE = ("source", "ModelSource")


def __getattr__(name):
    if name in _LAYERS:
        from keras_lottery.models import layers

        return getattr(layers, name)
    if name in _SOURCE:
        from keras_lottery.models import builder

        return getattr(builder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
