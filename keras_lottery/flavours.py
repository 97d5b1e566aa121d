"""Which Keras a process runs: ``tf_keras`` (legacy Keras 2 with tfmot's pruning wrapper,
the default) or ``keras3`` (Keras 3 with keras-lottery's own masked wrapper, on the
backend ``KERAS_BACKEND`` names: ``tensorflow``, ``jax`` or ``torch``).

The choice is made once per process, before TensorFlow or Keras is imported, as Keras 3
chooses its backend: :func:`choose` records it (the command line does so from the
recipe's ``keras`` field or ``--keras``; :func:`keras_lottery.run` from the recipe or
the model function) and :mod:`keras_lottery.backend` imports accordingly. This module is
TensorFlow-free.
"""

import os
import sys

from keras_lottery.errors import UsageError

TF_KERAS = "tf_keras"
KERAS3 = "keras3"
NAMES = (TF_KERAS, KERAS3)
DEFAULT = TF_KERAS
ENVIRONMENT = "KERAS_LOTTERY_KERAS"  # how the choice reaches keras_lottery.backend (and child processes)


class FlavourError(UsageError):
    """Another Keras than this process already runs, or an unknown one."""


def current():
    """The Keras this process runs (or will run, before ``keras_lottery.backend`` is imported)."""
    if "keras_lottery.backend" in sys.modules:
        return sys.modules["keras_lottery.backend"].FLAVOUR
    return os.environ.get(ENVIRONMENT) or DEFAULT


def loaded():
    """True once ``keras_lottery.backend`` has imported a Keras: the choice is then fixed."""
    return "keras_lottery.backend" in sys.modules


def check(name, where="keras"):
    if name not in NAMES:
        raise FlavourError(f"{where} must be one of {', '.join(NAMES)}, got {name!r}")
    return name


def choose(name, why="the recipe's keras"):
    """Run ``name`` in this process. Before ``keras_lottery.backend`` is imported this sets
    it; afterwards another name than the one running raises :class:`FlavourError`."""
    check(name)
    if loaded():
        running = current()
        if running != name:
            raise FlavourError(
                f"{why} is {name}, but this process already runs {running} (a process runs one Keras); "
                f"run it in a new Python process, or set keras to {running}"
            )
        return name
    os.environ[ENVIRONMENT] = name
    return name


def keras_backend_name():
    """The Keras 3 backend this process uses or will use (``KERAS_BACKEND``, else Keras's
    configuration file, else tensorflow); ``tensorflow`` for tf_keras."""
    if current() == TF_KERAS:
        return "tensorflow"
    if "keras" in sys.modules and hasattr(sys.modules["keras"], "backend"):
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND") or "tensorflow"


def of_model(model):
    """``keras3`` for a model built with Keras 3 (``import keras``), ``tf_keras`` for one built
    with tf_keras, None for anything else."""
    modules = [c.__module__ for c in type(model).__mro__]
    if any(m == "keras" or m.startswith("keras.") for m in modules):
        return KERAS3
    if any(m == "tf_keras" or m.startswith("tf_keras.") for m in modules):
        return TF_KERAS
    return None


def of_function(function):
    """The Keras a model function is written with, read from the modules its module imports
    (``import keras`` → keras3, ``import tf_keras`` or ``keras_lottery.keras`` → tf_keras);
    None when its module names neither."""
    names = set()
    for value in getattr(function, "__globals__", {}).values():
        module = getattr(value, "__name__", None) if type(value).__name__ == "module" else getattr(value, "__module__", None)
        if isinstance(module, str):
            names.add(module.split(".")[0])
    if "tf_keras" in names:
        return TF_KERAS
    if "keras" in names:
        return KERAS3
    return None


def resolve(recipe, model=None):
    """``recipe`` with its ``keras`` field set to the Keras its model is written with, chosen
    for this process (:func:`choose`).

    A recipe that leaves ``keras`` at the default and whose model is the user's function
    (``model``, or a recipe's ``module:function``) written with Keras 3 (``import keras``)
    runs on Keras 3: the run records ``"keras": "keras3"``.
    """
    import dataclasses

    name = recipe.keras
    if name == DEFAULT:
        function = model
        if function is None:
            from keras_lottery import models

            if models.is_user_function(recipe.model.name):
                function = models.import_function(recipe.model.name)
        found = of_function(function) if callable(function) else None
        if found is not None:
            name = found
    choose(name, why="the recipe's keras" if name == recipe.keras else "the model function's Keras")
    return recipe if name == recipe.keras else dataclasses.replace(recipe, keras=name)


def describe():
    """One line saying which Keras (and backend) this process runs."""
    name = current()
    return "keras: tf_keras (legacy Keras 2) with tfmot's pruning wrapper" if name == TF_KERAS else \
        f"keras: Keras 3 on the {keras_backend_name()} backend, keras-lottery's masked wrapper"


def of_run(run_dir):
    """The Keras a run directory was trained with (its ``recipe.json``; tf_keras for runs
    made before 0.3, or when the file cannot be read: the command reading it says so)."""
    import json

    from keras_lottery.rundir import layout

    try:
        saved = json.loads(layout.recipe_file(run_dir).read_text())
    except (OSError, ValueError, RecursionError):
        return DEFAULT
    name = saved.get("keras", DEFAULT) if isinstance(saved, dict) else DEFAULT
    return name if name in NAMES else DEFAULT


def choose_for_run(run_dir):
    """Run the Keras ``run_dir`` was trained with (for export and analyses, which rebuild its model)."""
    return choose(of_run(run_dir), why=f"{run_dir} was trained with Keras that")
