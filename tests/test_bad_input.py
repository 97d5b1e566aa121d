"""Malformed recipes and data files: one-line error naming the problem, exit code 2,
and no run directory. Everything is refused before training, so these run in-process."""

import io
import json
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY, merge
from keras_lottery.cli import main


def without(key, path=()):
    """TINY without ``key`` (inside the nested section ``path``)."""
    data = merge(TINY, {})
    node = data
    for part in path:
        node = node[part]
    del node[key]
    return data


# (case id, recipe: a dict or raw text, extra CLI arguments, text the error must contain)
RECIPES = [
    # invalid JSON
    ("json-syntax", '{"name": "tiny", "training": {', [], "is not valid JSON"),
    ("json-empty", "", [], "is not valid JSON"),
    ("json-trailing-comma", '{"name": "tiny",}', [], "is not valid JSON"),
    ("json-not-object", "[1, 2, 3]", [], "must hold a JSON object"),
    ("json-repeated-key", json.dumps(TINY)[:-1] + ', "seed": 3}', [], "key 'seed' is set twice"),
    ("json-binary", b"\xff\xfe\x00garbage", [], "not a UTF-8 text file"),
    # wrong types
    ("type-batch-string", merge(TINY, {"training": {"batch_size": "32"}}), [], "'training.batch_size': must be an integer"),
    ("type-iterations-float", merge(TINY, {"training": {"iterations": 60.5}}), [], "'training.iterations': must be an integer"),
    ("type-lr-string", merge(TINY, {"training": {"learning_rate": "fast"}}), [], "'training.learning_rate': must be a number"),
    ("type-lr-nan", json.dumps(TINY).replace('"learning_rate": 0.003', '"learning_rate": NaN'), [], "'training.learning_rate': must be a finite number"),
    ("type-hidden-string", merge(TINY, {"model": {"hidden": "32"}}), [], "'model.hidden': must be a list"),
    ("type-rates-list", merge(TINY, {"pruning": {"rates": [0.2]}}), [], "'pruning.rates': must be an object"),
    ("type-trials-bool", merge(TINY, {"trials": True}), [], "'trials': must be an integer"),
    ("type-section-string", merge(TINY, {"dataset": "digits"}), [], "'dataset': must be an object"),
    ("type-controls-string", merge(TINY, {"controls": "random_reinit"}), [], "'controls': must be a list"),
    # unknown keys
    ("unknown-top", merge(TINY, {"epochs": 3}), [], "unknown recipe key 'epochs'"),
    ("unknown-nested", merge(TINY, {"training": {"lr": 0.1}}), [], "unknown recipe key 'training.lr'"),
    ("unknown-set", TINY, ["--set", "training.epochs=3"], "unknown recipe key 'training.epochs'"),
    ("set-no-equals", TINY, ["--set", "training.iterations"], "expected key.path=JSON_VALUE"),
    # missing sections
    ("missing-name", without("name"), [], "lacks section 'name'"),
    ("missing-dataset", without("dataset"), [], "lacks section 'dataset'"),
    ("missing-model", without("model"), [], "lacks section 'model'"),
    ("missing-training", without("training"), [], "lacks section 'training'"),
    ("missing-pruning", without("pruning"), [], "lacks section 'pruning'"),
    ("missing-npz-path", merge(TINY, {"dataset": {"name": "npz"}}), [], "'dataset.path': must be a file path"),
    # rates outside (0, 1)
    ("rate-one", merge(TINY, {"pruning": {"rates": {"dense": 1.0}}}), [], "'pruning.rates.dense': must be a fraction in (0, 1)"),
    ("rate-zero", merge(TINY, {"pruning": {"rates": {"dense": 0}}}), [], "'pruning.rates.dense': must be a fraction in (0, 1)"),
    ("rate-negative", merge(TINY, {"pruning": {"rates": {"output": -0.1}}}), [], "'pruning.rates.output'"),
    ("rate-string", merge(TINY, {"pruning": {"rates": {"dense": "20%"}}}), [], "'pruning.rates.dense'"),
    ("rate-unknown-kind", merge(TINY, {"pruning": {"rates": {"hidden": 0.2}}}), [], "keyed by layer kinds"),
    # non-positive sizes and counts
    ("batch-zero", merge(TINY, {"training": {"batch_size": 0}}), [], "'training.batch_size': must be an integer >= 1"),
    ("iterations-negative", merge(TINY, {"training": {"iterations": -5}}), [], "'training.iterations': must be an integer >= 1"),
    ("eval-every-zero", merge(TINY, {"training": {"eval_every": 0}}), [], "'training.eval_every': must be an integer >= 1"),
    ("trials-zero", merge(TINY, {"trials": 0}), [], "'trials': must be an integer >= 1"),
    ("trials-flag", TINY, ["--trials", "-1"], "'trials': must be an integer >= 1"),
    ("rounds-flag", TINY, ["--rounds", "0"], "'pruning.rounds': must be an integer >= 1"),
    ("validation-zero", merge(TINY, {"dataset": {"validation_size": 0}}), [], "'dataset.validation_size'"),
    ("checkpoint-zero", merge(TINY, {"training": {"checkpoint_every": 0}}), [], "'training.checkpoint_every': must be an integer >= 1"),
    ("lr-negative", merge(TINY, {"training": {"learning_rate": -0.1}}), [], "'training.learning_rate': must be a number > 0"),
    # unknown names
    ("unknown-model", merge(TINY, {"model": {"name": "resnet9000"}}), [], "'model.name': must be one of"),
    ("unknown-dataset", merge(TINY, {"dataset": {"name": "imagenet"}}), [], "'dataset.name': must be one of"),
    ("unknown-optimizer", merge(TINY, {"training": {"optimizer": "rmsprop"}}), [], "'training.optimizer': must be one of adam, sgd"),
    ("unknown-initializer", merge(TINY, {"model": {"initializer": "zeros"}}), [], "'model.initializer': must be one of"),
    ("unknown-control", merge(TINY, {"controls": ["random_shuffle"]}), [], "'controls': must be a list of"),
    ("bad-name", merge(TINY, {"name": "my run/1"}), [], "'name': must be a non-empty name"),
    # conflicting settings
    ("global-unequal-rates", merge(TINY, {"pruning": {"scope": "global"}}), [], "global pruning ranks all listed layers together"),
    ("eval-every-not-dividing", merge(TINY, {"training": {"eval_every": 7}}), [], "'training.eval_every': must divide training.iterations"),
    ("rewind-after-end", merge(TINY, {"rewind": {"iteration": 60}}), [], "'rewind.iteration': must be an iteration before the end"),
    ("rewind-off-evaluation", merge(TINY, {"rewind": {"iteration": 10}}), [], "'rewind.iteration': must be a multiple of training.eval_every"),
    ("momentum-with-adam", merge(TINY, {"training": {"momentum": 0.9}}), [], "'training.momentum': applies to optimizer 'sgd' only"),
    ("checkpoint-off-evaluation", merge(TINY, {"training": {"checkpoint_every": 30}}), [], "'training.checkpoint_every': must be a multiple of training.eval_every"),
    ("warmup-negative", merge(TINY, {"training": {"warmup_iterations": -1}}), [], "'training.warmup_iterations': must be an integer >= 0"),
    ("lr-drops-decreasing", merge(TINY, {"training": {"lr_drops": [40, 20]}}), [], "'training.lr_drops': must be a list of increasing iterations > 0"),
    ("repeated-controls", merge(TINY, {"controls": ["random_prune", "random_prune"]}), [], "'controls': must be a list without repeats"),
    ("rates-no-such-layer", dict(TINY, pruning=dict(TINY["pruning"], rates={"conv": 0.2})), [], "no layer to prune has a kind in ['conv']"),
    ("validation-too-large", merge(TINY, {"dataset": {"validation_size": 5000}}), [], "dataset.validation_size (5000) must be smaller"),
    # files
    ("recipe-not-found", None, [], "recipe file not found"),
    ("data-path-not-found", merge(TINY, {"dataset": {"path": "/nonexistent/mnist.npz"}}), [], "data file not found"),
    # beyond what the machine or the file system takes (issue 14)
    ("batch-size-beyond-indexing", merge(TINY, {"training": {"batch_size": 2 ** 40}}), [], "training.batch_size': must be an integer <="),
    ("name-too-long", merge(TINY, {"name": "n" * 300}), [], "at most 200 characters"),
    ("json-nested-deep", '{"name": "tiny", "description": ' + "[" * 100000 + "]" * 100000 + "}", [], "nested too deeply"),
    ("set-nested-deep", TINY, ["--set", "description=" + "[" * 100000 + "]" * 100000], "nested too deeply"),
]


