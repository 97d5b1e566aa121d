"""End to end on a tiny recipe: masks, rewinding, controls, files, determinism, resume."""

import numpy as np
import pytest

from keras_lottery import lottery, masking, pruning, results
from keras_lottery.config import recipe as recipes
from keras_lottery.rundir import layout, storage
from keras_lottery.lottery import RunDirError
from conftest import TINY, merge

ROUNDS = 3
VARIANTS = ("ticket", "random_reinit", "random_prune")
PRUNED = {"fc1": 0.2, "fc2": 0.2, "output": 0.1}


def _run(out, **changes):
    recipe = recipes.parse(merge(TINY, changes))
    run_dir, rows = lottery.run(recipe, out, log=lambda _: None)
    return recipe, run_dir, rows


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("runs") / "tiny")


def _arrays(run_dir, round_index, variant, name, trial=0):
    return storage.load_arrays(layout.variant_dir(run_dir, trial, round_index, variant) / name)


def test_results_have_one_row_per_trial_round_variant(tiny_run):
    recipe, run_dir, rows = tiny_run
    keys = [(r["trial"], r["round"], r["variant"]) for r in rows]
    assert keys == [(0, 0, "ticket")] + [(0, r, v) for r in range(1, ROUNDS) for v in VARIANTS]
    csv_rows = storage.read_csv(run_dir / "results.csv")
    assert tuple(csv_rows[0]) == results.COLUMNS and len(csv_rows) == len(rows)
    assert storage.read_json(run_dir / "results.json") == rows
    for row in rows:
        assert 0 <= row["early_stop_test_accuracy"] <= 1 and 0 <= row["final_test_accuracy"] <= 1
        assert row["early_stop_iteration"] in (20, 40, 60)
    assert rows[0]["weights_remaining"] == 100.0
    assert storage.read_json(run_dir / "recipe.json") == recipe.to_dict()


def test_masked_weights_are_exactly_zero_in_every_saved_file(tiny_run):
    _, run_dir, rows = tiny_run
    for row in rows:
        masks = _arrays(run_dir, row["round"], row["variant"], "mask.npz")
        final = _arrays(run_dir, row["round"], row["variant"], "final.npz")
        for layer, mask in masks.items():
            assert np.all(final[f"{layer}/kernel"][mask == 0] == 0.0)
            if row["round"]:
                assert np.any(mask == 0)


def test_biases_are_never_pruned(tiny_run):
    _, run_dir, _ = tiny_run
    masks = _arrays(run_dir, ROUNDS - 1, "ticket", "mask.npz")
    assert set(masks) == set(PRUNED)  # kernels only: no bias masks
    final = _arrays(run_dir, ROUNDS - 1, "ticket", "final.npz")
    assert all(np.count_nonzero(final[f"{layer}/bias"]) > 0.9 * final[f"{layer}/bias"].size for layer in PRUNED)


def test_per_layer_sparsity_follows_the_schedule(tiny_run):
    _, run_dir, rows = tiny_run
    for r in range(ROUNDS):
        masks = _arrays(run_dir, r, "ticket", "mask.npz")
        for layer, rate in PRUNED.items():
            assert abs(masks[layer].sum() - round(masks[layer].size * (1 - rate) ** r)) <= 1
    sizes = {layer: masks[layer].size for layer in PRUNED}
    final_rows = [row for row in rows if row["round"] == ROUNDS - 1]
    for row in final_rows:
        assert row["weights_remaining"] == pytest.approx(pruning.weights_remaining(masks, sizes), abs=1e-3)


def test_ticket_masks_prune_the_smallest_trained_weights(tiny_run):
    _, run_dir, _ = tiny_run
    for r in range(1, ROUNDS):
        trained = _arrays(run_dir, r - 1, "ticket", "final.npz")
        before = _arrays(run_dir, r - 1, "ticket", "mask.npz")
        after = _arrays(run_dir, r, "ticket", "mask.npz")
        for layer in PRUNED:
            magnitude = np.abs(trained[f"{layer}/kernel"])
            kept = magnitude[after[layer] == 1]
            dropped = magnitude[(before[layer] == 1) & (after[layer] == 0)]
            assert kept.min() >= dropped.max()


def test_controls_keep_the_ticket_sparsity_and_differ_as_intended(tiny_run):
    _, run_dir, _ = tiny_run
    theta0 = storage.load_arrays(layout.trial_dir(run_dir, 0) / "init.npz")
    for r in range(1, ROUNDS):
        ticket = _arrays(run_dir, r, "ticket", "mask.npz")
        reinit = _arrays(run_dir, r, "random_reinit", "mask.npz")
        shuffled = _arrays(run_dir, r, "random_prune", "mask.npz")
        for layer in PRUNED:
            assert np.array_equal(reinit[layer], ticket[layer])
            assert shuffled[layer].sum() == ticket[layer].sum()
            assert not np.array_equal(shuffled[layer], ticket[layer])
    # random_reinit draws new weights from the same initializer; the others start from θ0
    from keras_lottery import data

    recipe = recipes.parse(TINY)
    experiment = lottery.Experiment(recipe, run_dir, data.load(recipe.dataset), log=lambda _: None)
    start = experiment.round(0, 1).plan("random_reinit").weights
    assert not np.array_equal(start["fc1/kernel"], theta0["fc1/kernel"])
    assert start["fc1/kernel"].std() == pytest.approx(theta0["fc1/kernel"].std(), rel=0.1)


