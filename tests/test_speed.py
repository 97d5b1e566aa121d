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
