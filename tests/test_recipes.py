"""The shipped recipes: one per experiment of the paper, each valid and runnable."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import RECIPES
from keras_lottery.config import catalog, recipe
from keras_lottery import lottery, models, training
from keras_lottery.rundir import layout, storage
from keras_lottery.cli import main

PAPER_RECIPES = (
    "lenet300_mnist", "lenet300_mnist_oneshot",
    "conv2_cifar10", "conv4_cifar10", "conv6_cifar10",
    "conv2_dropout_cifar10", "conv4_dropout_cifar10", "conv6_dropout_cifar10",
    "vgg19_cifar10", "vgg19_cifar10_lr001", "vgg19_cifar10_warmup", "vgg19_cifar10_layerwise", "vgg19_cifar10_rewind",
    "resnet18_cifar10", "resnet18_cifar10_lr001", "resnet18_cifar10_warmup", "resnet18_cifar10_rewind",
)
ALL_RECIPES = sorted(p.stem for p in RECIPES.glob("*.json"))


def load(name, *overrides):
    return recipe.load(RECIPES / f"{name}.json", overrides)


def test_every_experiment_of_the_paper_has_a_recipe():
    assert set(PAPER_RECIPES) <= set(ALL_RECIPES)


@pytest.mark.parametrize("name", ALL_RECIPES)
def test_recipe_validates_and_cites_the_paper(name):
    r = load(name)
    assert r.name == name
    if name in PAPER_RECIPES:
        assert "Section" in r.description or "Stabilizing" in r.description
        assert r.training.iterations % r.training.eval_every == 0
        assert r.rewind.iteration % r.training.eval_every == 0


# name: (model, dropout, optimizer, learning rate, batch, iterations, rates, scope)
SETTINGS = {
    "conv2_cifar10": ("conv2", 0.0, "adam", 2e-4, 60, 20000, {"conv": 0.1, "dense": 0.2, "output": 0.1}, "layerwise"),
    "conv4_cifar10": ("conv4", 0.0, "adam", 3e-4, 60, 25000, {"conv": 0.1, "dense": 0.2, "output": 0.1}, "layerwise"),
    "conv6_cifar10": ("conv6", 0.0, "adam", 3e-4, 60, 30000, {"conv": 0.15, "dense": 0.2, "output": 0.1}, "layerwise"),
    "conv2_dropout_cifar10": ("conv2", 0.5, "adam", 3e-4, 60, 60000, {"conv": 0.1, "dense": 0.2, "output": 0.1}, "layerwise"),
    "conv4_dropout_cifar10": ("conv4", 0.5, "adam", 2e-4, 60, 75000, {"conv": 0.1, "dense": 0.2, "output": 0.1}, "layerwise"),
    "conv6_dropout_cifar10": ("conv6", 0.5, "adam", 2e-4, 60, 90000, {"conv": 0.15, "dense": 0.2, "output": 0.1}, "layerwise"),
    "vgg19_cifar10": ("vgg19", 0.0, "sgd", 0.1, 64, 112480, {"conv": 0.2}, "global"),
    "vgg19_cifar10_lr001": ("vgg19", 0.0, "sgd", 0.01, 64, 112480, {"conv": 0.2}, "global"),
    "vgg19_cifar10_warmup": ("vgg19", 0.0, "sgd", 0.1, 64, 112480, {"conv": 0.2}, "global"),
    "vgg19_cifar10_layerwise": ("vgg19", 0.0, "sgd", 0.1, 64, 112480, {"conv": 0.2}, "layerwise"),
    "vgg19_cifar10_rewind": ("vgg19", 0.0, "sgd", 0.1, 64, 112480, {"conv": 0.2}, "global"),
    "resnet18_cifar10": ("resnet18", 0.0, "sgd", 0.1, 128, 30000, {"conv": 0.2}, "global"),
    "resnet18_cifar10_lr001": ("resnet18", 0.0, "sgd", 0.01, 128, 30000, {"conv": 0.2}, "global"),
    "resnet18_cifar10_warmup": ("resnet18", 0.0, "sgd", 0.03, 128, 30000, {"conv": 0.2}, "global"),
    "resnet18_cifar10_rewind": ("resnet18", 0.0, "sgd", 0.1, 128, 30000, {"conv": 0.2}, "global"),
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_recipe_has_the_papers_hyperparameters(name):
    model, dropout, optimizer, rate, batch, iterations, rates, scope = SETTINGS[name]
    r = load(name)
    assert (r.model.name, r.model.dropout) == (model, dropout)
    assert (r.training.optimizer, r.training.learning_rate) == (optimizer, rate)
    assert (r.training.batch_size, r.training.iterations) == (batch, iterations)
    assert (r.pruning.rates, r.pruning.scope, r.pruning.method) == (rates, scope, "iterative")
    assert r.dataset.name == "cifar10"
    if optimizer == "sgd":  # VGG-19 and Resnet-18: Section 4's SGD setting
        assert (r.training.momentum, r.training.weight_decay, r.dataset.augment) == (0.9, 1e-4, True)
    else:
        assert r.training.eval_every == 100 and not r.dataset.augment


def test_schedules_warmup_and_rewinding_match_the_paper():
    vgg, resnet = load("vgg19_cifar10"), load("resnet18_cifar10")
    assert vgg.training.lr_drops == (56240, 84360) and vgg.training.iterations == 160 * 703
    assert resnet.training.lr_drops == (20000, 25000)
    assert load("vgg19_cifar10_warmup").training.warmup_iterations == 10000
    assert load("resnet18_cifar10_warmup").training.warmup_iterations == 20000
    assert 0 < load("vgg19_cifar10_rewind").rewind.iteration < 1000
    assert 0 < load("resnet18_cifar10_rewind").rewind.iteration < 1000
    assert load("lenet300_mnist_oneshot").pruning.method == "oneshot"
    # The VGG-19 schedule, at the iterations where it changes.
    lr = training.learning_rate(load("vgg19_cifar10_warmup").training)
    values = [float(lr(step)) for step in (0, 5000, 10000, 56239, 56240, 84359, 84360, 112479)]
    np.testing.assert_allclose(values, [0, 0.05, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_rewind_iteration_must_be_a_multiple_of_eval_every():
    with pytest.raises(recipe.RecipeError, match="rewind.iteration.*multiple of training.eval_every"):
        load("resnet18_cifar10_rewind", "rewind.iteration=250")


def test_cli_lists_every_recipe_with_its_weight_count():
    result = CliRunner().invoke(main, ["recipes"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert set(lines) == set(ALL_RECIPES)
    assert "4,300,992" in lines["conv2_cifar10"] and "Figure 5" in lines["conv2_cifar10"]
    assert "20,024,000" in lines["vgg19_cifar10_rewind"]
    assert "270,896" in lines["resnet18_cifar10"] and "266,200" in lines["lenet300_mnist"]
    assert "2,261,184" in lines["conv6_dropout_cifar10"] and "2,425,024" in lines["conv4_cifar10"]


def test_cli_shows_the_resolved_recipe():
    result = CliRunner().invoke(main, ["recipes", "show", "conv4_cifar10", "--set", "pruning.rounds=3"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["training"]["eval_batch_size"] == 1000  # a default filled in
    assert recipe.parse(shown) == load("conv4_cifar10", "pruning.rounds=3")


def test_cli_refuses_an_unknown_recipe_name():
    result = CliRunner().invoke(main, ["recipes", "show", "conv5_cifar10"])
    assert result.exit_code == 2
    assert "no recipe named 'conv5_cifar10'" in result.output
    assert catalog.find("conv2_cifar10").name == "conv2_cifar10.json"


# ---- smoke test: every recipe runs 2 rounds of a few iterations -------------------------

HEAVY = ("vgg19",)  # ~20M weights: two steps of batch 2
# Recipes that differ from a recipe in the default smoke set only in numbers (learning
# rate, schedule, pruning scope) run in the slow suite: VGG-19 takes ~45 s on a loaded
# 2-core machine. vgg19_cifar10_rewind (global pruning, rewinding, batch norm,
# augmentation, weight decay) and the Resnet-18 warmup and rewind recipes stay default.
# Variants whose smoke run exercises no path another recipe's run does not (the suite stays
# under 15 minutes on 2 cores); run them with `pytest -m slow`.
SLOW = ("vgg19_cifar10", "vgg19_cifar10_lr001", "vgg19_cifar10_warmup", "vgg19_cifar10_layerwise",
        "vgg19_cifar10_rewind", "resnet18_cifar10", "resnet18_cifar10_lr001", "resnet18_cifar10_warmup",
        "conv4_dropout_cifar10", "conv6_dropout_cifar10", "lenet300_mnist_criteria",
        # variants of recipes run here whose settings other tests cover (dropout, rewinding modes, supermasks)
        "conv2_dropout_cifar10", "conv4_cifar10", "lenet300_mnist_finetune", "lenet300_mnist_lr_rewind",
        "lenet300_mnist_supermask",
        # pruning at initialization: tests/test_at_init.py runs it end to end on a tiny model
        "lenet300_mnist_at_init", "conv2_cifar10_at_init")


def smoke_overrides(r):
    """Overrides that shrink recipe ``r`` to 2 rounds of 2-4 iterations on tiny data."""
    every = 1 if r.model.name in HEAVY else 2
    sets = {
        "trials": 1, "pruning.rounds": 2,
        "training.iterations": 2 * every, "training.eval_every": every,
        "training.batch_size": 2 if r.model.name in HEAVY else 8, "training.eval_batch_size": 64,
        "dataset.validation_size": 8,
    }
    if r.training.lr_drops:
        sets["training.lr_drops"] = [every]
    if r.training.warmup_iterations:
        sets["training.warmup_iterations"] = every
    if r.rewind.iteration:
        sets["rewind.iteration"] = every
    if r.model.name not in ("lenet_300_100", "mlp"):
        sets["controls"] = []  # controls are covered by the core tests; here they only cost time
    return [f"{key}={json.dumps(value)}" for key, value in sets.items()]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in ALL_RECIPES]
)
def test_recipe_runs_two_rounds(name, tmp_path):
    import tensorflow_datasets as tfds

    r = recipe.load(RECIPES / f"{name}.json", smoke_overrides(load(name)))
    with tfds.testing.mock_data(num_examples=24):
        run_dir, rows = lottery.run(r, out=tmp_path / "run", log=lambda message: None)
    assert [(row["round"], row["variant"]) for row in rows] == [(0, "ticket")] + [(1, v) for v in r.variants]
    assert rows[0]["weights_remaining"] == 100.0
    assert 0 < rows[1]["weights_remaining"] < 100.0
    assert all(np.isfinite(row["best_val_loss"]) for row in rows)
    masks = storage.load_arrays(layout.variant_dir(run_dir, 0, 1, "ticket") / "mask.npz")
    final = storage.load_arrays(layout.variant_dir(run_dir, 0, 1, "ticket") / "final.npz")
    for layer, mask in masks.items():  # pruned weights are zero after training
        assert 0 < mask.mean() < 1
        assert np.all(final[f"{layer}/kernel"][mask == 0] == 0)
    for layer in {k.split("/")[0] for k in final if k.endswith("/kernel")} - set(masks):
        assert np.all(final[f"{layer}/kernel"] != 0)  # excluded layers stay dense
    shape, classes = catalog.dataset_shape(r.dataset)
    kinds = models.layer_kinds(models.build(r.model, shape, classes, seed=0))
    assert set(masks) == {layer for layer, kind in kinds.items() if kind in r.pruning.rates}


# ---- shipped recipes by name, extends resolved ----------------------------------------

def test_cli_shows_a_variant_recipe_resolved():
    result = CliRunner().invoke(main, ["recipes", "show", "vgg19_cifar10_lr001"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert "extends" not in shown and shown["name"] == "vgg19_cifar10_lr001"
    assert shown["training"]["learning_rate"] == 0.01 and shown["training"]["lr_drops"] == [56240, 84360]
    assert recipe.parse(shown) == load("vgg19_cifar10_lr001")


def test_cli_runs_a_recipe_by_name_or_path(tmp_path, monkeypatch):
    """The name reaches the shipped file: its values are checked (and refused here, so nothing trains)."""
    monkeypatch.chdir(tmp_path)
    for given in ("quickstart_digits", "quickstart_digits.json", str(RECIPES / "quickstart_digits.json")):
        result = CliRunner().invoke(main, ["run", given, "--set", "training.batch_size=0", "--out", "run"])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == "error: recipe key 'training.batch_size': must be an integer >= 1, got 0"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("given, expected", [
    ("conv5_cifar10", "error: no recipe named 'conv5_cifar10' (it is not a file, nor a recipe `keras-lottery recipes` "
                      "lists): did you mean 'conv6_cifar10'? (the recipes are conv2_cifar10, conv2_cifar10_at_init, "
                      "conv2_dropout_cifar10, "),
    ("nothing_like_it", "error: no recipe named 'nothing_like_it' (it is not a file, nor a recipe `keras-lottery "
                        "recipes` lists); the recipes are conv2_cifar10, "),
    ("missing/recipe.json", "error: recipe file not found: missing/recipe.json; pass a recipe file, or one of the "
                            "names conv2_cifar10, "),
])
def test_cli_run_refuses_what_is_neither_a_file_nor_a_name(tmp_path, monkeypatch, given, expected):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", given])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert all(name in lines[0] for name in ALL_RECIPES)


def test_cli_run_prints_the_notes_of_a_schedule_longer_than_training(tmp_path, write_recipe, tiny_recipe):
    path = write_recipe(tiny_recipe(training={"lr_drops": [40, 60, 100], "warmup_iterations": 80}, controls=[]))
    result = CliRunner().invoke(main, ["run", str(path), "--rounds", "1", "--out", str(tmp_path / "run")])
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: training.lr_drops 60, 100 lie at or past the last iteration (60) and never happen",
        "note: training.warmup_iterations 80 is at or past the last iteration (60): the warmup never ends, so the "
        "learning rate never reaches training.learning_rate (0.003)",
    ]
    assert result.exit_code == 0, (result.output, result.exception)  # and the run goes ahead
    assert (tmp_path / "run" / "results.csv").is_file()
