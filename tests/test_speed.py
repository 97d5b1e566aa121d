"""Projected cost of a recipe: steps and evaluations counted the way lottery.run trains."""

import pytest

from conftest import RECIPES
from keras_lottery.config import recipe
from keras_lottery import speed


def test_training_steps_and_evaluations_of_a_rewinding_recipe():
    r = recipe.load(RECIPES / "resnet18_cifar10_rewind.json")
    # Round 0 trains the ticket from 0; rounds 1..22 train 3 variants from iteration 500.
    assert speed.training_steps(r) == 3 * (30000 + 22 * 3 * 29500)
    assert speed.evaluations(r) == 3 * (60 + 22 * 3 * 59)
    eval_size = 5000 + 10000
    expected = speed.training_steps(r) / 2.0 + speed.evaluations(r) * eval_size / 1000.0
    assert speed.projected_seconds(r, step_rate=2.0, eval_rate=1000.0) == pytest.approx(expected)


def test_training_steps_of_a_run_recipe(tiny_recipe):
    r = recipe.parse(tiny_recipe())  # 3 rounds, 2 controls, 60 iterations, evaluated every 20
    assert speed.training_steps(r) == 60 + 2 * 3 * 60
    assert speed.evaluations(r) == 3 + 2 * 3 * 3


def test_the_projection_with_workers_walks_the_graph(tiny_recipe):
    from keras_lottery.lottery import graph

    r = recipe.parse(tiny_recipe(trials=2))  # per trial: round 0, then 2 rounds of 3 variants
    seconds = speed.node_seconds(r, step_rate=60.0, eval_rate=1e12)  # 1 s a training of 60 steps
    assert seconds(graph.Node(0, 1, "random_prune")) == pytest.approx(1.0)
    row = speed.projection_row(r, 60.0, 1e12, [1, 2, 100])
    # 14 trainings of 1 s; the critical path is round 0, round 1's ticket and one of round 2
    assert row == "| tiny | 14 s | 3 s | 14 s | 7 s | 3 s |"


def test_worker_counts_are_checked():
    assert speed._worker_counts("1,2,8,32") == [1, 2, 8, 32]
    for bad in ("0", "x", "", "2,99999"):
        with pytest.raises(speed.UsageError, match="--workers takes worker counts"):
            speed._worker_counts(bad)
