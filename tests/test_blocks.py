"""Block-sparse tickets (pruning.structure): whole blocks kept or pruned, exact counts, the
recipe field, and the hash of recipes that leave it at its default."""

import numpy as np
import pytest

from conftest import TINY, merge
from keras_lottery import pruning
from keras_lottery.config import recipe as recipes
from keras_lottery.config.recipe import RecipeError
from keras_lottery.pruning import blocks

BLOCK = [4, 1]
RATES = {"fc1": 0.2, "fc2": 0.2, "output": 0.1}


def _kernels(seed=0):
    rng = np.random.default_rng(seed)
    return {"fc1": rng.normal(size=(64, 30)), "fc2": rng.normal(size=(30, 20)), "output": rng.normal(size=(20, 10))}


def _rounds(scope="layerwise", rounds=8, structure=BLOCK, rates=RATES):
    kernels = _kernels()
    masks = {name: np.ones_like(k, np.float32) for name, k in kernels.items()}
    history = [masks]
    for r in range(1, rounds + 1):
        kernels = {n: k * np.random.default_rng(r).uniform(0.5, 1.5, k.shape) for n, k in kernels.items()}
        masks = pruning.magnitude_masks({n: kernels[n] * masks[n] for n in masks}, masks, rates, r, scope, structure)
        history.append(masks)
    return history


def _blocks_of(mask, block=(4, 1)):
    """Every block's members (a list of arrays), cut by hand."""
    rows, cols = mask.shape[-2:]
    found = []
    for lead in np.ndindex(mask.shape[:-2]):
        for i in range(0, rows, block[0]):
            for j in range(0, cols, block[1]):
                found.append(mask[lead][i: i + block[0], j: j + block[1]])
    return found


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_every_block_is_all_kept_or_all_pruned_and_pruned_blocks_never_come_back(scope):
    rates = RATES if scope == "layerwise" else dict.fromkeys(RATES, 0.2)
    history = _rounds(scope, rates=rates)
    for masks in history:
        for mask in masks.values():
            assert all(b.min() == b.max() for b in _blocks_of(mask))  # 30 and 10 rows: the last block has 2
    for before, after in zip(history, history[1:]):
        assert all(np.all(after[n] <= before[n]) for n in before)


def test_layerwise_counts_are_exact_whole_blocks():
    for r, masks in enumerate(_rounds()):
        for name, mask in masks.items():
            grid = blocks.Grid(mask.shape, (4, 1))
            kept_blocks = int(grid.any(mask).sum())
            assert kept_blocks == pruning.keep_count(grid.count, RATES[name], r), (name, r)
            assert mask.sum() == grid.sizes()[grid.any(mask)].sum()  # the weights of exactly those blocks


def test_a_block_is_scored_by_the_mean_of_its_members():
    kernel = np.ones((8, 1))
    kernel[0:4, 0] = [10.0, 0.0, 0.0, 0.0]  # mean 2.5, largest single weight
    kernel[4:8, 0] = [3.0, 3.0, 3.0, 3.0]  # mean 3: kept
    masks = pruning.magnitude_masks({"a": kernel}, {"a": np.ones((8, 1), np.float32)}, {"a": 0.5}, 1, structure=BLOCK)
    assert masks["a"].ravel().tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    unstructured = pruning.magnitude_masks({"a": kernel}, {"a": np.ones((8, 1), np.float32)}, {"a": 0.5}, 1)
    assert unstructured["a"][0, 0] == 1  # the same kernel pruned weight by weight keeps the 10


def test_every_criterion_prunes_blocks():
    rng = np.random.default_rng(3)
    initial, trained = rng.normal(size=(16, 6)), rng.normal(size=(16, 6))
    for criterion in [n for n in pruning.criteria.names() if not pruning.criteria.at_init_only(n)]:
        masks = pruning.criterion_masks(criterion, {"a": initial}, {"a": trained}, {"a": np.ones((16, 6), np.float32)},
                                        {"a": 0.5}, 1, structure=BLOCK)
        assert blocks.Grid((16, 6), (4, 1)).is_blocked(masks["a"]) and masks["a"].sum() == 12 * 4, criterion


