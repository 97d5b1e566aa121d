"""Masks from scores: layer-wise or global, iterative, one-shot or at initialization, and
the masks of the controls (random, inverted).

Pure numpy. A layer pruned at rate ``p`` keeps ``round(n * (1 - p) ** r)`` weights
after round ``r``: the count comes from the round number, not from the previous count,
so rounding never accumulates. Each round keeps the largest-magnitude survivors.

With a block ``structure`` (:mod:`.blocks`) the same holds for whole blocks: blocks are
scored by their members' mean score, counted, kept and drawn at random as units.
"""

import numpy as np

from keras_lottery.pruning import blocks, criteria


def keep_count(n, rate, round_index):
    """Weights kept of ``n`` after ``round_index`` rounds at ``rate`` (at least one)."""
    return density_count(n, (1.0 - rate) ** round_index)


def density_count(n, density):
    """Weights kept of ``n`` at ``density``, the fraction kept (at least one)."""
    return max(1, int(np.floor(n * density + 0.5)))


def round_densities(rates, round_index):
    """``{layer: density}`` after ``round_index`` rounds at each layer's rate."""
    return {name: (1.0 - rate) ** round_index for name, rate in rates.items()}


def layer_rates(kinds, rates):
    """``{layer: rate}`` for the layers whose kind has a rate; other layers stay dense."""
    return {name: rates[kind] for name, kind in kinds.items() if kind in rates}


def _top(scores, k):
    """A 0/1 mask keeping the ``k`` highest scores (ties broken by position)."""
    order = np.argsort(-scores, kind="stable")
    keep = np.zeros(scores.size, np.float32)
    keep[order[:k]] = 1.0
    return keep


def _masked_scores(scores, mask):
    scores = np.array(scores, np.float64).ravel()
    scores[np.asarray(mask).ravel() == 0] = -np.inf  # pruned weights never come back
    return scores


def _units(scores, masks, names, structure):
    """The ranked units of each layer of ``names`` (weights, or blocks scored by their
    members' mean), survivors of ``masks`` only, and the function giving a layer's 0/1
    keep vector back as a mask."""
    cut = blocks.grids({name: np.shape(masks[name]) for name in names}, structure)
    if cut is None:
        units = {name: _masked_scores(scores[name], masks[name]) for name in names}
        return units, lambda name, keep: keep.reshape(np.shape(masks[name]))
    units = {}
    for name in names:
        ranked = cut[name].mean(scores[name]).ravel()
        ranked[~cut[name].any(masks[name]).ravel()] = -np.inf  # pruned blocks never come back
        units[name] = ranked
    return units, lambda name, keep: cut[name].expand(keep)


def masks_from_scores(scores, masks, rates, round_index, scope="layerwise", structure=blocks.UNSTRUCTURED):
    """Masks for ``round_index``: the highest ``scores`` among the current ``masks``' survivors.

    ``rates`` maps each pruned layer to its rate. Layer-wise, each layer keeps its own
    count; globally, all the layers (which share one rate) are ranked together. With a
    block ``structure`` the units ranked and counted are blocks (:mod:`.blocks`).
    """
    return masks_at_densities(scores, masks, round_densities(rates, round_index), scope, structure)


def masks_at_densities(scores, masks, densities, scope="layerwise", structure=blocks.UNSTRUCTURED):
    """Masks keeping the highest ``scores`` among the current ``masks``' survivors, each
    layer of ``densities`` at its density (the fraction of its weights kept,
    :func:`density_count`); globally, all the layers (which share one density) are ranked
    together. With a block ``structure`` the units ranked and counted are blocks."""
    if scope not in ("layerwise", "global"):
        raise ValueError(f"unknown pruning scope {scope!r}")
    units, shape_back = _units(scores, masks, densities, structure)
    if scope == "layerwise":
        return {name: shape_back(name, _top(ranked, density_count(ranked.size, densities[name])))
                for name, ranked in units.items()}
    names = list(densities)
    (density,) = set(densities.values())
    pooled = np.concatenate([units[n] for n in names])
    keep = _top(pooled, density_count(pooled.size, density))
    new, start = {}, 0
    for name in names:
        size = units[name].size
        new[name] = shape_back(name, keep[start: start + size])
        start += size
    return new


def criterion_scores(criterion, initial, trained, names):
    """``{layer: scores}`` of the registered weights ``criterion`` (:mod:`.criteria`) of each
    layer's kernel where the round started (``initial``) and after training (``trained``)."""
    score = criteria.get(criterion)
    if criteria.at_init_only(criterion):
        raise ValueError(f"criterion {criterion!r} scores a network at initialization "
                         f"(needs {criteria.needs(criterion)})")
    return {name: score(np.asarray(initial[name]), np.asarray(trained[name])) for name in names}


