"""Masks from magnitudes: layer-wise or global, iterative or one-shot, and random controls.

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
    return max(1, int(np.floor(n * (1.0 - rate) ** round_index + 0.5)))


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


def masks_from_scores(scores, masks, rates, round_index, scope="layerwise", structure=blocks.UNSTRUCTURED):
    """Masks for ``round_index``: the highest ``scores`` among the current ``masks``' survivors.

    ``rates`` maps each pruned layer to its rate. Layer-wise, each layer keeps its own
    count; globally, all the layers (which share one rate) are ranked together. With a
    block ``structure`` the units ranked and counted are blocks (:mod:`.blocks`).
    """
    if scope not in ("layerwise", "global"):
        raise ValueError(f"unknown pruning scope {scope!r}")
    cut = blocks.grids({name: np.shape(masks[name]) for name in rates}, structure)
    if cut is None:
        units = {name: _masked_scores(scores[name], masks[name]) for name in rates}
        shape_back = lambda name, keep: keep.reshape(masks[name].shape)  # noqa: E731
    else:
        units = {}
        for name in rates:
            ranked = cut[name].mean(scores[name]).ravel()
            ranked[~cut[name].any(masks[name]).ravel()] = -np.inf  # pruned blocks never come back
            units[name] = ranked
        shape_back = lambda name, keep: cut[name].expand(keep)  # noqa: E731
    if scope == "layerwise":
        return {name: shape_back(name, _top(ranked, keep_count(ranked.size, rates[name], round_index)))
                for name, ranked in units.items()}
    names = list(rates)
    (rate,) = set(rates.values())
    pooled = np.concatenate([units[n] for n in names])
    keep = _top(pooled, keep_count(pooled.size, rate, round_index))
    new, start = {}, 0
    for name in names:
        size = units[name].size
        new[name] = shape_back(name, keep[start: start + size])
        start += size
    return new


def criterion_masks(criterion, initial, trained, masks, rates, round_index, scope="layerwise",
                    structure=blocks.UNSTRUCTURED):
    """Masks ranked by the registered ``criterion`` (:mod:`.criteria`) of each layer's
    kernel where the round started (``initial``) and after training (``trained``); a block
    ``structure`` ranks blocks by their members' mean score."""
    score = criteria.get(criterion)
    scores = {name: score(np.asarray(initial[name]), np.asarray(trained[name])) for name in rates}
    return masks_from_scores(scores, masks, rates, round_index, scope, structure)


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
