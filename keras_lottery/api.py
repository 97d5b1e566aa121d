"""The Python API: run a recipe on your own model and data.

::

    import keras_lottery as kl

    recipe = kl.load_recipe("quickstart_digits", overrides={"training.iterations": 300})
    result = kl.run(recipe, model=build_model, data=(x_train, y_train, x_test, y_test), out="runs/mine")
    print(result.table())

Everything the command line guarantees holds here: resuming, masks exactly zero,
rewinding bit for bit, the controls, results files, report, TensorBoard and export.
Bad input raises the package's :class:`keras_lottery.errors.UsageError` subclasses
with the same one-line messages the command line prints.
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from keras_lottery import flavours
from keras_lottery.config import catalog
from keras_lottery.config import recipe as recipes
from keras_lottery.config.recipe import Recipe, RecipeError
from keras_lottery.lottery import variants


def load_recipe(name="quickstart_digits", overrides=None, rounds=None, trials=None):
    """A shipped recipe by name (``keras-lottery recipes`` lists them) or a recipe file.

    ``overrides`` maps dotted keys to values, e.g. ``{"training.iterations": 300}``
    (or is a list of ``"key.path=JSON"`` strings, as ``--set`` takes them).
    """
    if not isinstance(name, (str, Path)):
        raise RecipeError(
            f"recipe must be a shipped recipe's name (e.g. \"quickstart_digits\") or a recipe file's path, "
            f"got {type(name).__name__ if name is not None else 'None'}"
        )
    if isinstance(overrides, dict):
        overrides = [f"{key}={_override_json(key, value)}" for key, value in overrides.items()]
    elif overrides is not None and (isinstance(overrides, (str, bytes))
                                    or not all(isinstance(item, str) for item in overrides)):
        raise RecipeError('overrides must be a dict such as {"training.iterations": 300} or a list of '
                          '"key.path=JSON" strings')
    return recipes.load(catalog.find(str(name)), tuple(overrides or ()), rounds=rounds, trials=trials)


def _override_json(key, value):
    """``value`` as JSON; numpy scalars and arrays count as the numbers and lists they hold."""
    def plain(obj):
        item = getattr(obj, "item", None) if type(obj).__module__ == "numpy" else None
        if callable(item):
            return obj.tolist() if getattr(obj, "ndim", 0) else item()
        raise TypeError

    try:
        return json.dumps(value, default=plain, allow_nan=False)
    except (TypeError, ValueError):
        raise RecipeError(
            f"overrides[{key!r}]: {type(value).__name__} {value!r:.60} is not a recipe value; pass a number, a string, "
            "true/false, None, a list or a dict"
        ) from None
    except RecursionError:
        raise RecipeError(f"overrides[{key!r}]: the value is nested too deeply; recipe values are shallow") from None


@dataclass
class Result:
    """A finished (or partly failed) run: its directory and results rows; ``model``, the
    function given to :func:`run`, builds the model where Keras cannot rebuild the saved
    architecture on export."""

    run_dir: Path
    rows: list
    recipe: Recipe
    report: Path = None
    model: object = None

    def table(self):
        """The table ``keras-lottery run`` prints: per round, each variant's early stop."""
        from keras_lottery import results

        return results.table(self.rows, self.recipe.variants)

    def export(self, round_index, out, trial=0, variant=variants.TICKET, weights="trained"):
        """Write one trial/round/variant as a SavedModel, and model.keras on Keras 3 (see ``keras-lottery export``)."""
        return export_ticket(self.run_dir, round_index, out, trial, variant, weights, model=self.model)


def export_ticket(run_dir, round_index, out, trial=0, variant=variants.TICKET, weights="trained", model=None,
                  force=False):
    """Write one trial/round/variant of the run in ``run_dir`` as ``keras-lottery export`` does;
    return the Keras model. ``model``: the function the run's model was built with, used where
    Keras cannot rebuild the architecture the run saved (a tf_keras ConvNeXt, for one)."""
    from keras_lottery import export

    return export.export(Path(run_dir), round_index, out, trial, variant, weights, force=force, model=model)


def _with_user_parts(recipe, model, data):
    """The recipe as the run directory records it: a Python model or data is named as such."""
    from keras_lottery import data as data_module, models

    changes = {}
    if model is not None:
        if not callable(model):
            from keras_lottery.models.errors import ModelError

            raise ModelError(
                f"model must be a function returning a Keras model (build_model(seed) or build_model()), "
                f"got {type(model).__name__}"
            )
        changes["model"] = recipes.ModelConfig(name=models.python_name(model))
    if data is not None:
        changes["dataset"] = dataclasses.replace(recipe.dataset, name=data_module.PYTHON, path=None)
    return dataclasses.replace(recipe, **changes) if changes else recipe


