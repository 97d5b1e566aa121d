"""Pruned units: the keys masks are saved under, and the weight each one masks.

A mask is keyed by its *unit*. A layer with one pruned weight, its ``kernel`` (Dense, the
convolutions: every model of keras-lottery 0.3), is the unit named after the layer, so
run directories made before layers could have several pruned weights stay valid. Any
other pruned weight is its own unit, keyed as its weight is (``layer/weight``, e.g.
``lstm/recurrent_kernel``). :func:`weight_key` gives the key of the weight a unit masks
in the ``layer/weight`` dictionaries of :mod:`keras_lottery.masking`.

Pure Python: the rounds and variants read it without TensorFlow.
"""


def weight_key(unit):
    """The ``layer/weight`` key of the weight masked by ``unit``."""
    return unit if "/" in unit else f"{unit}/kernel"


def unit_of(key):
    """The unit masking the weight keyed ``key`` (``fc1/kernel`` -> ``fc1``)."""
    layer, _, weight = key.rpartition("/")
    return layer if weight == "kernel" and "/" not in layer else key


def pruned(weights, units):
    """``{unit: array}``: the weights the ``units`` mask, from a ``layer/weight`` dictionary."""
    return {unit: weights[weight_key(unit)] for unit in units}
