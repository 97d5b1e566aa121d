"""The command line: quick start end to end, export, and refusal of bad input."""

import json
import re
import shlex

import numpy as np
import pytest
from click.testing import CliRunner

from keras_lottery import data
from keras_lottery.rundir import layout, storage
from keras_lottery.cli import main
from keras_lottery.config.recipe import DatasetConfig
from keras_lottery.results import COLUMNS
from conftest import RECIPES, ROOT, TINY, merge


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "quickstart"
    result = invoke("run", RECIPES / "quickstart_digits.json", "--out", out, "--rounds", 3,
                    "--set", "training.iterations=200", "--set", "training.eval_every=50")
    assert result.exit_code == 0, result.output
    return out, result.output


def test_quickstart_runs_end_to_end_and_prints_the_table(quickstart):
    out, output = quickstart
    rows = storage.read_csv(out / "results.csv")
    assert tuple(rows[0]) == COLUMNS
    assert [(r["round"], r["variant"]) for r in rows] == [
        ("0", "ticket"), ("1", "ticket"), ("1", "random_reinit"), ("2", "ticket"), ("2", "random_reinit")]
    assert "random_reinit ES iter" in output and re.search(r"^\s+2\s+\d+\.\d%", output, re.M)
    assert "iteration 200/200" in output  # progress within a round
    saved = json.loads((out / "recipe.json").read_text())
    assert saved["training"]["iterations"] == 200 and saved["pruning"]["rounds"] == 3
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))


def _digits_test_set():
    splits = data.load(DatasetConfig(name="digits", validation_size=300))
    return splits.x_test, splits.y_test


def _kernels(loaded):
    return {v.name.split(":")[0]: v.numpy() for v in loaded.variables if v.name.endswith("kernel:0")}


def test_export_writes_a_plain_savedmodel_that_predicts_like_the_run(quickstart, tmp_path):
    import tensorflow as tf

    out, _ = quickstart
    result = invoke("export", out, "--round", 2, "--out", tmp_path / "model")
    assert result.exit_code == 0, result.output
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    masks = storage.load_arrays(layout.variant_dir(out, 0, 2, "ticket") / "mask.npz")
    kernels = _kernels(loaded)
    assert set(kernels) == {f"{layer}/kernel" for layer in masks}  # no pruning wrappers left
    for layer, mask in masks.items():
        assert np.all(kernels[f"{layer}/kernel"][mask == 0] == 0.0)
    x, y = _digits_test_set()
    logits = loaded.signatures["serving_default"](image=tf.constant(x))["output"].numpy()
    summary = storage.read_json(layout.variant_dir(out, 0, 2, "ticket") / "summary.json")
    assert np.mean(logits.argmax(1) == y) == pytest.approx(summary["final_test_accuracy"], abs=1e-6)


def test_export_init_weights_is_the_ticket_itself(quickstart, tmp_path):
    import tensorflow as tf

    out, _ = quickstart
    assert invoke("export", out, "--round", 1, "--weights", "init", "--out", tmp_path / "m").exit_code == 0
    kernels = _kernels(tf.saved_model.load(str(tmp_path / "m")))
    theta0 = storage.load_arrays(out / "trial_0" / "init.npz")
    masks = storage.load_arrays(layout.variant_dir(out, 0, 1, "ticket") / "mask.npz")
    for layer, mask in masks.items():
        assert np.array_equal(kernels[f"{layer}/kernel"], theta0[f"{layer}/kernel"] * mask)


def test_export_of_an_unfinished_round_is_refused(quickstart, tmp_path):
    out, _ = quickstart
    result = invoke("export", out, "--round", 7, "--out", tmp_path / "m")
    assert result.exit_code == 2 and "not a finished round" in result.output
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "changes, key",
    [({"training": {"batch_size": 0}}, "training.batch_size"),
     ({"pruning": {"rates": {"dense": 1.5}}}, "pruning.rates.dense"),
     ({"model": {"name": "alexnet"}}, "model.name"),
     ({"surprise": 1}, "surprise")],
)
def test_bad_recipes_exit_2_naming_the_key_and_write_nothing(write_recipe, tmp_path, changes, key):
    out = tmp_path / "never"
    result = invoke("run", write_recipe(merge(TINY, changes)), "--out", out)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and lines[0].startswith("error:")
    assert not out.exists()


def test_missing_data_file_fails_fast_with_the_fix(write_recipe, tmp_path):
    result = invoke("run", write_recipe(TINY), "--data", tmp_path / "nope.npz", "--out", tmp_path / "never")
    assert result.exit_code == 2 and "--data" in result.output and "nope.npz" in result.output
    assert not (tmp_path / "never").exists()


def test_npz_data_option_runs(write_recipe, fake_npz, tmp_path):
    recipe = merge(TINY, {"dataset": {"name": "mnist", "validation_size": 100}, "controls": []})
    result = invoke("run", write_recipe(recipe), "--data", fake_npz, "--rounds", 2, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert len(storage.read_csv(tmp_path / "r" / "results.csv")) == 2


def test_ci_runs_the_test_command_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, re.S)
    commands = [line for block in blocks for line in block.splitlines() if "pytest" in line]
    assert commands, "README.md gives no test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert any(command.strip() in ci for command in commands)
    quickstart = [line for block in blocks for line in block.splitlines() if "quickstart_digits.json" in line]
    assert quickstart and shlex.split(quickstart[0])  # the quick-start command is there and well formed


def test_results_files_get_the_permissions_of_any_new_file(quickstart):
    import os

    out, _ = quickstart
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "results.csv").stat().st_mode & 0o777 == 0o666 & ~umask