def run_cli(args):
    return CliRunner().invoke(main, ["run", *map(str, args)])


def assert_refused(result, expected, run_dir):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert not run_dir.exists(), f"{run_dir} was created"


def test_at_least_thirty_malformed_recipes():
    assert len(RECIPES) >= 30


@pytest.mark.parametrize("recipe, extra, expected", [case[1:] for case in RECIPES], ids=[case[0] for case in RECIPES])
def test_malformed_recipe_is_refused(tmp_path, recipe, extra, expected):
    path = tmp_path / "recipe.json"
    if isinstance(recipe, dict):
        path.write_text(json.dumps(recipe))
    elif isinstance(recipe, str):
        path.write_text(recipe)
    elif isinstance(recipe, bytes):
        path.write_bytes(recipe)
    run_dir = tmp_path / "run"
    result = run_cli([path, "--out", run_dir, *extra])
    assert_refused(result, expected, run_dir)


def images(n, shape=(28, 28), dtype=np.uint8):
    return np.random.default_rng(0).integers(0, 255, size=(n, *shape)).astype(dtype)


def labels(n, classes=10):
    return (np.arange(n) % classes).astype(np.uint8)


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _bomb_bytes():
    """A tiny npz whose array headers declare far more than any machine's memory."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10 ** 7, 10 ** 6)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            archive.writestr(f"{key}.npy", header.getvalue())
    return buffer.getvalue()


GOOD = {"x_train": images(400), "y_train": labels(400), "x_test": images(100), "y_test": labels(100)}

# (case id, arrays to change in a valid layout or raw bytes, text the error must contain)
DATA = [
    ("wrong-keys", {"images": images(400), "labels": labels(400)}, "lacks x_train, y_train, x_test, y_test"),
    ("missing-test", {"x_train": images(400), "y_train": labels(400)}, "lacks x_test, y_test"),
    ("flat-images", dict(GOOD, x_train=images(400, (784,))), "x_train must be images shaped (N, H, W) or (N, H, W, C)"),
    ("float-images", dict(GOOD, x_test=images(100).astype(np.float32)), "x_test must be uint8 images"),
    ("float-labels", dict(GOOD, y_train=labels(400).astype(np.float32)), "y_train must hold integer class labels"),
    ("one-hot-labels", dict(GOOD, y_test=np.eye(10, dtype=np.uint8)[labels(100)]), "y_test must be shaped (100,)"),
    ("label-count", dict(GOOD, y_train=labels(399)), "y_train must be shaped (400,)"),
    ("negative-labels", dict(GOOD, y_train=labels(400).astype(np.int64) - 1), "y_train has negative labels"),
    ("test-label-beyond-train", dict(GOOD, y_test=labels(100, 12)), "y_test has label 11 but y_train only goes up to 9"),
    ("labels-from-one", dict(GOOD, y_train=labels(400) + 1), "y_train has 10 distinct labels ranging up to 10"),
    ("shape-mismatch", dict(GOOD, x_test=images(100, (32, 32))), "differ in shape"),
    ("empty-train", dict(GOOD, x_train=images(0), y_train=labels(0)), "x_train must be images"),
    ("object-arrays", dict(GOOD, y_train=np.array([None] * 400, dtype=object)), "is not a readable .npz"),
    ("not-an-npz", b"x_train,y_train\n1,2\n", "is not an .npz (zip) archive"),
    # issue 14
    ("zero-size-images", dict(GOOD, x_train=images(400, (28, 0)), x_test=images(100, (28, 0))), "has a dimension of size 0"),
    ("npy-named-npz", _npy_bytes(images(10)), "is a single .npy array, not an .npz archive"),
    ("decompresses-beyond-memory", _bomb_bytes(), "more than the"),
]


@pytest.mark.parametrize("content, expected", [case[1:] for case in DATA], ids=[case[0] for case in DATA])
def test_malformed_data_file_is_refused(tmp_path, write_recipe, content, expected):
    data = tmp_path / "data.npz"
    if isinstance(content, bytes):
        data.write_bytes(content)
    else:
        np.savez(data, **content)
    run_dir = tmp_path / "run"
    result = run_cli([write_recipe(TINY), "--data", data, "--out", run_dir])
    assert_refused(result, expected, run_dir)