def criterion_masks(criterion, initial, trained, masks, rates, round_index, scope="layerwise",
                    structure=blocks.UNSTRUCTURED):
    """Masks ranked by the registered ``criterion`` (:mod:`.criteria`) of each layer's
    kernel where the round started (``initial``) and after training (``trained``); a block
    ``structure`` ranks blocks by their members' mean score."""
    scores = criterion_scores(criterion, initial, trained, rates)
    return masks_from_scores(scores, masks, rates, round_index, scope, structure)


def schedule(densities, steps):
    """The densities of each of ``steps`` scoring steps on the way to ``densities``: d^(k/n)
    after step k of n (SynFlow's schedule; one step is one-shot), the last exactly ``densities``."""
    return [{name: density ** (k / steps) if k < steps else density for name, density in densities.items()}
            for k in range(1, steps + 1)]


def at_init_masks(score, dense, densities, steps=1, scope="layerwise", structure=blocks.UNSTRUCTURED):
    """Masks chosen before training: ``steps`` times, ``score(masks, step)`` scores the network
    with the current masks (``{layer: scores}``) and the survivors are pruned to that
    step's density (:func:`schedule`), from the ``dense`` (all-ones) masks; the last step
    reaches ``densities`` exactly, as one-shot pruning would."""
    masks = dense
    for step, step_densities in enumerate(schedule(densities, steps)):
        masks = masks_at_densities(score(masks, step), masks, step_densities, scope, structure)
    return masks


def dense_like(arrays):
    """All-ones float32 masks of the shapes of ``arrays``."""
    return {name: np.ones(np.shape(array), np.float32) for name, array in arrays.items()}


def inverted_masks(scores, candidates, ticket, structure=blocks.UNSTRUCTURED):
    """The rank inversion of a criterion's mask: in each layer of ``ticket``, as many units
    as the ticket keeps there, the *lowest*-ranked by ``scores`` among the ``candidates``'
    survivors (the weights the ticket was chosen from). Ranks are those the ticket's
    ranking gives (highest score first, ties by position), so this keeps the last ones.
    Not 1/score, which reorders scores of mixed sign and of zero."""
    names = list(ticket)
    units, shape_back = _units(scores, candidates, names, structure)
    kept_units, _ = _units({name: np.asarray(ticket[name], np.float64) for name in names}, ticket, names, structure)
    new = {}
    for name in names:
        ranked = units[name]
        count = int(np.sum(np.isfinite(kept_units[name])))  # the ticket's units in this layer
        order = np.argsort(-ranked, kind="stable")
        order = order[np.isfinite(ranked[order])]  # the candidates, best first
        keep = np.zeros(ranked.size, np.float32)
        keep[order[len(order) - count:]] = 1.0
        new[name] = shape_back(name, keep)
    return new


def magnitude_masks(kernels, masks, rates, round_index, scope="layerwise", structure=blocks.UNSTRUCTURED):
    """Masks keeping the largest-magnitude survivors of trained ``kernels`` (the paper's)."""
    return masks_from_scores({name: np.abs(kernels[name]) for name in rates}, masks, rates, round_index, scope,
                             structure)


def random_masks(masks, seed, structure=blocks.UNSTRUCTURED):
    """Random masks with exactly the same number of survivors in each layer; with a block
    ``structure``, random whole blocks, as many in each layer as ``masks`` keeps."""
    rng = np.random.default_rng(seed)
    cut = blocks.grids({name: np.shape(mask) for name, mask in masks.items()}, structure)
    new = {}
    for name in sorted(masks):
        mask = np.asarray(masks[name])
        if cut is None:
            keep = np.zeros(mask.size, np.float32)
            keep[rng.permutation(mask.size)[: int(mask.sum())]] = 1.0
            new[name] = keep.reshape(mask.shape)
            continue
        grid = cut[name]
        keep = np.zeros(grid.count, np.float32)
        keep[rng.permutation(grid.count)[: int(grid.any(mask).sum())]] = 1.0
        new[name] = grid.expand(keep)
    return new


def weights_remaining(masks, kernel_sizes):
    """Percent of all kernel weights that survive; layers without a mask count as dense."""
    total = sum(kernel_sizes.values())
    kept = sum(float(np.sum(masks[n])) if n in masks else size for n, size in kernel_sizes.items())
    return 100.0 * kept / total


def layer_sparsity(masks):
    """Fraction of weights removed in each masked layer."""
    return {name: 1.0 - float(np.mean(mask)) for name, mask in masks.items()}
