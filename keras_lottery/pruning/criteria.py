"""Mask criteria: how the weights of a layer are ranked for pruning.

A criterion is one registered scoring function of ``(w_init, w_final)``: the weights
the round started from (θ0, or θk with late rewinding) and its trained weights, as
numpy arrays of one layer's kernel. Higher scores survive. ``pruning.criterion`` in a
recipe names one. Adding a criterion is one function here plus its tests::

    @register("my_score")
    def my_score(w_init, w_final):
        return ...  # an array of w_final's shape

Pure numpy: parsing a recipe reads this registry without TensorFlow.
"""

import numpy as np

REGISTRY = {}
DEFAULT = "large_final"


def register(name):
    def add(function):
        if name in REGISTRY:
            raise ValueError(f"a criterion named {name!r} is already registered")
        REGISTRY[name] = function
        return function

    return add


def get(name):
    return REGISTRY[name]


def names():
    return tuple(REGISTRY)


@register("large_final")
def large_final(w_init, w_final):
    """Magnitude of the trained weights, |w_final| (Frankle & Carbin 2019)."""
    return np.abs(w_final)
