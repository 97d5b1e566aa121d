"""Mask criteria: how the weights of a layer are ranked for pruning.

A criterion is one registered scoring function of ``(w_init, w_final)``: the weights
the round started from (θ0, or θk with late rewinding; what the rewinding mode started
it from) and its trained weights, as numpy arrays of one layer's kernel. Higher scores
survive; scores must be finite (already-pruned weights are ranked below every score by
:mod:`.masks`, so they never come back), and equal scores are broken by position.
Besides the paper's ``large_final`` the criteria of Zhou, Lan, Liu & Yosinski (NeurIPS
2019, "Deconstructing Lottery Tickets: Zeros, Signs, and the Supermask") are here. ``pruning.criterion`` in a
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


@register("small_final")
def small_final(w_init, w_final):
    """The smallest trained weights survive, −|w_final| (Zhou et al. 2019)."""
    return -np.abs(w_final)


@register("large_init")
def large_init(w_init, w_final):
    """Magnitude where the round started, |w_init| (Zhou et al. 2019)."""
    return np.abs(w_init)


@register("large_init_large_final")
def large_init_large_final(w_init, w_final):
    """Large at the start and after training: min(|w_init|, |w_final|) (Zhou et al. 2019),
    so a weight survives only if both of its magnitudes are high."""
    return np.minimum(np.abs(w_init), np.abs(w_final))


@register("magnitude_increase")
def magnitude_increase(w_init, w_final):
    """How much the magnitude grew in training, |w_final| − |w_init| (Zhou et al. 2019)."""
    return np.abs(w_final) - np.abs(w_init)


@register("movement")
def movement(w_init, w_final):
    """How far the weight moved in training, |w_final − w_init| (Zhou et al. 2019)."""
    return np.abs(w_final - w_init)


@register("large_final_same_sign")
def large_final_same_sign(w_init, w_final):
    """|w_final| for weights whose sign did not change in training (w_init · w_final > 0),
    the others ranked after all of them: their score −1 / (1 + |w_final|) is negative,
    below every same-sign score, and still orders them by |w_final| (Zhou et al. 2019;
    applied to θ0 untrained, this mask is the paper's supermask)."""
    magnitude = np.abs(np.asarray(w_final, np.float64))
    same = np.asarray(w_init, np.float64) * np.asarray(w_final, np.float64) > 0
    return np.where(same, magnitude, -1.0 / (1.0 + magnitude))
