"""Shared fixtures: small recipes and datasets that make a run take seconds."""

import copy
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "keras_lottery" / "recipes"  # package data; the top-level recipes/ links here
MNIST = Path(os.environ.get("KERAS_LOTTERY_MNIST", ROOT.parent / "shared" / "data" / "mnist.npz"))

# A recipe that trains in about a second per round on 2 CPU cores.
TINY = {
    "name": "tiny",
    "description": "test recipe",
    "dataset": {"name": "digits", "path": None, "validation_size": 200},
    "model": {"name": "mlp", "initializer": "glorot_normal", "hidden": [32, 16]},
    "training": {"optimizer": "adam", "learning_rate": 0.003, "batch_size": 32, "iterations": 60,
                 "eval_every": 20, "eval_batch_size": 500},
    "pruning": {"method": "iterative", "scope": "layerwise", "rates": {"dense": 0.2, "output": 0.1}, "rounds": 3},
    "rewind": {"iteration": 0},
    "controls": ["random_reinit", "random_prune"],
    "trials": 1,
    "seed": 0,
}


def merge(base, changes):
    """A deep copy of ``base`` with nested ``changes`` applied (as ``extends`` merges)."""
    from keras_lottery.config.recipe import merge as merge_recipe

    return copy.deepcopy(merge_recipe(base, changes))


@pytest.fixture
def tiny_recipe():
    """A function returning the tiny recipe (a dict) with nested changes applied."""
    return lambda **changes: merge(TINY, changes)


def save_recipe(folder, data, name="recipe.json"):
    """Write a recipe dict as JSON to ``folder/name`` and return the path."""
    path = Path(folder) / name
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe dict to a JSON file in tmp_path and return the path."""
    return lambda data, name="recipe.json": save_recipe(tmp_path, data, name)


@pytest.fixture
def write_module(tmp_path, monkeypatch):
    """A function writing Python source as an importable module (``<prefix>_<test>``) in
    tmp_path and returning its name; the module is forgotten after the test."""
    written = []

    def write(source, prefix="usermodels"):
        name = f"{prefix}_{tmp_path.name.replace('-', '_')}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(tmp_path))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


@pytest.fixture
def fake_npz(tmp_path):
    """A small dataset in Keras's mnist.npz layout whose classes are learnable."""
    rng = np.random.default_rng(0)

    def images(labels):
        x = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):  # a bright bar whose row encodes the class
            x[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 250
        return x

    y_train = rng.integers(0, 10, 700).astype(np.uint8)
    y_test = rng.integers(0, 10, 200).astype(np.uint8)
    path = tmp_path / "fake_mnist.npz"
    np.savez(path, x_train=images(y_train), y_train=y_train, x_test=images(y_test), y_test=y_test)
    return path


@pytest.fixture
def mnist_npz():
    if not MNIST.is_file():
        pytest.skip(f"real MNIST not found at {MNIST} (set KERAS_LOTTERY_MNIST)")
    return MNIST


def assert_survivors_start_from_theta0(recipe, run_dir, model, data, trial=0, round_index=1):
    """The ticket of ``round_index`` starts from θ0 bit for bit: the rewind callback sets every
    weight to its θ0 value, times its mask where the weight is pruned (``model`` and ``data`` are
    what the run was given through the Python API)."""
    from keras_lottery import lottery, masking
    from keras_lottery.lottery.callbacks import Rewind
    from keras_lottery.pruning import units
    from keras_lottery.rundir import layout, storage

    experiment = lottery.experiment.build(recipe, log=lambda _: None, model=model, data_source=data, announce=False)
    experiment.run_dir = run_dir
    theta0 = storage.load_arrays(layout.init_weights(run_dir, trial))
    plan = experiment.round(trial, round_index).plan("ticket")
    rewind = Rewind(weights=plan.weights, masks=plan.masks)
    rewind.set_model(experiment.model)
    rewind.on_train_begin()
    weights = masking.get_weights(experiment.model)
    assert weights.keys() == theta0.keys()
    pruned = {units.weight_key(unit, theta0): unit for unit in plan.masks}
    for key, value in theta0.items():
        assert np.array_equal(weights[key], value * plan.masks[pruned[key]] if key in pruned else value), key


# Recipe fields added after tests/fixtures/recipes_resolved.json was written, at their defaults:
# a recipe that leaves them there resolves, runs and hashes as before.
LATER_FIELDS = {
    (): {"keras": "tf_keras"},  # 0.3
    ("pruning",): {"structure": "unstructured",  # 0.4: block tickets
                   "target_weights": None, "score_batch": None, "score_steps": None},  # pruning at initialization
    ("dataset",): {"vocabulary_size": 10000, "sequence_length": 128},  # text data
    ("model",): {"vocabulary_size": None},
}


def without_later_fields(resolved):
    """``resolved`` (a recipe as a dict) without :data:`LATER_FIELDS`, each checked to be at its default."""
    resolved = copy.deepcopy(resolved)
    for path, fields in LATER_FIELDS.items():
        section = resolved
        for key in path:
            section = section[key]
        for key, default in fields.items():
            assert section.pop(key) == default, (path, key)
    return resolved
