"""Rewinding modes: where a pruned round starts, in weights and in the schedule.

A mode is one registered object (``rewind.mode`` in a recipe). It says which weights a
pruned round's survivors start from, at which optimizer iteration (which also fixes
the learning-rate schedule's position), and whether the learning rate is held at one
value for the whole round. The dense round 0 is the same in every mode. Modes
(Renda, Frankle & Carbin, ICLR 2020, "Comparing Rewinding and Fine-tuning in Neural
Network Pruning"):

- ``weights`` (the default, the paper's): survivors reset to θk, the weights the dense
  round had at iteration k (θ0 when k = 0, Frankle & Carbin 2019; late rewinding for
  k > 0, Frankle et al. 2019), training continuing from k;
- ``learning_rate``: survivors keep the values they were trained to in the round the
  ticket is pruned from; only the schedule and the optimizer state restart at k;
- ``finetune``: survivors keep their trained values and train the same number of
  iterations (k to the end) at the schedule's final learning rate.

Every mode counts iterations from k to ``training.iterations``, so evaluations,
checkpoints, resuming and the early-stop iteration mean the same in each. The variants
(:mod:`.variants`) start as the mode says unless they replace the weights themselves
(``random_reinit`` draws fresh ones). Adding a mode is one class here::

    @register
    class MyMode(Mode):
        name = "my_mode"
        description = "..."

        def start_weights(self, round_):
            return ...  # {"layer/weight": array}, before masking

Pure Python: parsing a recipe reads this registry without TensorFlow.
"""

from keras_lottery.registry import Registry

REGISTRY = Registry("rewinding mode")
DEFAULT = "weights"  # the paper's: survivors reset to θk


class Mode:
    """Weight rewinding: survivors start from θk, training from iteration k."""

    name = DEFAULT
    description = "survivors reset to θk; training continues from iteration k"

    def start_weights(self, round_):
        """The weights (before masking) a pruned round's ticket starts from."""
        return round_.theta_k()

    def start_iteration(self, round_):
        """The optimizer iteration a pruned round starts at (the schedule's position)."""
        return round_.recipe.rewind.iteration

    def learning_rate_at(self, round_):
        """None: the schedule runs from :meth:`start_iteration`; an iteration: the learning
        rate the schedule has there is held for the whole round."""
        return None


register = REGISTRY.register_class  # class decorator: registers the mode by its ``name``
get = REGISTRY.__getitem__
names = REGISTRY.names


register(Mode)


@register
class LearningRateRewinding(Mode):
    """Learning-rate rewinding (Renda et al. 2020): survivors keep the values they were
    trained to in the source round (the previous round when pruning iteratively, the
    dense round for one-shot pruning); the learning-rate schedule and the optimizer
    state restart at iteration k and run to the end."""

    name = "learning_rate"
    description = "survivors keep their trained values; the schedule and optimizer restart at iteration k"

    def start_weights(self, round_):
        return round_.source().trained()


@register
class FineTuning(Mode):
    """Fine-tuning (Renda et al. 2020): survivors keep their trained values and train for
    the same number of iterations as the other modes (k to the end) at the schedule's
    final learning rate (its value at the last iteration), held constant. With a constant
    learning rate (no warmup, no drops) this coincides with learning-rate rewinding."""

    name = "finetune"
    description = "survivors keep their trained values; iterations k to the end at the final learning rate"

    def start_weights(self, round_):
        return round_.source().trained()

    def learning_rate_at(self, round_):
        return round_.recipe.training.iterations - 1
