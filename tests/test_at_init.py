"""Pruning at initialization (pruning.method "at_init"): the criteria on hand-built
examples against their formulas, the scoring schedule's exact counts, the inverted
ablation, the recipe keys (refused where they do not apply, hash-neutral at default), the
graph (no level waits for another) and a tiny run end to end, SynFlow reading no data."""

import dataclasses
import json

import numpy as np
import pytest

from conftest import RECIPES, TINY, merge
from keras_lottery import pruning
from keras_lottery.config import identity, recipe as recipes
from keras_lottery.lottery import graph, rounds, variants
from keras_lottery.pruning import criteria
from keras_lottery.rundir import layout, storage

W = np.array([0.5, -0.4, 0.1, -0.2, 0.3, 0.05])
G = np.array([0.1, 0.3, -2.0, 0.2, -0.1, 4.0])  # a gradient, a Hessian-gradient product or ∂R/∂θ


def best_first(scores):
    return list(np.argsort(-np.asarray(scores, np.float64), kind="stable"))


# ---- criteria: each equals its formula on a hand-built example ----------------------------

def test_snip_is_the_magnitude_of_gradient_times_weight():
    assert np.allclose(criteria.snip(W, G), [0.05, 0.12, 0.2, 0.04, 0.03, 0.2])
    assert best_first(criteria.snip(W, G)) == [2, 5, 1, 0, 3, 4]  # 2 and 5 tie: position


def test_grasp_prunes_the_highest_minus_theta_hg_first_and_its_magnitude_variant_ranks_by_size():
    s = -W * G  # GraSP's score S = −θ ⊙ Hg: the highest are removed first
    assert best_first(criteria.grasp(W, G))[::-1][:3] == list(np.argsort(-s, kind="stable")[:3])
    assert np.allclose(criteria.grasp(W, G), -s)
    assert np.allclose(criteria.grasp_magnitude(W, G), np.abs(W * G))
    assert criteria.needs("grasp") == criteria.needs("grasp_magnitude") == criteria.HESSIAN_GRADIENT


def test_synflow_magnitude_at_init_and_random_scores():
    assert np.allclose(criteria.synflow(W, G), np.abs(W * G))
    assert criteria.steps("synflow") == 100 and criteria.steps("snip") == 1
    assert best_first(criteria.magnitude_at_init(W, W * 9)) == [0, 1, 4, 3, 2, 5]  # |θ0|, what it trains to unused
    one, two = (criteria.random(W, np.random.default_rng(3)) for _ in range(2))
    assert np.array_equal(one, two) and one.shape == W.shape and len(set(one)) == W.size


def test_every_criterion_scoring_at_initialization_is_tested_here():
    assert {n for n in criteria.names() if criteria.at_init_only(n)} == {
        "snip", "grasp", "grasp_magnitude", "synflow", "random"}


# ---- masks: the iterative schedule, the inversion -----------------------------------------

SHAPES = {"a": (30, 20), "b": (20, 7)}


def _scorer(seed=0):
    rng = np.random.default_rng(seed)
    fixed = {name: rng.normal(size=shape) for name, shape in SHAPES.items()}
    seen = []

    def score(masks, step):
        seen.append({n: m.copy() for n, m in masks.items()})
        return {n: fixed[n] + 0.01 * step * np.sign(fixed[n]) for n in masks}  # changes between steps
    return score, seen


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_the_iterative_schedule_reaches_the_exact_target_counts_and_never_revives(scope):
    dense = {n: np.ones(s, np.float32) for n, s in SHAPES.items()}
    density = 0.02
    score, seen = _scorer()
    masks = pruning.at_init_masks(score, dense, dict.fromkeys(SHAPES, density), steps=100, scope=scope)
    assert len(seen) == 100 and all(np.array_equal(m, np.ones(SHAPES[n])) for n, m in seen[0].items())
    if scope == "layerwise":
        for name, shape in SHAPES.items():
            assert masks[name].sum() == pruning.density_count(int(np.prod(shape)), density)
    else:
        assert sum(m.sum() for m in masks.values()) == pruning.density_count(600 + 140, density)
    for before, after in zip(seen[1:], seen[2:] + [masks]):  # survivors only shrink
        assert all(np.all(after[n] <= before[n]) for n in SHAPES)
    counts = [sum(m.sum() for m in step.values()) for step in seen[1:]]
    assert counts == sorted(counts, reverse=True) and counts[0] < 740  # d^(k/n): pruned a little each step
    assert pruning.schedule({"a": 0.3}, 4)[-1]["a"] == 0.3


