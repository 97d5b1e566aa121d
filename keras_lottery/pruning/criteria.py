"""Mask criteria: how the weights of a layer are ranked for pruning.

A criterion is one registered scoring function. What it scores is what it ``needs``
(:data:`NEEDS`):

- ``weights`` (every criterion of the lottery ticket rounds): ``(w_init, w_final)``, the
  weights the round started from (θ0, or θk with late rewinding; what the rewinding mode
  started it from) and its trained weights. Besides the paper's ``large_final`` the
  criteria of Zhou, Lan, Liu & Yosinski (NeurIPS 2019, "Deconstructing Lottery Tickets:
  Zeros, Signs, and the Supermask") are here;
- ``gradient``: ``(w, g)``, a layer's weights at θ0 and the gradient g of the loss on a
  scoring batch (``pruning.score_batch`` training examples);
- ``hessian_gradient``: ``(w, hg)``, the weights and the Hessian-gradient product Hg of
  the loss with the logits divided by :data:`GRASP_TEMPERATURE`;
- ``synflow``: ``(w, g)``, the weights and ∂R/∂θ of the data-free SynFlow pass (every weight
  replaced by |θ|, an all-ones input, R the sum of the outputs; no data is read);
- ``seed``: ``(w, rng)``, the weights and a numpy random generator.

Each gets numpy arrays of one layer's kernel and returns an array of its shape. Higher
scores survive; scores must be finite (already-pruned weights are ranked below every
score by :mod:`.masks`, so they never come back), and equal scores are broken by
position. ``pruning.criterion`` in a recipe names one.

The last four score a network at initialization (``pruning.method: "at_init"``); the
autodiff behind them is :mod:`keras_lottery.training.saliency`. ``steps`` is how many
times a criterion re-scores the network while pruning it to a sparsity (SynFlow's
iterative schedule, density d^(k/n) after step k; ``pruning.score_steps`` overrides it).
Adding a criterion is one function here plus its tests::

    @register("my_score", needs="gradient")
    def my_score(w, g):
        return ...  # an array of w's shape

Pure numpy: parsing a recipe reads this registry without TensorFlow.
"""

import numpy as np

from keras_lottery.registry import Registry

REGISTRY = Registry("criterion")
DEFAULT = "large_final"
WEIGHTS, GRADIENT, HESSIAN_GRADIENT, SYNFLOW, SEED = "weights", "gradient", "hessian_gradient", "synflow", "seed"
NEEDS = (WEIGHTS, GRADIENT, HESSIAN_GRADIENT, SYNFLOW, SEED)
MODEL_NEEDS = (GRADIENT, HESSIAN_GRADIENT, SYNFLOW)  # what the autodiff of the model computes
GRASP_TEMPERATURE = 200.0  # GraSP divides the logits by T (Wang et al. 2020)
get = REGISTRY.__getitem__
names = REGISTRY.names


def register(name, needs=WEIGHTS, steps=1):
    """Decorate a scoring function registered as ``name``, scoring what it ``needs``,
    re-scored ``steps`` times on the way to a sparsity at initialization."""
    if needs not in NEEDS:
        raise ValueError(f"criterion {name!r}: needs must be one of {', '.join(NEEDS)}, got {needs!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"criterion {name!r}: steps must be an integer >= 1, got {steps!r}")

    def add(function):
        function.needs, function.steps = needs, steps
        return REGISTRY.add(name, function)

    return add


def needs(name):
    """What criterion ``name`` scores (one of :data:`NEEDS`; a bare function put in the
    registry scores weights)."""
    return getattr(get(name), "needs", WEIGHTS)


def steps(name):
    """How many scoring steps criterion ``name`` takes by default at initialization."""
    return getattr(get(name), "steps", 1)


def at_init_only(name):
    """Whether criterion ``name`` scores only a network at initialization (``pruning.method: "at_init"``)."""
    return needs(name) != WEIGHTS


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


# ---- pruning at initialization (Frankle, Dziugaite, Roy & Carbin, ICLR 2021, "Pruning
# Neural Networks at Initialization: Why are We Missing the Mark?") --------------------


@register("magnitude_at_init")
def magnitude_at_init(w_init, w_final):
    """Magnitude at initialization, |θ0| (``large_init`` scored at θ0)."""
    return np.abs(w_init)


@register("random", needs=SEED)
def random(w, rng):
    """Uniform random scores: random pruning at initialization."""
    return rng.random(np.shape(w))


@register("snip", needs=GRADIENT)
def snip(w, g):
    """SNIP's connection sensitivity |g ⊙ θ| (Lee, Ajanthan & Torr, ICLR 2019): the
    change of the loss if the weight were removed, to first order."""
    return np.abs(np.asarray(g, np.float64) * np.asarray(w, np.float64))


@register("grasp", needs=HESSIAN_GRADIENT)
def grasp(w, hg):
    """GraSP (Wang, Zhang & Grosse, ICLR 2020) scores S = −θ ⊙ Hg (logits divided by
    T = 200) and removes the *highest* S, the weights whose removal reduces the gradient
    flow least; so the survival score here is −S = θ ⊙ Hg."""
    return np.asarray(w, np.float64) * np.asarray(hg, np.float64)


@register("grasp_magnitude", needs=HESSIAN_GRADIENT)
def grasp_magnitude(w, hg):
    """|θ ⊙ Hg|: GraSP's score by magnitude, which Frankle et al. (2021) found to prune better."""
    return np.abs(np.asarray(w, np.float64) * np.asarray(hg, np.float64))


@register("synflow", needs=SYNFLOW, steps=100)
def synflow(w, g):
    """SynFlow (Tanaka, Kunin, Yamins & Ganguli, NeurIPS 2020): |θ ⊙ ∂R/∂θ|, R the sum of the
    outputs of the network with |θ| for every weight on an all-ones input; data-free, and
    re-scored over 100 steps on the way to density d (d^(k/100) after step k)."""
    return np.abs(np.asarray(w, np.float64) * np.asarray(g, np.float64))
