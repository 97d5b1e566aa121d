"""Rewinding modes: where a pruned round starts, in weights and in the schedule.

A mode is one registered object (``rewind.mode`` in a recipe). It says which weights a
pruned round's survivors start from and at which optimizer iteration (which also fixes
the learning-rate schedule's position). ``weights`` is the paper's: survivors reset to
θk, the weights the dense round had at iteration k (θ0 when k = 0, Frankle & Carbin
2019; late rewinding for k > 0, Frankle et al. 2019), training continuing from k.

Pure Python: parsing a recipe reads this registry without TensorFlow.
"""

from keras_lottery.registry import Registry

REGISTRY = Registry("rewinding mode")


class Mode:
    """Weight rewinding: survivors start from θk, training from iteration k."""

    name = "weights"
    description = "survivors reset to θk; training continues from iteration k"

    def start_weights(self, round_):
        """The weights (before masking) a pruned round's ticket starts from."""
        return round_.theta_k()

    def start_iteration(self, round_):
        return round_.recipe.rewind.iteration


register = REGISTRY.register_class  # class decorator: registers the mode by its ``name``
get = REGISTRY.__getitem__
names = REGISTRY.names


register(Mode)