def test_rewinding_restores_theta0_bit_for_bit(tiny_run):
    recipe, run_dir, _ = tiny_run
    from keras_lottery import data
    from keras_lottery.lottery.callbacks import Rewind

    splits = data.load(recipe.dataset)
    experiment = lottery.Experiment(recipe, run_dir, splits, log=lambda _: None)
    theta0 = storage.load_arrays(layout.trial_dir(run_dir, 0) / "init.npz")
    masks = _arrays(run_dir, 2, "ticket", "mask.npz")
    callback = Rewind(weights=experiment.round(0, 2).plan("ticket").weights, masks=masks)
    callback.set_model(experiment.model)
    callback.on_train_begin()
    weights = masking.get_weights(experiment.model)
    for name, value in theta0.items():
        layer = name.split("/")[0]
        expected = value * masks[layer] if name.endswith("kernel") and layer in masks else value
        assert np.array_equal(weights[name], expected), name
    # the rewind point saved by round 0 (k = 0) is θ0 itself
    rewind = storage.load_arrays(layout.trial_dir(run_dir, 0) / "rewind.npz")
    assert all(np.array_equal(rewind[n], theta0[n]) for n in theta0)


def test_late_rewinding_saves_theta_k(tmp_path):
    recipe, run_dir, rows = _run(tmp_path / "late", rewind={"iteration": 20}, pruning={"rounds": 2},
                                 controls=[])
    theta0 = storage.load_arrays(layout.trial_dir(run_dir, 0) / "init.npz")
    rewind = storage.load_arrays(layout.trial_dir(run_dir, 0) / "rewind.npz")
    trained = _arrays(run_dir, 0, "ticket", "final.npz")
    assert not np.array_equal(rewind["fc1/kernel"], theta0["fc1/kernel"])
    assert not np.array_equal(rewind["fc1/kernel"], trained["fc1/kernel"])
    assert [r["round"] for r in rows] == [0, 1]
    # pruned rounds train from iteration k to the end
    curve = storage.read_csv(layout.variant_dir(run_dir, 0, 1, "ticket") / "curve.csv")
    assert [int(r["iteration"]) for r in curve] == [40, 60]


def test_same_recipe_and_seed_give_identical_masks(tiny_run, tmp_path):
    _, first, _ = tiny_run
    _, second, _ = _run(tmp_path / "again")
    for r in range(ROUNDS):
        for variant in VARIANTS if r else ("ticket",):
            a, b = _arrays(first, r, variant, "mask.npz"), _arrays(second, r, variant, "mask.npz")
            assert all(np.array_equal(a[k], b[k]) for k in a)
    _, third, _ = _run(tmp_path / "seed1", seed=1, pruning={"rounds": 2}, controls=[])
    a, b = _arrays(first, 1, "ticket", "mask.npz"), _arrays(third, 1, "ticket", "mask.npz")
    assert not all(np.array_equal(a[k], b[k]) for k in a)


def test_rerun_skips_finished_rounds_and_extends(tmp_path):
    out = tmp_path / "resume"
    _run(out, pruning={"rounds": 2}, controls=[])
    summary = layout.variant_dir(out, 0, 1, "ticket") / "summary.json"
    stamp = summary.stat().st_mtime_ns
    logs = []
    recipe = recipes.parse(merge(TINY, {"pruning": {"rounds": 3}, "controls": []}))
    _, rows = lottery.run(recipe, out, log=logs.append)
    assert summary.stat().st_mtime_ns == stamp  # round 1 was not redone
    trained = [line for line in logs if ": training " in line]
    assert len(trained) == 1 and "round 2/2 ticket" in trained[0]
    assert [r["round"] for r in rows] == [0, 1, 2]


def test_a_different_recipe_never_writes_into_another_run(tiny_run):
    _, run_dir, _ = tiny_run
    before = sorted(p.name for p in run_dir.iterdir())
    other = recipes.parse(merge(TINY, {"training": {"learning_rate": 0.01}}))
    with pytest.raises(RunDirError, match="different recipe"):
        lottery.run(other, run_dir, log=lambda _: None)
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_default_run_directory_is_named_by_recipe_hash():
    recipe = recipes.parse(TINY)
    assert str(lottery.run_dir_for(recipe, "abc")) == f"runs/tiny-{recipe.short_hash('abc')}"
    assert recipe.short_hash("abc") != recipe.short_hash("abd")  # the data is part of the identity