def test_inverted_keeps_the_tickets_per_layer_counts_and_takes_the_lowest_ranks():
    rng = np.random.default_rng(1)
    scores = {n: rng.normal(size=s) for n, s in SHAPES.items()}
    candidates = {n: (rng.random(s) < 0.7).astype(np.float32) for n, s in SHAPES.items()}
    ticket = pruning.masks_at_densities(scores, candidates, {"a": 0.3, "b": 0.5})
    inverted = pruning.inverted_masks(scores, candidates, ticket)
    for name in SHAPES:
        assert inverted[name].sum() == ticket[name].sum()
        assert np.all(inverted[name] <= candidates[name])  # only from what the ticket was chosen from
        kept = scores[name][inverted[name] == 1]
        others = scores[name][(candidates[name] == 1) & (inverted[name] == 0)]
        assert kept.max() <= others.min()  # the lowest ranked; not 1/score, which would mix signs
        assert np.any(kept < 0)
        if 2 * ticket[name].sum() <= candidates[name].sum():  # then the two do not meet
            assert not np.any(inverted[name] * ticket[name])


# ---- recipes ----------------------------------------------------------------------------------

AT_INIT = merge(TINY, {"training": {"iterations": 20, "eval_every": 10},
                       "pruning": {"method": "at_init", "criterion": "snip", "rounds": 3, "scope": "global",
                                   "target_weights": [0.4, 0.1]},
                       "controls": ["random_prune", "random_reinit", "inverted"]})


@pytest.mark.parametrize("change, message", [
    ({"pruning": {"method": "iterative", "target_weights": None}},
     "recipe key 'pruning.criterion': \"snip\" scores the network at initialization; "
     "set pruning.method to \"at_init\""),
    ({"pruning": {"criterion": "large_final", "method": "oneshot", "target_weights": 0.1}},
     "recipe key 'pruning.target_weights': applies to pruning.method \"at_init\" only"),
    ({"rewind": {"iteration": 10}}, "recipe key 'rewind': pruning.method \"at_init\" trains each mask from θ0"),
    ({"pruning": {"target_weights": [0.1, 0.4]}}, "recipe key 'pruning.target_weights': must be a fraction in (0, 1)"),
    ({"pruning": {"rounds": 4}}, "recipe key 'pruning.rounds': must be at most 3"),
    ({"pruning": {"score_batch": 0}}, "recipe key 'pruning.score_batch': must be null or an integer from 1"),
])
def test_bad_at_init_keys_are_refused_in_one_line(change, message):
    with pytest.raises(recipes.RecipeError, match="^" + __import__("re").escape(message)):
        recipes.parse(merge(AT_INIT, change))


def test_defaults_keep_every_hash_and_one_target_counts_the_rounds():
    for path in sorted(RECIPES.glob("*.json")):
        found = recipes.load(path)
        wanted = identity.recipe_identity(found)
        if found.pruning.method != rounds.AT_INIT:
            assert not {"target_weights", "score_batch", "score_steps"} & set(wanted.get("pruning", {})), path
    assert identity.recipe_identity(recipes.load(RECIPES / "lenet300_mnist.json")) == {}
    listed = recipes.parse(AT_INIT)
    assert "rounds" not in identity.recipe_identity(listed)["pruning"]  # each level is listed: rounds only add work
    one = recipes.parse(merge(AT_INIT, {"pruning": {"target_weights": 0.1}}))
    more = dataclasses.replace(one, pruning=dataclasses.replace(one.pruning, rounds=5))
    assert identity.short_hash(one, "data") != identity.short_hash(more, "data")  # levels spaced over the rounds
    assert variants.ABLATIONS["random_prune"] == "layer shuffle"


def test_the_levels_are_said_as_the_recipe_gives_them():
    assert rounds.describe_levels((0.1, 0.02), 3) == "10%, 2% of the weights"
    assert rounds.describe_levels([0.5], 2) == "50% of the weights"  # as read back from recipe.json
    assert rounds.describe_levels(0.05, 6) == "5% of the weights in round 5, rounds between spaced geometrically"
    assert rounds.describe_levels(None, 6).startswith("round r keeps what the rates leave")


def test_no_level_waits_for_another():
    recipe = recipes.parse(AT_INIT)
    assert all(rounds.depends_on(recipe, r) == () for r in range(3))
    assert all(graph.needs(recipe, node) == () for node in graph.nodes(recipe))
    wall, total, critical = graph.project(recipe, lambda node: 1.0, workers=3)
    assert critical == 1.0 and wall == 3.0 and total == 9.0


# ---- end to end ---------------------------------------------------------------------------------


def _densities(masks):
    return sum(m.sum() for m in masks.values()) / sum(m.size for m in masks.values())


