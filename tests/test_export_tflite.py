"""LiteRT export of block tickets: sparse encoding, outputs equal to Keras, int8, the
benchmark, and refusal of what cannot be exported."""

import json
import shutil
import sys

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("ai_edge_litert")

from conftest import TINY, merge  # noqa: E402
from keras_lottery import export_tflite, lottery  # noqa: E402
from keras_lottery.cli import main  # noqa: E402
from keras_lottery.config import recipe as recipes  # noqa: E402
from keras_lottery.pruning import blocks  # noqa: E402
from keras_lottery.rundir import layout, storage  # noqa: E402

# Digits, a 64-64-32-10 MLP pruned in 4x1 blocks by half per round: 26% of weights in round 2.
BLOCKS = {"model": {"hidden": [64, 32]}, "training": {"iterations": 100, "eval_every": 50},
          "pruning": {"rates": {"dense": 0.5, "output": 0.3}, "rounds": 3, "structure": [4, 1]},
          "controls": ["random_prune"]}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_line(result, code, text):
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0], result.output


@pytest.fixture(scope="module")
def block_run(tmp_path_factory):
    recipe = recipes.parse(merge(TINY, BLOCKS))
    run_dir, rows = lottery.run(recipe, tmp_path_factory.mktemp("tflite") / "blocks", log=lambda _: None)
    return run_dir, rows


@pytest.fixture(scope="module")
def splits(block_run):
    run_dir, _ = block_run
    return export_tflite.run_data(run_dir, recipes.parse(storage.read_json(layout.recipe_file(run_dir))))


def test_the_run_trains_block_masks_for_the_ticket_and_random_pruning(block_run):
    run_dir, rows = block_run
    assert [r["weights_remaining"] for r in rows if r["variant"] == "ticket"][-1] < 30
    for variant in ("ticket", "random_prune"):
        masks = storage.load_arrays(layout.mask(run_dir, 0, 2, variant))
        final = storage.load_arrays(layout.final(run_dir, 0, 2, variant))
        for name, mask in masks.items():
            assert blocks.Grid(mask.shape, (4, 1)).is_blocked(mask), (variant, name)
            assert np.all(final[f"{name}/kernel"][mask == 0] == 0)
    ticket, drawn = (storage.load_arrays(layout.mask(run_dir, 0, 2, v)) for v in ("ticket", "random_prune"))
    assert {n: m.sum() for n, m in ticket.items()} == {n: m.sum() for n, m in drawn.items()}


def test_block_ticket_tflite_is_sparse_smaller_and_predicts_like_keras(block_run, splits, tmp_path):
    run_dir, _ = block_run
    path, found, model = export_tflite.export_tflite(run_dir, 2, tmp_path / "ticket")
    dense_path, dense_found, _ = export_tflite.export_tflite(run_dir, 0, tmp_path / "dense")
    assert path == tmp_path / "ticket" / "model.tflite" and sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert path.stat().st_size < dense_path.stat().st_size / 2
    assert [entry["runs"] for entry in found] == ["sparse 1x4"] * 3  # LiteRT's 1x4 sparse kernel runs every layer
    assert [entry["runs"] for entry in dense_found] == ["dense"] * 3
    runner = export_tflite.Runner(path.read_bytes(), batch=32)
    lite = runner.predict(splits.x_test)
    keras_out = model.predict(splits.x_test, verbose=0)
    assert np.max(np.abs(lite - keras_out)) < 1e-5


def test_an_unstructured_sparse_kernel_is_said_to_be_densified():
    from keras_lottery.backend import keras

    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.layers.InputLayer((64,)), keras.layers.Dense(32, name="fc")])
    kernel, bias = model.layers[0].get_weights()
    model.layers[0].set_weights([kernel * (rng.random(kernel.shape) < 0.1), bias])  # scattered zeros, no blocks
    (entry,) = export_tflite.sparsity(export_tflite.convert(model))
    assert entry["sparse"] and entry["runs"] == "densified" and entry["shape"] == [32, 64]
    assert "stored sparse, densified at run time (runs dense)" in export_tflite.describe_sparsity([entry])[0]


