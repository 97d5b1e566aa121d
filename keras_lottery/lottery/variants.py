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

import numpy as np

from keras_lottery import pruning
from keras_lottery.pruning import units
from keras_lottery.registry import Registry
from keras_lottery.rundir import layout, storage

REGISTRY = Registry("variant")
TICKET = "ticket"
# The controls of Frankle & Carbin (2019), a recipe's default.
PAPER_CONTROLS = ("random_reinit", "random_prune")
# The ablations of Frankle, Dziugaite, Roy & Carbin (ICLR 2021) that judge any pruning
# method, at initialization or after training, by the control that runs each, as the
# comparison of pruning at initialization names them (random_prune keeps its key: run
# directories made before stay valid).
ABLATIONS = {"random_prune": "layer shuffle", "random_reinit": "reinit", "inverted": "inverted"}


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

    def learning_rate_at(self, round_):
        """The schedule position whose learning rate is held for the round, or None (the
        schedule runs); as the rewinding mode says."""
        return round_.learning_rate_at

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
    """The paper's random pruning: a random mask with the ticket's per-layer sparsity (with
    a block ``pruning.structure``: random whole blocks, as many per layer as the ticket's)."""

    name = "random_prune"
    label = "random pruning"
    description = "a random mask with the ticket's per-layer sparsity, weights rewound (the layer-shuffle ablation)"
    style = {"linestyle": ":", "marker": "^"}

    def masks(self, round_):
        return pruning.random_masks(round_.ticket_masks(), round_.seed(self.name), round_.recipe.pruning.structure)


@register
class Reshuffle(Variant):
    """Zhou et al. (2019)'s "reshuffle" initialization: the ticket's mask; in each pruned
    layer the kernel values the ticket starts from (θk with weight rewinding) are
    permuted at random among the surviving positions, so each layer keeps the multiset
    of its surviving values but not their places. Biases and other weights as the ticket."""

    name = "reshuffle"
    label = "reshuffled survivors"
    description = "the ticket's mask, each layer's surviving start values permuted among the survivors"
    style = {"linestyle": "-.", "marker": "D"}

    def start_weights(self, round_):
        weights = dict(round_.rewound_weights())
        masks = round_.ticket_masks()
        rng = np.random.default_rng(round_.seed(self.name))
        for layer in sorted(masks):
            key = units.weight_key(layer, weights)
            kernel = np.array(weights[key])
            kept = np.asarray(masks[layer]).astype(bool)
            kernel[kept] = rng.permutation(kernel[kept])
            weights[key] = kernel
        return weights


def initializer_std(theta_0, layer):
    """σ of a layer's initializer, measured as the standard deviation of its θ0 kernel
    (every weight of the layer). It matches the initializer's σ for the built-in models
    (e.g. sqrt(2 / (fan_in + fan_out)) for Glorot normal, within sampling error) and is
    defined for any model, including one whose initializer is not known."""
    return float(np.std(np.asarray(theta_0[units.weight_key(layer, theta_0)], np.float64)))


@register
class SignedConstant(Variant):
    """Zhou et al. (2019)'s "signed constant" initialization: the ticket's mask; every
    kernel weight of a pruned layer set to sign(w)·σ, w its start value (θk with weight
    rewinding; a zero counts as positive) and σ the layer's initializer standard
    deviation (:func:`initializer_std`), so each layer's survivors hold exactly the two
    values ±σ. Biases and other weights as the ticket."""

    name = "signed_constant"
    label = "signed constant"
    description = "the ticket's mask, each survivor set to sign(start value) times its layer's initializer σ"
    style = {"linestyle": (0, (3, 1, 1, 1)), "marker": "v"}

    def start_weights(self, round_):
        weights = dict(round_.rewound_weights())
        theta_0 = round_.theta_0()
        for layer in sorted(round_.ticket_masks()):
            key = units.weight_key(layer, weights)
            sigma = np.float32(initializer_std(theta_0, layer))
            weights[key] = np.where(np.asarray(weights[key]) >= 0, sigma, -sigma).astype(np.float32)
        return weights


@register
class Inverted(Variant):
    """The inversion ablation (Frankle et al. 2021): the same criterion's ranking turned
    upside down, keeping in each layer as many weights as the ticket, the lowest-ranked
    ones (a rank inversion, not 1/score), survivors started as the ticket's. See
    :meth:`keras_lottery.lottery.rounds.Round.inverted_masks`."""

    name = "inverted"
    label = "inverted"
    description = "the criterion's lowest-ranked weights at the ticket's per-layer counts, weights rewound"
    style = {"linestyle": (0, (6, 2, 1, 2)), "marker": "x"}

    def masks(self, round_):
        saved = layout.mask(round_.run_dir, round_.trial, round_.index, self.name)
        if saved.is_file():  # chosen once (at initialization it scores the model)
            return storage.load_arrays(saved)
        return round_.inverted_masks()
