"""Variants: what each round trains on the round's sparsity.

A variant is one registered object that says which mask it trains, which weights it
starts from and from which iteration. The ticket is the method itself; every other
variant is a control that a recipe may list in ``controls``. Every other module (the
recipe validator, the command line, results, integrity checks, failures, plots and the
report) reads this registry, so a new control is one class here plus its tests::

    @register
    class MyControl(Variant):
        name = "my_control"
        label = "my control"
        style = {"linestyle": "-.", "marker": "D"}

        def masks(self, round_):
            return ...  # a {layer: 0/1 array} with round_.ticket_masks()'s shapes

The methods receive a :class:`keras_lottery.lottery.rounds.Round`: the trial's round
with its ticket masks, its rewound weights and seeds derived for this variant.

Pure Python and numpy: parsing a recipe reads this registry without TensorFlow.
"""

from keras_lottery import pruning
from keras_lottery.registry import Registry

REGISTRY = Registry("variant")
TICKET = "ticket"
# The controls of Frankle & Carbin (2019), a recipe's default.
PAPER_CONTROLS = ("random_reinit", "random_prune")


class Variant:
    """The ticket: the criterion's mask, survivors started as the rewinding mode says."""

    name = TICKET
    label = "ticket"
    description = "the pruning criterion's mask, surviving weights rewound"
    style = {"linestyle": "-", "marker": "o"}

    def masks(self, round_):
        """The 0/1 masks this variant trains, keyed by layer."""
        return round_.ticket_masks()

    def start_weights(self, round_):
        """The weights (before masking) this variant starts from, keyed ``layer/weight``."""
        return round_.rewound_weights()

    def start_iteration(self, round_):
        """The optimizer iteration (and so the learning-rate schedule's position) it starts at."""
        return round_.start_iteration

    @property
    def is_control(self):
        return self.name != TICKET


register = REGISTRY.register_class  # class decorator: registers the variant by its ``name``
get = REGISTRY.__getitem__
names = REGISTRY.names  # every variant, the ticket first, in registration order


def controls():
    """The names a recipe may list in ``controls``."""
    return tuple(name for name, variant in REGISTRY.items() if variant.is_control)


register(Variant)


@register
class RandomReinit(Variant):
    """The paper's random reinitialization: the ticket's mask, weights drawn afresh."""

    name = "random_reinit"
    label = "random reinit"
    description = "the ticket's mask, weights drawn afresh from the same initializer"
    style = {"linestyle": "--", "marker": "s"}

    def start_weights(self, round_):
        return round_.fresh_weights(round_.seed(self.name))


@register
class RandomPrune(Variant):
    """The paper's random pruning: a random mask with the ticket's per-layer sparsity."""

    name = "random_prune"
    label = "random pruning"
    description = "a random mask with the ticket's per-layer sparsity, weights rewound"
    style = {"linestyle": ":", "marker": "^"}

    def masks(self, round_):
        return pruning.random_masks(round_.ticket_masks(), round_.seed(self.name))
