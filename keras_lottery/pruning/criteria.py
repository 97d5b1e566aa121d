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

from keras_lottery.registry import Registry

REGISTRY = Registry("criterion")
DEFAULT = "large_final"
register = REGISTRY.register_function  # register("name") decorates a scoring function
get = REGISTRY.__getitem__
names = REGISTRY.names


@register("large_final")
def large_final(w_init, w_final):
    """Magnitude of the trained weights, |w_final| (Frankle & Carbin 2019)."""
    return np.abs(w_final)