def _uint8_ids(recipe, model, data):
    """``data`` with uint8 inputs as int32 when the model takes ids (an integer input, or an
    Embedding reading it): such inputs are tokens, not images to standardize. Anything
    that cannot be checked here is left for the run to report."""
    import numpy as np

    from keras_lottery import models
    from keras_lottery.errors import UsageError

    if not isinstance(data, (tuple, list)) or len(data) not in (3, 4) or (model is None and
                                                                          recipe.model.name in models.BUILTIN):
        return data  # the built-in models read images
    arrays = len(data) == 4 and all(isinstance(a, np.ndarray) for a in data)
    if arrays:
        x, y, shape = data[0], data[1], tuple(data[0].shape[1:])
        if x.dtype != np.uint8 or not np.issubdtype(y.dtype, np.integer) or y.size == 0:
            return data
        classes = int(max(np.max(data[1]), np.max(data[3]) if np.size(data[3]) else 0)) + 1
    else:
        from keras_lottery.backend import tf

        if not all(isinstance(d, tf.data.Dataset) for d in data):
            return data
        spec = data[0].element_spec
        if not (isinstance(spec, tuple) and len(spec) == 2 and getattr(spec[0], "dtype", None) == tf.uint8
                and spec[0].shape.rank):
            return data
        shape, classes = None, None
    from keras_lottery.models import layers

    try:
        if shape is None:  # datasets: the classes are those of the training labels
            from keras_lottery.data import sources

            x, y = sources.read_dataset("train", data[0])
            shape, classes = tuple(x.shape[1:]), int(np.max(y)) + 1
        plain = models.source(recipe.model if model is None else model, shape, max(classes, 2)).build(0)
        ids = layers.takes_ids(plain)
    except (UsageError, ValueError, TypeError):
        return data
    if not ids:
        return data
    if arrays:
        return (data[0].astype(np.int32), data[1], data[2].astype(np.int32), data[3])
    from keras_lottery.backend import tf

    return tuple(d.map(lambda x, y: (tf.cast(x, tf.int32), y)) for d in data)


def run(recipe, model=None, data=None, out=None, log=print, report=True, workers=1, devices=None):
    """Run ``recipe`` (a :class:`Recipe`, or a shipped name or file as for :func:`load_recipe`).

    - ``model``: a function ``build_model(seed)`` (or with no argument) returning an
      uncompiled Keras model: built with :data:`keras_lottery.keras` (tf_keras), or with
      ``import keras`` (Keras 3), which runs the recipe on Keras 3 (``"keras": "keras3"``)
      on the backend ``KERAS_BACKEND`` names; by default the recipe's.
    - ``data``: numpy arrays ``(x_train, y_train, x_test, y_test)`` (validation is held out
      as the recipe says), or tf.data datasets ``(train, validation, test)``; by default
      the recipe's dataset. Integer inputs are ids, used as given (never normalized), and
      so are uint8 inputs of a model that takes an integer input or reads it with an
      Embedding; other uint8 inputs are images, standardized (see :func:`keras_lottery.data.load`).
    - ``out``: the run directory (default ``runs/<name>-<hash>``).
    - ``workers``: trainings run side by side, this process and ``workers - 1`` worker
      processes (one per CPU core or GPU); the results are the same bit for bit.
      ``devices`` (e.g. ``[0, 1]``) gives each worker its own GPU. A model function or
      data given here travels to the worker processes by value (``cloudpickle``).
    - ``log``: a function taking each line, or a display of
      :mod:`keras_lottery.reporting.progress` (e.g. ``progress.choose()`` for a live one).

    Returns a :class:`Result`; writes the report unless ``report=False``.
    """
    from keras_lottery import lottery

    if not isinstance(recipe, Recipe):
        if not isinstance(recipe, (str, Path)):
            raise RecipeError(f"recipe must be a Recipe (see load_recipe), a recipe name or a path, got {type(recipe).__name__}")
        recipe = load_recipe(recipe)
    recipe = flavours.resolve(recipe, model)  # a model function written with `import keras` runs on Keras 3
    data = _uint8_ids(recipe, model, data)
    recorded = _with_user_parts(recipe, model, data)
    run_dir, rows = lottery.run(recorded, out, log=log, model=model, data_source=data, workers_count=workers,
                                devices=None if devices is None else [str(d) for d in devices])
    result = Result(run_dir=Path(run_dir), rows=rows, recipe=recorded, model=model)
    if report and rows:
        from keras_lottery.reporting import report as reporting

        try:
            result.report = reporting.write([run_dir])
        except reporting.ReportError as err:
            from keras_lottery.reporting import progress

            progress.of(log).line(f"no report: {err}")
    return result