def test_random_blocks_keep_the_ticket_count_of_blocks_per_layer():
    ticket = _rounds(rounds=5)[-1]
    drawn = pruning.random_masks(ticket, seed=7, structure=BLOCK)
    for name, mask in drawn.items():
        grid = blocks.Grid(mask.shape, (4, 1))
        assert grid.is_blocked(mask)
        assert grid.any(mask).sum() == grid.any(ticket[name]).sum()
        assert not np.array_equal(mask, ticket[name])
    assert all(np.array_equal(a, b) for a, b in zip(drawn.values(),
                                                      pruning.random_masks(ticket, 7, BLOCK).values()))


def test_unstructured_masks_are_those_of_before():
    # the default leaves every existing result unchanged: same masks, same random draws
    kernels = _kernels()
    masks = {n: np.ones_like(k, np.float32) for n, k in kernels.items()}
    assert all(np.array_equal(a, b) for a, b in zip(
        pruning.magnitude_masks(kernels, masks, RATES, 2).values(),
        pruning.magnitude_masks(kernels, masks, RATES, 2, structure="unstructured").values()))
    once = pruning.magnitude_masks(kernels, masks, RATES, 2)
    rng = np.random.default_rng(11)
    expected = {}
    for name in sorted(once):  # random_masks as 0.3.0 drew them
        keep = np.zeros(once[name].size, np.float32)
        keep[rng.permutation(once[name].size)[: int(once[name].sum())]] = 1.0
        expected[name] = keep.reshape(once[name].shape)
    drawn = pruning.random_masks(once, 11)
    assert all(np.array_equal(drawn[n], expected[n]) for n in once)


def test_convolution_blocks_run_along_input_channels_at_each_position():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 8, 5))
    masks = pruning.magnitude_masks({"c": kernel}, {"c": np.ones(kernel.shape, np.float32)}, {"c": 0.5}, 1,
                                    structure=BLOCK)
    mask = masks["c"]
    for y, x, o in np.ndindex(3, 3, 5):
        for start in (0, 4):
            group = mask[y, x, start: start + 4, o]
            assert group.min() == group.max()
    assert blocks.Grid(kernel.shape, (4, 1)).count == 3 * 3 * 2 * 5 and mask.sum() == 45 * 4


def test_recipe_field_checks_and_hash():
    default = recipes.parse(TINY)
    assert default.pruning.structure == "unstructured"
    # the hash 0.3.0 gave this recipe (computed with keras-lottery 0.3.0): an old run directory resumes
    assert default.short_hash("f" * 64) == "db03e1de"
    assert recipes.parse(merge(TINY, {"pruning": {"structure": "unstructured"}})).short_hash("f" * 64) == "db03e1de"
    blocked = recipes.parse(merge(TINY, {"pruning": {"structure": [4, 1]}}))
    assert blocked.pruning.structure == (4, 1) and blocked.short_hash("f" * 64) != "db03e1de"
    assert recipes.parse(blocked.to_dict()) == blocked  # round-trips through recipe.json
    for wrong, says in (([4], "block shape [rows, cols]"), ([4, 0], "two integers >= 1"), ("blocks", "unstructured"),
                        ([1, 1], "larger than [1, 1]"), (4, "a string or a list")):
        with pytest.raises(RecipeError, match=r"pruning\.structure") as err:
            recipes.parse(merge(TINY, {"pruning": {"structure": wrong}}))
        assert says in str(err.value)


def test_the_blocks_recipe_is_lenet_in_4x1_blocks():
    from conftest import RECIPES

    base, blocked = recipes.load(RECIPES / "lenet300_mnist.json"), recipes.load(RECIPES / "lenet300_mnist_blocks.json")
    assert blocked.pruning.structure == (4, 1)
    assert blocked.training == base.training and blocked.pruning.rates == base.pruning.rates
