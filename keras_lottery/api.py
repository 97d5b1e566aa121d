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
    if isinstance(overrides, dict):
        overrides = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    return recipes.load(catalog.find(str(name)), tuple(overrides or ()), rounds=rounds, trials=trials)


@dataclass
class Result:
    """A finished (or partly failed) run: its directory and results rows."""

    run_dir: Path
    rows: list
    recipe: Recipe
    report: Path = None

    def table(self):
        """The table ``keras-lottery run`` prints: per round, each variant's early stop."""
        from keras_lottery import results

        return results.table(self.rows, self.recipe.variants)

    def export(self, round_index, out, trial=0, variant=variants.TICKET, weights="trained"):
        """Write one trial/round/variant as a SavedModel, and model.keras on Keras 3 (see ``keras-lottery export``)."""
        from keras_lottery import export

        return export.export(self.run_dir, round_index, out, trial, variant, weights)


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


def run(recipe, model=None, data=None, out=None, log=print, report=True, workers=1, devices=None):
    """Run ``recipe`` (a :class:`Recipe`, or a shipped name or file as for :func:`load_recipe`).

    - ``model``: a function ``build_model(seed)`` (or with no argument) returning an
      uncompiled Keras model: built with :data:`keras_lottery.keras` (tf_keras), or with
      ``import keras`` (Keras 3), which runs the recipe on Keras 3 (``"keras": "keras3"``)
      on the backend ``KERAS_BACKEND`` names; by default the recipe's.
    - ``data``: numpy arrays ``(x_train, y_train, x_test, y_test)`` (validation is held out
      as the recipe says), or tf.data datasets ``(train, validation, test)``; by default
      the recipe's dataset.
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
    recorded = _with_user_parts(recipe, model, data)
    run_dir, rows = lottery.run(recorded, out, log=log, model=model, data_source=data, workers_count=workers,
                                devices=None if devices is None else [str(d) for d in devices])
    result = Result(run_dir=Path(run_dir), rows=rows, recipe=recorded)
    if report and rows:
        from keras_lottery.reporting import report as reporting

        try:
            result.report = reporting.write([run_dir])
        except reporting.ReportError as err:
            log(f"no report: {err}")
    return result