def test_int8_export_runs_and_stays_within_1pp_of_float(block_run, splits, tmp_path):
    run_dir, _ = block_run
    accuracy = {}
    for quantize in (None, "int8"):
        path, _, _ = export_tflite.export_tflite(run_dir, 1, tmp_path / str(quantize), quantize=quantize)
        runner = export_tflite.Runner(path.read_bytes(), batch=64)
        accuracy[quantize] = np.mean(runner.predict(splits.x_test).argmax(-1) == splits.y_test)
    assert abs(accuracy["int8"] - accuracy[None]) <= 0.01, accuracy
    assert accuracy[None] > 0.5


def test_cli_benchmark_writes_export_benchmark_json_and_the_report_section(block_run, tmp_path):
    run_dir, _ = block_run
    result = invoke("export", run_dir, "--round", 2, "--format", "tflite", "--out", tmp_path / "e",
                    "--benchmark", "--calls", 50)
    assert result.exit_code == 0, result.output
    assert "runs sparse (the 1x4 sparse kernel)" in result.output
    assert "ticket vs dense (float32" in result.output
    entries = json.loads(layout.export_benchmark(run_dir).read_text())["entries"]
    (entry,) = [e for e in entries if e["round"] == 2]
    assert entry["pruned"]["bytes"] < entry["dense"]["bytes"] and entry["ratios"]["size"] > 2
    assert entry["pruned"]["agreement"] >= 0.999 and entry["structure"] == "4x1"
    assert entry["pruned"]["latency_batch1_us"] > 0 and entry["dense"]["latency_batch32_us"] > 0
    assert abs(entry["pruned"]["tflite_accuracy"] - entry["pruned"]["keras_accuracy"]) < 1e-9
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["model.tflite"]  # no scratch files left
    report = invoke("report", run_dir, "--out", tmp_path / "report")
    assert report.exit_code == 0, report.output
    assert "### Deployed with LiteRT" in (tmp_path / "report" / "report.md").read_text()
    saved = layout.export_benchmark(run_dir).read_text()
    layout.export_benchmark(run_dir).write_text("{not json")  # a damaged file leaves the section out, not the report
    try:
        report = invoke("report", run_dir, "--out", tmp_path / "report", "--force")
        assert report.exit_code == 0, report.output
        assert "Left out:" in (tmp_path / "report" / "report.md").read_text()
    finally:
        layout.export_benchmark(run_dir).write_text(saved)


def test_a_failed_round_is_refused_with_one_line(block_run, tmp_path):
    run_dir, _ = block_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    summary = storage.read_json(layout.summary(copy, 0, 2, "ticket"))
    summary.update(status="failed", error="loss became nan at iteration 50")
    storage.write_json(layout.summary(copy, 0, 2, "ticket"), summary)
    one_line(invoke("export", copy, "--round", 2, "--format", "tflite", "--out", tmp_path / "e"), 2, "failed")
    assert not (tmp_path / "e" / "model.tflite").exists()


def test_a_run_from_other_data_is_refused_with_one_line(block_run, tmp_path):
    run_dir, _ = block_run
    rng = np.random.default_rng(0)
    other = tmp_path / "other.npz"
    images = lambda n: rng.integers(0, 17, (n, 8, 8)).astype(np.uint8)  # noqa: E731
    np.savez(other, x_train=images(300), y_train=rng.integers(0, 10, 300), x_test=images(50),
             y_test=rng.integers(0, 10, 50))
    one_line(invoke("export", run_dir, "--round", 1, "--format", "tflite", "--quantize", "int8", "--data", other,
                    "--out", tmp_path / "e"), 2, "is not the run's")
    assert not (tmp_path / "e" / "model.tflite").exists()


def test_tflite_options_without_tflite_and_a_missing_litert_are_one_line(block_run, tmp_path, monkeypatch):
    run_dir, _ = block_run
    one_line(invoke("export", run_dir, "--round", 1, "--quantize", "int8", "--out", tmp_path / "e"), 2,
             "--quantize applies to --format tflite only")
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    one_line(invoke("export", run_dir, "--round", 1, "--format", "tflite", "--out", tmp_path / "f"), 2,
             "pip install ai-edge-litert")
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()
