"""Masks from magnitudes: layer-wise or global, iterative or one-shot, and random controls.

Pure numpy. A layer pruned at rate ``p`` keeps ``round(n * (1 - p) ** r)`` weights
after round ``r``: the count comes from the round number, not from the previous count,
so rounding never accumulates. Each round keeps the largest-magnitude survivors.
"""

import numpy as np

from keras_lottery.pruning import criteria


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


def masks_from_scores(scores, masks, rates, round_index, scope="layerwise"):
    """Masks for ``round_index``: the highest ``scores`` among the current ``masks``' survivors.

    ``rates`` maps each pruned layer to its rate. Layer-wise, each layer keeps its own
    count; globally, all the layers (which share one rate) are ranked together.
    """
    new = {}
    if scope == "layerwise":
        for name, rate in rates.items():
            ranked = _masked_scores(scores[name], masks[name])
            new[name] = _top(ranked, keep_count(ranked.size, rate, round_index)).reshape(masks[name].shape)
        return new
    if scope != "global":
        raise ValueError(f"unknown pruning scope {scope!r}")
    names = list(rates)
    (rate,) = set(rates.values())
    pooled = np.concatenate([_masked_scores(scores[n], masks[n]) for n in names])
    keep = _top(pooled, keep_count(pooled.size, rate, round_index))
    start = 0
    for name in names:
        size = masks[name].size
        new[name] = keep[start: start + size].reshape(masks[name].shape)
        start += size
    return new


def criterion_masks(criterion, initial, trained, masks, rates, round_index, scope="layerwise"):
    """Masks ranked by the registered ``criterion`` (:mod:`.criteria`) of each layer's
    kernel where the round started (``initial``) and after training (``trained``)."""
    score = criteria.get(criterion)
    scores = {name: score(np.asarray(initial[name]), np.asarray(trained[name])) for name in rates}
    return masks_from_scores(scores, masks, rates, round_index, scope)


def magnitude_masks(kernels, masks, rates, round_index, scope="layerwise"):
    """Masks keeping the largest-magnitude survivors of trained ``kernels`` (the paper's)."""
    return masks_from_scores({name: np.abs(kernels[name]) for name in rates}, masks, rates, round_index, scope)


def random_masks(masks, seed):
    """Random masks with exactly the same number of survivors in each layer."""
    rng = np.random.default_rng(seed)
    new = {}
    for name in sorted(masks):
        mask = np.asarray(masks[name])
        keep = np.zeros(mask.size, np.float32)
        keep[rng.permutation(mask.size)[: int(mask.sum())]] = 1.0
        new[name] = keep.reshape(mask.shape)
    return new


def weights_remaining(masks, kernel_sizes):
    """Percent of all kernel weights that survive; layers without a mask count as dense."""
    total = sum(kernel_sizes.values())
    kept = sum(float(np.sum(masks[n])) if n in masks else size for n, size in kernel_sizes.items())
    return 100.0 * kept / total


def layer_sparsity(masks):
    """Fraction of weights removed in each masked layer."""
    return {name: 1.0 - float(np.mean(mask)) for name, mask in masks.items()}
