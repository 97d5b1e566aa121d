"""Rounds: one trial's round as the variants see it, and the rules of the sequence.

The rules live here once each:

- :func:`variants_of_round`: round 0 trains the dense network (the ticket alone);
  every later round trains the ticket and the recipe's controls;
- :func:`source_round`: the round whose trained ticket a round is pruned from (the
  previous round when pruning iteratively, the dense round 0 for one-shot pruning, none
  when pruning at initialization);
- :func:`depends_on`: the rounds whose tickets must have trained for a round to run
  (its source, and round 0, which captures θk; none at initialization).

``pruning.method`` is one of :data:`METHODS`. With ``at_init`` each pruned round is a
sparsity level (:meth:`Round.densities`) whose mask is chosen at θ0 from the dense θ0 by
the criterion (:func:`keras_lottery.pruning.at_init_masks`, scored by
:meth:`Round.at_init_scores`), then trained once from θ0: no round waits for another.

A :class:`Round` gives a variant (:mod:`.variants`) what it needs: the ticket's masks
(computed once from the source round by the recipe's criterion, then read from disk),
the weights to rewind to (:mod:`.rewinding`), fresh weights and seeds. Its
:meth:`Round.plan` is what one variant of the round trains.

Pure numpy (reads and writes the run directory): the model is behind ``fresh_weights``.
"""

import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from keras_lottery import pruning
from keras_lottery.errors import UsageError
from keras_lottery.pruning import criteria, units
from keras_lottery.lottery import rewinding, variants
from keras_lottery.rundir import layout, storage


ITERATIVE, ONESHOT, AT_INIT = "iterative", "oneshot", "at_init"
METHODS = (ITERATIVE, ONESHOT, AT_INIT)


def at_init(recipe):
    """Whether ``recipe`` prunes at initialization (each round a level chosen at θ0)."""
    return recipe.pruning.method == AT_INIT


def describe_levels(target_weights, rounds):
    """The levels of ``pruning.target_weights`` in words: "10%, 2% of the weights", or one
    fraction reached in the last of ``rounds`` rounds with the rounds between spaced
    geometrically (None: the rates applied round after round)."""
    if target_weights is None:
        return "round r keeps what the rates leave after r rounds"
    if isinstance(target_weights, (list, tuple)):
        return ", ".join(f"{100 * t:g}%" for t in target_weights) + " of the weights"
    return f"{100 * target_weights:g}% of the weights in round {rounds - 1}, rounds between spaced geometrically"


def derive_seed(*parts):
    """A seed (< 2**20) derived from the recipe seed and names such as trial and round."""
    ints = [p if isinstance(p, int) else zlib.crc32(str(p).encode()) for p in parts]
    return int(np.random.SeedSequence(ints).generate_state(1)[0] % 2**20)


def variants_of_round(recipe, round_index):
    """The variants ``round_index`` trains: the dense round trains the ticket alone."""
    return (variants.TICKET,) if round_index == 0 else tuple(recipe.variants)


def source_round(recipe, round_index):
    """The round whose trained ticket round ``round_index`` (>= 1) is pruned from (None at
    initialization: its mask is chosen from θ0)."""
    if at_init(recipe):
        return None
    return round_index - 1 if recipe.pruning.method == "iterative" else 0


def depends_on(recipe, round_index):
    """Rounds whose tickets must have finished for ``round_index`` to train."""
    if round_index == 0 or at_init(recipe):
        return ()
    return tuple(sorted({0, source_round(recipe, round_index)}))


@dataclass
class Plan:
    """What one variant of one round trains."""

    trial: int
    round: int
    variant: str
    masks: dict
    weights: dict  # before masking; the model starts from masks ⊙ weights
    start_iteration: int
    weights_remaining: float
    capture_at: Optional[int]  # the iteration whose weights are saved as θk (dense round only)
    # The schedule position whose learning rate is held for the whole round (fine-tuning),
    # or None: the learning-rate schedule runs from ``start_iteration``.
    learning_rate_at: Optional[int] = None
    # Seeds of the training data order and of the random state (dropout), or None: derived
    # from the recipe's seed as every round of a run does. An analysis that trains copies
    # of one network under different SGD noise (keras_lottery.analyses.instability) sets them.
    data_seed: Optional[int] = None
    train_seed: Optional[int] = None


