"""Beyond the paper (issue 12): rewinding modes, mask criteria, sign controls, start accuracy."""

import numpy as np
import pytest

from pathlib import Path

from conftest import TINY, merge
from keras_lottery import pruning, results
from keras_lottery.config import identity
from keras_lottery.config import recipe as recipes
from keras_lottery.lottery import rewinding, variants
from keras_lottery.pruning import criteria, masks
from keras_lottery.rundir import layout, storage

FIXTURE_V010 = Path(__file__).parent / "fixtures" / "v0_1_0" / "tiny-da046e1e"  # made by 0.1.0, no start columns
SMALL = merge(TINY, {"training": {"iterations": 60, "eval_every": 20}, "pruning": {"rounds": 2}})


# ---- criteria: each ranks a hand-built example as defined ------------------------------------

W_INIT = np.array([0.5, -0.4, 0.1, -0.2, 0.3, 0.05])
W_FINAL = np.array([0.6, 0.7, -0.05, -0.9, 0.1, 0.3])
# Expected ranking (best first) of each criterion, ties broken by position.
RANKED = {
    "large_final": [3, 1, 0, 5, 4, 2],  # |wf| = .6 .7 .05 .9 .1 .3
    "small_final": [2, 4, 5, 0, 1, 3],
    "large_init": [0, 1, 4, 3, 2, 5],  # |wi| = .5 .4 .1 .2 .3 .05
    "large_init_large_final": [0, 1, 3, 4, 2, 5],  # min = .5 .4 .05 .2 .1 .05 (2 and 5 tie: position)
    "magnitude_increase": [3, 1, 5, 0, 2, 4],  # .1 .3 -.05 .7 -.2 .25
    "movement": [1, 3, 5, 4, 2, 0],  # .1 1.1 .15 .7 .2 .25
    "large_final_same_sign": [3, 0, 5, 4, 1, 2],  # same sign: 3 (.9) 0 (.6) 5 (.3) 4 (.1); then 1 (.7), 2 (.05)
    "magnitude_at_init": [0, 1, 4, 3, 2, 5],  # large_init at θ0
}


def ranking(name, w_init=W_INIT, w_final=W_FINAL):
    scores = np.asarray(criteria.get(name)(w_init, w_final), np.float64)
    return list(np.argsort(-scores, kind="stable"))


@pytest.mark.parametrize("name", sorted(RANKED))
def test_each_criterion_ranks_a_hand_built_example_as_defined(name):
    assert ranking(name) == RANKED[name]
    assert np.all(np.isfinite(criteria.get(name)(W_INIT, W_FINAL)))


def test_every_registered_criterion_is_tested():
    # the criteria scoring a network at initialization are tested in test_at_init.py
    assert {n for n in criteria.names() if not criteria.at_init_only(n)} == set(RANKED)


def test_same_sign_ranks_every_changed_sign_last_and_pruned_weights_never_return():
    rng = np.random.default_rng(0)
    w_init, w_final = rng.normal(size=400), rng.normal(size=400) * 5
    scores = criteria.large_final_same_sign(w_init, w_final)
    same = w_init * w_final > 0
    assert scores[same].min() > scores[~same].max()
    # among the changed-sign weights the order is still by |w_final|
    changed = np.flatnonzero(~same)
    assert list(changed[np.argsort(-scores[changed], kind="stable")]) == \
        list(changed[np.argsort(-np.abs(w_final[changed]), kind="stable")])
    # round 2 keeps more than round 1's same-sign survivors: changed-sign ones fill up, in |w_final|
    # order, and weights pruned in round 1 stay pruned
    survivors = np.zeros(400, bool)
    survivors[rng.permutation(400)[: masks.keep_count(400, 0.3, 1)]] = True
    previous = {"layer": survivors.astype(np.float32)}
    kept = masks.criterion_masks("large_final_same_sign", {"layer": w_init}, {"layer": w_final}, previous,
                                 {"layer": 0.3}, 2)["layer"].astype(bool)
    assert kept.sum() == masks.keep_count(400, 0.3, 2) > (survivors & same).sum()
    assert not np.any(kept & ~survivors)
    assert np.all(kept[survivors & same])
    filled = survivors & ~same
    assert np.abs(w_final[filled & kept]).min() >= np.abs(w_final[filled & ~kept]).max()
    twice = masks.criterion_masks("large_final_same_sign", {"layer": w_init}, {"layer": w_final}, previous,
                                  {"layer": 0.3}, 2)["layer"].astype(bool)
    assert np.array_equal(kept, twice)


def test_ties_are_broken_by_position():
    w = np.ones(6)
    for name in RANKED:
        assert ranking(name, w, w) == list(range(6)), name


