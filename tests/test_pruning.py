"""Pruning: magnitude masks per layer or global, one-shot targets, random controls."""

import numpy as np
import pytest

from keras_lottery import pruning


def _layers(seed=0):
    rng = np.random.default_rng(seed)
    return {"fc1": rng.normal(size=(64, 30)), "fc2": rng.normal(size=(30, 20)), "output": rng.normal(size=(20, 10))}


RATES = {"fc1": 0.2, "fc2": 0.2, "output": 0.1}


def _iterate(kernels, rates, rounds, scope="layerwise"):
    masks = {name: np.ones_like(k, np.float32) for name, k in kernels.items() if name in rates}
    history = [masks]
    for r in range(1, rounds + 1):
        # "training" changes the surviving weights between rounds
        kernels = {n: k * np.random.default_rng(r).uniform(0.5, 1.5, k.shape) for n, k in kernels.items()}
        masks = pruning.magnitude_masks({n: kernels[n] * masks[n] for n in masks}, masks, rates, r, scope)
        history.append(masks)
    return history


def test_layerwise_sparsity_follows_the_schedule():
    history = _iterate(_layers(), RATES, 8)
    for r, masks in enumerate(history):
        for name, mask in masks.items():
            n = mask.size
            expected = round(n * (1 - RATES[name]) ** r)
            assert abs(mask.sum() - expected) <= 1, (name, r)


def test_pruned_weights_never_come_back():
    history = _iterate(_layers(), RATES, 5)
    for before, after in zip(history, history[1:]):
        for name in before:
            assert np.all(after[name] <= before[name])


def test_magnitude_pruning_keeps_the_largest_survivors():
    kernels = _layers()
    masks = {n: np.ones_like(k, np.float32) for n, k in kernels.items()}
    new = pruning.magnitude_masks(kernels, masks, RATES, 1)
    for name, mask in new.items():
        kept, removed = np.abs(kernels[name])[mask == 1], np.abs(kernels[name])[mask == 0]
        assert kept.min() >= removed.max()


def test_global_pruning_ranks_across_layers():
    kernels = {"a": np.full((10, 10), 5.0), "b": np.full((10, 10), 0.1)}
    kernels["a"][0, 0] = 0.01  # the single smallest weight
    masks = {n: np.ones((10, 10), np.float32) for n in kernels}
    new = pruning.magnitude_masks(kernels, masks, {"a": 0.5, "b": 0.5}, 1, scope="global")
    assert new["a"].sum() == 99 and new["b"].sum() == 1  # 100 of 200 kept, from the big layer
    assert new["a"][0, 0] == 0


def test_global_total_follows_the_schedule_and_layers_differ():
    kernels = _layers()
    kernels["fc2"] = kernels["fc2"] * 10  # a layer of large weights is pruned less
    rates = {"fc1": 0.2, "fc2": 0.2}
    history = _iterate({n: kernels[n] for n in rates}, rates, 3, scope="global")
    total = sum(kernels[n].size for n in rates)
    for r, masks in enumerate(history):
        assert abs(sum(m.sum() for m in masks.values()) - round(total * 0.8 ** r)) <= 1
    final = history[-1]
    assert final["fc2"].mean() > final["fc1"].mean()


def test_one_shot_reaches_the_target_in_one_step():
    kernels = _layers()
    dense = {n: np.ones_like(kernels[n], np.float32) for n in RATES}
    one_shot = pruning.magnitude_masks(kernels, dense, RATES, 5)
    for name, mask in one_shot.items():
        assert abs(mask.sum() - round(mask.size * (1 - RATES[name]) ** 5)) <= 1


def test_random_masks_keep_per_layer_counts_and_differ():
    masks = _iterate(_layers(), RATES, 3)[-1]
    random = pruning.random_masks(masks, seed=7)
    for name in masks:
        assert random[name].sum() == masks[name].sum()
        assert not np.array_equal(random[name], masks[name])
    assert all(np.array_equal(random[n], pruning.random_masks(masks, seed=7)[n]) for n in masks)


def test_weights_remaining_counts_unpruned_layers():
    masks = {"a": np.zeros(100, np.float32)}
    masks["a"][:50] = 1
    assert pruning.weights_remaining(masks, {"a": 100, "b": 100}) == pytest.approx(75.0)
    assert pruning.keep_count(1000, 0.2, 0) == 1000 and pruning.keep_count(1000, 0.2, 2) == 640