def test_a_tiny_at_init_run_trains_each_level_from_theta0_with_the_ablations(tmp_path):
    from keras_lottery import lottery

    recipe = recipes.parse(merge(AT_INIT, {"controls": ["random_prune", "inverted"]}))  # reinit: no new path
    lines = []
    run_dir, rows = lottery.run(recipe, tmp_path / "run", log=lines.append)
    said = "\n".join(map(str, lines))
    assert "pruned to each level" in said and "% per round" not in said, said  # the levels, not a rate
    assert "pruning at initialization: each round's mask chosen at θ0 by snip" in said, said
    assert [(r["round"], r["variant"]) for r in rows] == [(0, "ticket")] + [
        (r, v) for r in (1, 2) for v in ("ticket", "random_prune", "inverted")]
    theta0 = storage.load_arrays(layout.init_weights(run_dir, 0))
    masks = storage.load_arrays(layout.mask(run_dir, 0, 1, "ticket"))
    sizes = {name: mask.size for name, mask in masks.items()}
    for level in (1, 2):  # the ticket and the ablations but reinit start from θ0, at iteration 0
        round_ = rounds.Round(recipe, run_dir, 0, level, dict.fromkeys(masks, 0.2), sizes, None)
        for variant in ("ticket", "random_prune", "inverted"):
            plan = round_.plan(variant)
            assert plan.start_iteration == 0 and all(np.array_equal(plan.weights[k], theta0[k]) for k in theta0)
    for level, fraction in ((1, 0.4), (2, 0.1)):
        ticket = storage.load_arrays(layout.mask(run_dir, 0, level, "ticket"))
        assert sum(m.sum() for m in ticket.values()) == pruning.density_count(sum(m.size for m in ticket.values()),
                                                                               fraction)
        inverted = storage.load_arrays(layout.mask(run_dir, 0, level, "inverted"))
        shuffled = storage.load_arrays(layout.mask(run_dir, 0, level, "random_prune"))
        for name, mask in ticket.items():
            assert inverted[name].sum() == shuffled[name].sum() == mask.sum()
        for name, mask in ticket.items():  # a layer the ticket keeps less than half of: disjoint from it
            assert 2 * mask.sum() > mask.size or not np.any(inverted[name] * mask)
        final = storage.load_arrays(layout.final(run_dir, 0, level, "ticket"))
        assert all(np.all(final[f"{n}/kernel"][m == 0] == 0) for n, m in ticket.items())
    # level 2 is not pruned from level 1's mask: both are chosen from the dense θ0
    one = storage.load_arrays(layout.mask(run_dir, 0, 1, "ticket"))
    two = storage.load_arrays(layout.mask(run_dir, 0, 2, "ticket"))
    assert _densities(two) < _densities(one)
    from keras_lottery.reporting import report

    text = report.write([run_dir], tmp_path / "report").read_text()
    table = text[text.index("| method | % weights | ticket | layer shuffle | reinit | inverted |"):].splitlines()
    assert table[2].startswith("| snip | ") and table[3].startswith("| snip | ") and " - |" in table[2]
    assert (tmp_path / "report" / report.AT_INIT_FIGURE).is_file()
    assert "at_init global pruning (to 40%, 10% of the weights)" in text and "% per round" not in text
    summary = storage.read_json(layout.summary(run_dir, 0, 2, "ticket"))
    assert summary["weights_remaining"] == pytest.approx(100 * _densities(two) * sum(
        m.size for m in two.values()) / sum(theta0[k].size for k in theta0 if k.endswith("/kernel")), abs=0.01)


def test_synflow_reads_no_data(tmp_path):
    from keras_lottery import lottery

    recipe = recipes.parse(merge(AT_INIT, {"pruning": {"criterion": "synflow", "score_steps": 20, "rounds": 2},
                                           "controls": []}))
    experiment = lottery.experiment.build(recipe, log=lambda _: None)
    experiment.run_dir = tmp_path
    experiment.theta0(0)
    masks = experiment.round(0, 1).ticket_masks()
    layout.mask(tmp_path, 0, 1, "ticket").unlink()
    experiment.splits.x_train = experiment.splits.x_train * 0 + 7.0  # other data: the same mask
    experiment.score_batch = None  # and no batch can be drawn
    again = experiment.round(0, 1).ticket_masks()
    assert all(np.array_equal(masks[n], again[n]) for n in masks)
    assert sum(m.sum() for m in masks.values()) == pruning.density_count(sum(m.size for m in masks.values()), 0.4)
    assert json.dumps(recipe.to_dict()["pruning"]["target_weights"]) == "[0.4, 0.1]"


@pytest.mark.slow  # two runs in processes of their own (~1 min); the graph test above shows no level waits
def test_two_workers_give_the_results_of_one(tmp_path):
    from conftest import save_recipe
    from test_workers import assert_same_run, run

    path = save_recipe(tmp_path, merge(AT_INIT, {"pruning": {"criterion": "grasp"}}), "at_init.json")
    run(path, tmp_path / "one", tmp_path)
    text = run(path, tmp_path / "two", tmp_path, "--workers", "2")
    assert_same_run(tmp_path / "two", tmp_path / "one")
    assert "progress: 9/9 trainings done" in text