# ---- recipes: options, bad input, hashes ------------------------------------------------------


def test_defaults_keep_the_hash_and_new_options_change_it():
    plain = recipes.parse(SMALL)
    spelled = recipes.parse(merge(SMALL, {"rewind": {"mode": "weights"}, "pruning": {"criterion": "large_final"}}))
    assert identity.short_hash(spelled, "data") == identity.short_hash(plain, "data")
    assert identity.legacy_hash(spelled) == identity.legacy_hash(plain)
    hashes = {identity.short_hash(plain, "data")}
    for change in ({"rewind": {"mode": "learning_rate"}}, {"rewind": {"mode": "finetune"}},
                   {"pruning": {"criterion": "movement"}}):
        hashes.add(identity.short_hash(recipes.parse(merge(SMALL, change)), "data"))
    assert len(hashes) == 4
    # controls only add work: a run with the new controls continues the same run directory
    more = recipes.parse(merge(SMALL, {"controls": ["reshuffle", "signed_constant"]}))
    assert identity.short_hash(more, "data") == identity.short_hash(plain, "data")


@pytest.mark.parametrize("change, message", [
    ({"rewind": {"mode": "rewind"}}, "recipe key 'rewind.mode': must be one of weights, learning_rate, finetune"),
    ({"pruning": {"criterion": "same_sign"}}, "recipe key 'pruning.criterion': must be one of large_final, "),
    ({"controls": ["supermask"]}, "recipe key 'controls': must be a list of random_reinit, random_prune, reshuffle, "
                                  "signed_constant"),
])
def test_bad_options_are_refused_naming_the_key(change, message):
    with pytest.raises(recipes.RecipeError) as caught:
        recipes.parse(merge(SMALL, change))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_cli_refuses_an_unknown_mode_with_exit_2(tmp_path, write_recipe):
    from click.testing import CliRunner
    from keras_lottery.cli import main

    path = write_recipe(SMALL)
    result = CliRunner().invoke(main, ["run", str(path), "--set", "rewind.mode=lr", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: recipe key 'rewind.mode': must be one of weights, learning_rate")
    assert not (tmp_path / "run").exists()


# ---- training: each mode and control starts where it promises ---------------------------------


def _spy_starts(monkeypatch):
    """Record, for every variant trained, the optimizer iteration, the learning rate and the
    weights at its first training step (after masks ⊙ weights are set)."""
    from keras_lottery import masking, training
    from keras_lottery.backend import keras

    starts = []
    real = training.train

    class First(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not self.done:
                self.done = True
                starts.append((int(self.model.optimizer.iterations.numpy()), training.current_learning_rate(self.model),
                               masking.get_weights(self.model)))

    def spy(*args, callbacks=(), **kwargs):
        first = First()
        first.done = False
        return real(*args, callbacks=[*callbacks, first], **kwargs)

    monkeypatch.setattr(training, "train", spy)
    return starts


def _run(tmp_path, monkeypatch, **changes):
    from keras_lottery import lottery

    recipe = recipes.parse(merge(SMALL, changes))
    starts = _spy_starts(monkeypatch)
    run_dir, rows = lottery.run(recipe, tmp_path / "run", log=lambda _: None)
    order = [(0, variants.TICKET)] + [(1, v) for v in recipe.variants]
    assert len(starts) == len(order)
    return recipe, run_dir, rows, dict(zip(order, starts))


def _masked(weights, masks_):
    out = dict(weights)
    for layer, mask in masks_.items():
        out[f"{layer}/kernel"] = weights[f"{layer}/kernel"] * mask
    return out


def _assert_same(actual, expected):
    assert actual.keys() == expected.keys()
    for key in actual:
        assert np.array_equal(actual[key], expected[key]), key


@pytest.mark.parametrize("mode", ["weights", "learning_rate", "finetune"])
def test_each_mode_starts_from_the_weights_iteration_and_learning_rate_it_promises(tmp_path, monkeypatch, mode):
    changes = {"rewind": {"mode": mode, "iteration": 20}, "training": {"lr_drops": [40], "lr_drop_factor": 0.5},
               "controls": ["random_prune"]}
    if mode == "weights":
        changes["controls"] = ["random_prune", "reshuffle", "signed_constant"]
    recipe, run_dir, rows, starts = _run(tmp_path, monkeypatch, **changes)
    base = recipe.training.learning_rate
    theta_k = storage.load_arrays(layout.rewind_weights(run_dir, 0))
    dense_trained = storage.load_arrays(layout.final(run_dir, 0, 0, variants.TICKET))
    ticket_masks = storage.load_arrays(layout.mask(run_dir, 0, 1, variants.TICKET))
    iteration, rate, weights = starts[(0, variants.TICKET)]
    assert (iteration, rate) == (0, pytest.approx(base))  # the dense round is the same in every mode
    expected_start = theta_k if mode == "weights" else dense_trained
    expected_rate = base * 0.5 if mode == "finetune" else base  # finetune: the rate at the last iteration
    for variant in recipe.variants:
        iteration, rate, weights = starts[(1, variant)]
        assert iteration == 20 and rate == pytest.approx(expected_rate), variant
        mask = storage.load_arrays(layout.mask(run_dir, 0, 1, variant))
        if variant in (variants.TICKET, "random_prune"):
            _assert_same(weights, _masked(expected_start, mask))
    assert mask.keys() == ticket_masks.keys()
    # every evaluation of a pruned round counts from k to the end, in every mode
    curve = storage.read_csv(layout.curve(run_dir, 0, 1, variants.TICKET))
    assert [int(r["iteration"]) for r in curve] == [40, 60]
    if mode == "weights":
        _check_sign_controls(run_dir, starts, ticket_masks, theta_k)


def _check_sign_controls(run_dir, starts, ticket_masks, theta_k):
    theta_0 = storage.load_arrays(layout.init_weights(run_dir, 0))
    shuffled = starts[(1, "reshuffle")][2]
    signed = starts[(1, "signed_constant")][2]
    for layer, mask in ticket_masks.items():
        key, kept = f"{layer}/kernel", mask.astype(bool)
        assert np.array_equal(storage.load_arrays(layout.mask(run_dir, 0, 1, "reshuffle"))[layer], mask)
        # reshuffle: the same multiset of surviving θk values, moved; pruned weights zero
        assert np.array_equal(np.sort(shuffled[key][kept]), np.sort(theta_k[key][kept]))
        assert not np.array_equal(shuffled[key][kept], theta_k[key][kept])
        assert np.all(shuffled[key][~kept] == 0)
        # signed constant: survivors are ±σ (σ: the std of the layer's θ0 kernel) with θk's signs
        sigma = np.float32(np.std(theta_0[key].astype(np.float64)))
        assert set(np.unique(np.abs(signed[key][kept]))) == {sigma}
        assert np.array_equal(np.sign(signed[key][kept]), np.where(theta_k[key][kept] >= 0, 1, -1))
        assert np.all(signed[key][~kept] == 0)
        bias = f"{layer}/bias"
        assert np.array_equal(signed[bias], theta_k[bias]) and np.array_equal(shuffled[bias], theta_k[bias])


def test_start_accuracy_is_recorded_and_equals_evaluating_the_saved_start_weights(tmp_path, monkeypatch):
    from keras_lottery import data, export, masking, training
    from keras_lottery.training import evaluation

    recipe, run_dir, rows, starts = _run(tmp_path, monkeypatch, controls=["signed_constant"],
                                         pruning={"criterion": "large_final_same_sign"})
    splits = data.load(recipe.dataset)
    test = data.eval_dataset(splits.x_test, splits.y_test, recipe.training.eval_batch_size)
    for row in rows:
        _, weights = export.ticket_weights(run_dir, row["round"], variant=row["variant"], weights="init")
        _assert_same(weights, _masked(starts[(row["round"], row["variant"])][2],
                                      storage.load_arrays(layout.mask(run_dir, 0, row["round"], row["variant"]))))
        model = export.build(run_dir, recipe)
        masking.set_weights(model, weights)
        training.compile_model(model, recipe.training)
        measured = evaluation.Evaluator(model, {"test": test})()["test"]
        assert row["start_test_accuracy"] == pytest.approx(measured["accuracy"], abs=1e-6)
        assert row["start_test_loss"] == pytest.approx(measured["loss"], rel=1e-5)
    assert rows[0]["start_test_accuracy"] < 0.5  # θ0 untrained
    saved = storage.read_json(layout.summary(run_dir, 0, 1, "signed_constant"))
    assert results.typed(saved)["start_test_accuracy"] == rows[-1]["start_test_accuracy"]


def test_start_accuracy_survives_a_mid_round_checkpoint(tmp_path, monkeypatch):
    from keras_lottery import lottery
    from keras_lottery.lottery import checkpoints, session

    recipe = recipes.parse(merge(SMALL, {"controls": [], "training": {"checkpoint_every": 20}}))
    real_save = checkpoints.MidRound.save

    class Killed(Exception):
        pass

    def save_then_die(self, iteration):
        real_save(self, iteration)
        if "round_01" in str(self.variant_dir):
            raise Killed

    monkeypatch.setattr(checkpoints.MidRound, "save", save_then_die)
    with pytest.raises(Killed):
        lottery.run(recipe, tmp_path / "run", log=lambda _: None)
    (saved,) = checkpoints.saved(layout.variant_dir(tmp_path / "run", 0, 1, variants.TICKET))
    start = storage.read_json(saved / layout.CHECKPOINT_STATE)["start"]
    assert 0 < start["test_accuracy"] < 1
    monkeypatch.setattr(checkpoints.MidRound, "save", real_save)
    monkeypatch.setattr(session, "start_metrics", lambda *_: {"test_accuracy": -1.0, "test_loss": -1.0})
    lines = []
    _, rows = lottery.run(recipe, tmp_path / "run", log=lines.append)
    assert any("resumed from iteration 20" in line for line in lines)
    (row,) = [r for r in rows if r["round"] == 1]
    assert (row["start_test_accuracy"], row["start_test_loss"]) == (start["test_accuracy"], start["test_loss"])


# ---- results and report: old rows still load -------------------------------------------------


def test_rows_without_start_columns_load_and_report(tmp_path):
    import shutil

    from keras_lottery.reporting import report

    old = tmp_path / "old"
    shutil.copytree(FIXTURE_V010, old)
    rows = storage.read_json(layout.results_json(old))
    assert rows and all("start_test_accuracy" not in row for row in rows)
    assert all(results.typed(row)["start_test_accuracy"] is None for row in rows)
    csv_rows = storage.read_csv(layout.results_csv(old))
    assert all(results.typed(row)["start_test_loss"] is None for row in csv_rows)
    text = report.write([old], out=tmp_path / "report", tensorboard=False).read_text()
    assert "start test acc" in text and "Test accuracy before training" not in text  # nothing to draw
    assert not (tmp_path / "report" / "start_accuracy.png").exists()


def test_report_has_the_start_accuracy_column_and_figure(tmp_path):
    from keras_lottery import lottery
    from keras_lottery.reporting import report

    recipe = recipes.parse(merge(SMALL, {"controls": ["reshuffle"], "pruning": {"method": "oneshot"}}))
    run_dir, rows = lottery.run(recipe, tmp_path / "run", log=lambda _: None)
    text = report.write([run_dir], tensorboard=False).read_text()
    shuffled = [r for r in rows if r["variant"] == "reshuffle"][0]
    assert f"| {shuffled['start_test_accuracy']:.4f} |" in text
    assert "![Test accuracy before training vs % weights remaining](start_accuracy.png)" in text
    assert (layout.report_dir(run_dir) / "start_accuracy.png").is_file()
    csv_rows = storage.read_csv(layout.results_csv(run_dir))
    assert list(csv_rows[0])[-2:] == ["start_test_accuracy", "start_test_loss"]


def test_modes_and_controls_are_documented():
    for name in rewinding.names():
        assert rewinding.get(name).description and type(rewinding.get(name)).__doc__
    for name in ("reshuffle", "signed_constant"):
        assert name in variants.controls() and variants.get(name).label
    assert pruning.criterion_masks is masks.criterion_masks


def test_the_end_of_run_table_shows_start_accuracy():
    """Means over trials; rows written before start accuracy was recorded show '-'."""
    def row(trial, round_index, variant, start, accuracy=0.9):
        return {"trial": trial, "round": round_index, "variant": variant, "weights_remaining": 100.0 / (round_index + 1),
                "early_stop_iteration": 100, "early_stop_test_accuracy": accuracy, "final_test_accuracy": accuracy,
                "best_val_loss": 0.1, "status": "ok", "start_test_accuracy": start}

    rows = [row(0, 0, "ticket", 0.1), row(1, 0, "ticket", 0.2), row(0, 1, "ticket", 0.5), row(1, 1, "ticket", 0.7),
            row(0, 1, "random_reinit", None), row(1, 1, "random_reinit", None)]
    lines = results.table(rows, ("ticket", "random_reinit")).splitlines()
    assert lines[0].split() == ["round", "remaining", "|", "ticket", "ES", "iter", "test", "acc", "start", "acc",
                                "|", "random_reinit", "ES", "iter", "test", "acc", "start", "acc"]
    assert lines[2].split() == ["0", "100.0%", "|", "100", "0.9000", "0.1500", "|", "100", "0.9000", "0.1500"]
    assert lines[3].split() == ["1", "50.0%", "|", "100", "0.9000", "0.6000", "|", "100", "0.9000", "-"]
    assert len(lines[2]) == len(lines[3])  # rows aligned, "-" where nothing was measured
