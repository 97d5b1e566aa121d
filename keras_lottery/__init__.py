"""keras-lottery: the Lottery Ticket Hypothesis (Frankle & Carbin, ICLR 2019) in Keras.

::

    import keras_lottery as kl

    recipe = kl.load_recipe("quickstart_digits", overrides={"pruning.rounds": 3})
    result = kl.run(recipe, model=build_model, data=(x_train, y_train, x_test, y_test))
    print(result.table())

Importing the package does not import TensorFlow; ``kl.keras`` (the Keras this process runs:
tf_keras, which tfmot needs, unless a Keras 3 run chose ``keras3``) and ``kl.run`` import it
on first use. A model function written with ``import keras`` (Keras 3) runs on Keras 3, on
the backend ``KERAS_BACKEND`` names (see :mod:`keras_lottery.flavours`).
"""

__version__ = "0.3.0"

from keras_lottery.errors import UsageError  # noqa: E402,F401

_LAZY = {
    "load_recipe": ("keras_lottery.api", "load_recipe"),
    "run": ("keras_lottery.api", "run"),
    "Result": ("keras_lottery.api", "Result"),
    "export_ticket": ("keras_lottery.api", "export_ticket"),
    "Recipe": ("keras_lottery.config.recipe", "Recipe"),
    "RecipeError": ("keras_lottery.config.recipe", "RecipeError"),
    "DataError": ("keras_lottery.data.sources", "DataError"),
    "ModelError": ("keras_lottery.models.errors", "ModelError"),
    "keras": ("keras_lottery.backend", "keras"),
    "tf": ("keras_lottery.backend", "tf"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'keras_lottery' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