class Round:
    """Round ``index`` of ``trial`` in ``run_dir``.

    ``rates`` maps each pruned layer to its rate; ``kernel_sizes`` counts every kernel
    layer's weights (for % remaining); ``fresh_weights(seed)`` returns a newly
    initialized model's weights. ``scorer(needs, weights, trial)`` computes what a
    criterion scoring the model needs (:data:`keras_lottery.pruning.criteria.MODEL_NEEDS`)
    for the model with ``weights``, keyed by pruned unit
    (:meth:`keras_lottery.lottery.experiment.Experiment.saliency`); None where no mask is
    chosen at initialization.
    """

    def __init__(self, recipe, run_dir, trial, index, rates, kernel_sizes, fresh_weights, scorer=None):
        self.recipe, self.run_dir, self.trial, self.index = recipe, run_dir, trial, index
        self.rates, self.kernel_sizes, self.fresh_weights = rates, kernel_sizes, fresh_weights
        self.scorer = scorer
        self.mode = rewinding.get(recipe.rewind.mode)

    def other(self, index):
        return Round(self.recipe, self.run_dir, self.trial, index, self.rates, self.kernel_sizes, self.fresh_weights,
                     self.scorer)

    def source(self):
        """The round whose trained ticket this (pruned) round is pruned from."""
        return self.other(source_round(self.recipe, self.index))

    def seed(self, *names):
        """A seed for this trial and round, derived from the recipe's seed and ``names``."""
        return derive_seed(self.recipe.seed, self.trial, self.index, *names)

    # ---- weights ------------------------------------------------------------------------

    def theta_0(self):
        return storage.load_arrays(layout.init_weights(self.run_dir, self.trial))

    def theta_k(self):
        return storage.load_arrays(layout.rewind_weights(self.run_dir, self.trial))

    def trained(self, variant=variants.TICKET):
        """The weights ``variant`` of this round ended with."""
        return storage.load_arrays(layout.final(self.run_dir, self.trial, self.index, variant))

    @property
    def start_iteration(self):
        return 0 if self.index == 0 else self.mode.start_iteration(self)

    @property
    def learning_rate_at(self):
        """None (the schedule runs) in the dense round, else as the rewinding mode says."""
        return None if self.index == 0 else self.mode.learning_rate_at(self)

    def rewound_weights(self):
        """Where the ticket starts: θ0 in the dense round and at initialization, else as the
        rewinding mode says."""
        return self.theta_0() if self.index == 0 or at_init(self.recipe) else self.mode.start_weights(self)

    # ---- masks --------------------------------------------------------------------------

    def ticket_masks(self):
        """The ticket's masks in this round (computed once, then read from disk)."""
        path = layout.mask(self.run_dir, self.trial, self.index, variants.TICKET)
        if path.is_file():
            return storage.load_arrays(path)
        if self.index == 0:
            theta_0 = self.theta_0()
            masks = {name: np.ones(theta_0[units.weight_key(name, theta_0)].shape, np.float32) for name in self.rates}
        elif at_init(self.recipe):
            config = self.recipe.pruning
            steps = config.score_steps or criteria.steps(config.criterion)
            masks = pruning.at_init_masks(self.at_init_scores, self.dense_masks(), self.densities(), steps,
                                          config.scope, config.structure)
        else:
            source = self.source()
            start, trained = source.rewound_weights(), source.trained()
            config = self.recipe.pruning
            masks = pruning.criterion_masks(
                config.criterion, units.pruned(start, self.rates), units.pruned(trained, self.rates),
                source.ticket_masks(), self.rates, self.index, config.scope, config.structure,
            )
        storage.save_arrays(path, masks)
        return masks

    def dense_masks(self):
        return pruning.dense_like(units.pruned(self.theta_0(), self.rates))

    def densities(self):
        """``{unit: fraction kept}`` in this pruned round at initialization: the recipe's
        ``pruning.target_weights`` level (a list: one per round; a number: the last
        round's, rounds between spaced geometrically), else each layer's rate applied once
        per round, as iterative pruning would have left it."""
        config = self.recipe.pruning
        target = config.target_weights
        if target is None:
            return pruning.round_densities(self.rates, self.index)
        level = target[self.index - 1] if isinstance(target, tuple) else target ** (self.index / (config.rounds - 1))
        return dict.fromkeys(self.rates, float(level))

    def at_init_scores(self, masks, step=0):
        """``{unit: scores}`` of the recipe's criterion for θ0 ⊙ ``masks`` at scoring ``step``."""
        name = self.recipe.pruning.criterion
        score, needs = criteria.get(name), criteria.needs(name)
        weights = dict(self.theta_0())
        for unit, mask in masks.items():
            key = units.weight_key(unit, weights)
            weights[key] = weights[key] * mask
        kernels = units.pruned(weights, self.rates)
        if needs == criteria.WEIGHTS:
            return {unit: score(kernel, kernel) for unit, kernel in kernels.items()}
        if needs == criteria.SEED:
            rng = np.random.default_rng(self.seed("scores", step))
            return {unit: score(kernels[unit], rng) for unit in sorted(kernels)}
        if self.scorer is None:
            raise UsageError(f"criterion {self.recipe.pruning.criterion!r} scores the model, which is not built here; "
                             "run the round with keras-lottery run")
        found = self.scorer(needs, weights, self.trial)
        return {unit: score(kernels[unit], found[unit]) for unit in kernels}

    def inverted_masks(self):
        """The rank inversion of the ticket's mask (:func:`keras_lottery.pruning.inverted_masks`):
        as many weights per layer as the ticket, the lowest ranked by the same criterion
        among the weights the ticket was chosen from (at initialization: the dense θ0's
        one-shot ranking; else the source round's survivors ranked by its weights)."""
        ticket, config = self.ticket_masks(), self.recipe.pruning
        if at_init(self.recipe):
            candidates = self.dense_masks()
            scores = self.at_init_scores(candidates)
        else:
            source = self.source()
            candidates = source.ticket_masks()
            scores = pruning.criterion_scores(config.criterion, units.pruned(source.rewound_weights(), self.rates),
                                              units.pruned(source.trained(), self.rates), self.rates)
        return pruning.inverted_masks(scores, candidates, ticket, config.structure)

    # ---- what a variant trains ----------------------------------------------------------

    def plan(self, name):
        variant = variants.get(name)
        masks = variant.masks(self)
        return Plan(
            trial=self.trial, round=self.index, variant=name, masks=masks,
            weights=variant.start_weights(self),
            start_iteration=variant.start_iteration(self),
            learning_rate_at=variant.learning_rate_at(self),
            weights_remaining=pruning.weights_remaining(masks, self.kernel_sizes),
            capture_at=self.recipe.rewind.iteration if self.index == 0 else None,
        )
