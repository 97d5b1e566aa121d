"""Export, the masked wrapper saved and stripped, the report, TensorBoard, the analyses and
speed.py on Keras 3, on the TensorFlow and the JAX backend.

A process runs one Keras, and this one runs tf_keras: the Keras 3 parts run in one child
process per backend (this file, run as a script: ``python tests/test_export_keras3.py
FOLDER``, with ``KERAS_LOTTERY_KERAS=keras3`` and ``KERAS_BACKEND``), both started at once.
Each trains a tiny run from the command line (2 rounds of 60 iterations, θk saved at 20),
then exports, analyzes and reports it, and writes what it measured to ``FOLDER/facts.json``;
the tests here read those facts. The JAX child is left out where jax is not installed.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BACKENDS = ["tensorflow"] + (["jax"] if importlib.util.find_spec("jax") is not None else [])
ROUNDS = 2
SETS = {"training.iterations": 60, "training.eval_every": 20, "training.checkpoint_every": 20,
        "rewind.iteration": 20, "controls": []}
TIMEOUT = 600
FACTS = "facts.json"
LOG = "child.log"


# ---- the child: everything that runs on Keras 3 ----------------------------------------------


def _invoke(args):
    """``keras-lottery ARGS`` in this process: (exit code, output)."""
    from click.testing import CliRunner

    from keras_lottery.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _max_difference(a, b):
    import numpy as np

    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def child(folder):
    import numpy as np

    folder = Path(folder)
    facts = {}
    began = time.monotonic()

    def record(name, **values):
        facts[name] = dict(values, at=round(time.monotonic() - began, 1))  # seconds since the child began
        (folder / FACTS).write_text(json.dumps(facts, indent=1))

    from keras_lottery import data, export, masking
    from keras_lottery.backend import BACKEND, FLAVOUR, keras, tf
    from keras_lottery.lottery import variants
    from keras_lottery.rundir import layout, storage

    record("process", flavour=FLAVOUR, backend=BACKEND)
    run_dir = folder / "run"
    sets = [arg for key, value in SETS.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    start = time.monotonic()
    code, output = _invoke(["run", "quickstart_digits", "--keras", "keras3", "--rounds", ROUNDS,
                            "--out", run_dir, *sets])
    record("run", code=code, output=output[-3000:], seconds=time.monotonic() - start)
    recipe = export.read_recipe(run_dir)
    masks = storage.load_arrays(layout.mask(run_dir, 0, 1, variants.TICKET))
    final = storage.load_arrays(layout.final(run_dir, 0, 1, variants.TICKET))
    x = np.asarray(data.load(recipe.dataset).x_test[:64], np.float32)

    # The round-1 ticket as a plain model built from its saved weights (masked weights zero).
    plain = export.build(run_dir, recipe)
    masking.set_weights(plain, {k: v * masks[k.split("/")[0]] if k.endswith("/kernel") and k.split("/")[0] in masks
                                else v for k, v in final.items()})
    expected = np.asarray(plain.predict(x, verbose=0))

    # export: model.keras and a SavedModel in --out
    out = folder / "ticket"
    code, output = _invoke(["export", run_dir, "--round", 1, "--out", out])
    facts_export = {"code": code, "output": output, "files": sorted(p.name for p in out.iterdir()) if out.is_dir() else []}
    if code == 0:
        loaded = keras.saving.load_model(str(out / export.KERAS_FILE))
        facts_export["keras_layers"] = [type(layer).__name__ for layer in loaded.layers]
        facts_export["keras_masked_nonzero"] = {
            name: int(np.count_nonzero(np.asarray(loaded.get_layer(name).kernel.numpy())[mask == 0]))
            for name, mask in masks.items()}
        facts_export["keras_masked_count"] = {name: int((mask == 0).sum()) for name, mask in masks.items()}
        facts_export["keras_difference"] = _max_difference(loaded.predict(x, verbose=0), expected)
        served = tf.saved_model.load(str(out))
        facts_export["savedmodel_difference"] = _max_difference(served.serve(tf.constant(x)).numpy(), expected)
    record("export", **facts_export)

    # export --format tflite: Keras 3 goes through the SavedModel of its forward pass (jax2tf on JAX)
    if importlib.util.find_spec("ai_edge_litert") is not None:
        from keras_lottery import export_tflite

        out = folder / "tflite"
        code, output = _invoke(["export", run_dir, "--round", 1, "--format", "tflite", "--out", out])
        facts_tflite = {"code": code, "output": output[-2000:],
                        "files": sorted(p.name for p in out.iterdir()) if out.is_dir() else []}
        if code == 0:
            runner = export_tflite.Runner((out / export_tflite.TFLITE_FILE).read_bytes(), batch=len(x))
            facts_tflite["difference"] = _max_difference(runner(x), expected)
        record("tflite", **facts_tflite)

    # The architecture saved in model.json (how a model of the user's own is rebuilt) is Keras 3 JSON.
    architecture = json.loads(layout.model_file(run_dir).read_text())["architecture"]
    rebuilt = keras.models.model_from_json(json.dumps(architecture))
    rebuilt.set_weights(plain.get_weights())
    record("model_json", difference=_max_difference(rebuilt.predict(x, verbose=0), expected))

    # The masked model saved as .keras and loaded again (MaskedLayer is registered), then stripped.
    wrapped = masking.wrap(export.build(run_dir, recipe), list(masks))
    masking.set_masks(wrapped, masks)
    masking.set_weights(wrapped, final)
    keras_file = folder / "wrapped.keras"
    wrapped.save(str(keras_file))
    reloaded = keras.saving.load_model(str(keras_file))
    stripped = masking.strip(reloaded)
    record(
        "wrapped",
        reloaded_wrappers=sorted(masking.wrappers(reloaded)),
        masks_equal=all(np.array_equal(value, masks[name]) for name, value in masking.get_masks(reloaded).items()),
        weights_equal=all(np.array_equal(value, final[name]) for name, value in masking.get_weights(reloaded).items()),
        reloaded_difference=_max_difference(reloaded.predict(x, verbose=0), expected),
        stripped_layers=[type(layer).__name__ for layer in stripped.layers],
        stripped_masked_nonzero=sum(int(np.count_nonzero(np.asarray(stripped.get_layer(n).kernel.numpy())[m == 0]))
                                    for n, m in masks.items()),
        stripped_difference=_max_difference(stripped.predict(x, verbose=0), expected),
    )

    # Analyses: forgetting, and instability (θk replayed bit for bit; the command end to end).
    code, output = _invoke(["analyze", "forgetting", run_dir])
    record("forgetting", code=code, output=output[-2000:],
           files=sorted(p.name for p in layout.analysis_dir(run_dir, "forgetting").glob("*")))
    from keras_lottery import analyses
    from keras_lottery.analyses import instability

    run = analyses._load_run(run_dir)
    experiment = instability.experiment_for(run, instability.load_data(run, instability.Options()), lambda _: None)
    replayed = instability.replay_theta_k(experiment, 0, recipe.rewind.iteration, folder / "replay")
    saved = storage.load_arrays(layout.rewind_weights(run_dir, 0))
    record("replay", names_equal=set(replayed) == set(saved),
           differing=[name for name in saved if not np.array_equal(replayed.get(name), saved[name])])
    code, output = _invoke(["analyze", "instability", run_dir, "--rounds", "1", "--rewind-points", "0",
                            "--alphas", "3"])
    table = layout.analysis_dir(run_dir, "instability") / instability.TABLE_JSON
    record("instability", code=code, output=output[-2000:],
           entries=json.loads(table.read_text()) if table.is_file() else None)

    # The report, with both analyses' sections, and the TensorBoard events of every round.
    code, output = _invoke(["report", run_dir])
    report = layout.report_dir(run_dir) / "report.md"
    tags = {}
    for round_index in range(ROUNDS):
        events = layout.tensorboard_variant(run_dir, 0, round_index, variants.TICKET).glob("events.out.tfevents.*")
        tags[round_index] = sorted({value.tag for path in events for event in tf.compat.v1.train.summary_iterator(str(path))
                                    for value in event.summary.value})
    record("report", code=code, output=output, text=report.read_text() if report.is_file() else "",
           figures=sorted(p.name for p in report.parent.glob("*.png")), tensorboard_tags=tags)

    # python -m keras_lottery.speed
    code, output = _invoke_speed(["quickstart_digits", "--keras", "keras3", "--steps", "5"])
    record("speed", code=code, output=output)


def _invoke_speed(args):
    from click.testing import CliRunner

    from keras_lottery import speed

    result = CliRunner().invoke(speed.main, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


# ---- the tests ---------------------------------------------------------------------------------


def keras3_env(backend):
    env = dict(os.environ, KERAS_LOTTERY_KERAS="keras3", KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def children(tmp_path_factory):
    """Each backend's child, started at once: ``{backend: (folder, facts, exit code, log)}``."""
    started = {}
    for backend in BACKENDS:
        folder = tmp_path_factory.mktemp(f"keras3_{backend}")
        log = open(folder / LOG, "w")
        process = subprocess.Popen([sys.executable, __file__, str(folder)], env=keras3_env(backend),
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        started[backend] = (folder, process, log)
    found = {}
    for backend, (folder, process, log) in started.items():
        try:
            process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        facts = json.loads((folder / FACTS).read_text()) if (folder / FACTS).is_file() else {}
        found[backend] = (folder, facts, process.returncode, (folder / LOG).read_text())
    return found


@pytest.fixture(params=BACKENDS)
def facts(request, children):
    folder, facts, code, log = children[request.param]
    tail = "\n".join(line for line in log.splitlines() if not line.startswith(("WARNING", "I0000", "E0000")))[-4000:]
    assert code == 0, f"the Keras 3 child on {request.param} failed (exit {code}):\n{tail}"
    assert (facts["process"]["flavour"], facts["process"]["backend"]) == ("keras3", request.param)
    assert facts["run"]["code"] == 0, facts["run"]["output"]
    facts["folder"] = folder
    return facts


def test_export_writes_model_keras_and_a_savedmodel_of_the_ticket(facts):
    export = facts["export"]
    assert export["code"] == 0, export["output"]
    out = facts["folder"] / "ticket"
    assert f"saved model in {out} (load it with tf.saved_model.load) and {out / 'model.keras'} " \
           "(load it with keras.saving.load_model)" in export["output"]
    assert {"model.keras", "saved_model.pb", "variables"} <= set(export["files"])
    assert "weights remaining 70.6%" in export["output"]
    # No wrappers; every masked weight exactly zero; predicts as the saved weights' plain model.
    assert "MaskedLayer" not in export["keras_layers"] and export["keras_layers"].count("Dense") == 3
    assert export["keras_masked_nonzero"] == {"fc1": 0, "fc2": 0, "output": 0}
    assert all(count > 0 for count in export["keras_masked_count"].values())
    assert export["keras_difference"] == 0.0
    assert export["savedmodel_difference"] < 1e-5  # the forward pass traced (jax2tf on JAX)
    assert facts["model_json"]["difference"] == 0.0


def test_tflite_export_of_a_keras3_ticket_predicts_like_it(facts):
    if "tflite" not in facts:
        pytest.skip("ai-edge-litert is not installed")
    tflite = facts["tflite"]
    assert tflite["code"] == 0, tflite["output"]
    assert tflite["files"] == ["model.tflite"]  # the SavedModel it was converted from is not left behind
    assert "(FULLY_CONNECTED float32" in tflite["output"]  # how each kernel is stored and run
    assert tflite["difference"] < 1e-5


def test_the_masked_model_saves_as_keras_loads_with_its_masks_and_strips(facts):
    wrapped = facts["wrapped"]
    assert wrapped["reloaded_wrappers"] == ["fc1", "fc2", "output"]
    assert wrapped["masks_equal"] and wrapped["weights_equal"]
    assert wrapped["reloaded_difference"] < 1e-5
    assert "MaskedLayer" not in wrapped["stripped_layers"] and wrapped["stripped_layers"].count("Dense") == 3
    assert wrapped["stripped_masked_nonzero"] == 0
    assert wrapped["stripped_difference"] < 1e-5


def test_the_analyses_run_on_keras3(facts):
    forgetting = facts["forgetting"]
    assert forgetting["code"] == 0, forgetting["output"]
    assert {"forgetting.json", "round_01.json", "pies.png"} <= set(forgetting["files"])
    replay = facts["replay"]
    assert replay["names_equal"] and replay["differing"] == [], replay  # θk replayed bit for bit
    instability = facts["instability"]
    assert instability["code"] == 0, instability["output"]
    (entry,) = instability["entries"]
    assert (entry["round"], entry["k"]) == (1, 0) and len(entry["alphas"]) == 3
    assert math.isfinite(entry["barrier"]) and 0.0 <= min(entry["end_errors"]) <= max(entry["end_errors"]) < 0.5


def test_the_report_and_tensorboard_of_a_keras3_run(facts):
    report = facts["report"]
    assert report["code"] == 0, report["output"]
    assert "### Analysis: forgetting" in report["text"] and "### Analysis: instability" in report["text"]
    assert {"test_accuracy.png", "early_stop_iteration.png"} <= set(report["figures"])
    for tags in report["tensorboard_tags"].values():
        assert {"loss/validation", "accuracy/test"} <= set(tags), tags


def test_speed_measures_the_keras3_path(facts):
    speed = facts["speed"]
    assert speed["code"] == 0, speed["output"]
    assert f"Keras 3 on the {facts['process']['backend']} backend" in speed["output"]
    (row,) = [line for line in speed["output"].splitlines() if line.startswith("| quickstart_digits |")]
    steps_per_second = float(row.split("|")[3])
    assert steps_per_second > 0


def test_strip_on_tf_keras_gives_the_plain_model_with_masked_weights_zero():
    """masking.strip on this process's Keras (tf_keras, tfmot's wrapper): a plain copy, the
    wrapped model left as it is, masked weights zero even where training left them non-zero."""
    import numpy as np

    from keras_lottery import masking
    from keras_lottery.backend import LEGACY, keras

    assert LEGACY
    inputs = keras.Input((6, 6, 2), name="image")
    hidden = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    hidden = keras.layers.Flatten(name="flatten")(hidden)
    outputs = keras.layers.Dense(4, name="out")(hidden)
    wrapped = masking.wrap(keras.Model(inputs, outputs), ["conv", "out"])
    rng = np.random.default_rng(0)
    masks = {name: (rng.random(mask.shape) > 0.5).astype(np.float32) for name, mask in masking.get_masks(wrapped).items()}
    masking.set_masks(wrapped, masks)
    for name in masks:  # as after an optimizer step: masked weights non-zero until apply_masks
        kernel = masking.named_variables(wrapped)[f"{name}/kernel"]
        kernel.assign(kernel.numpy() + 1.0)
    before = masking.get_weights(wrapped)

    stripped = masking.strip(wrapped)
    assert not any(masking.is_wrapper(layer) for layer in stripped.layers)
    assert [layer.name for layer in stripped.layers] == ["image", "conv", "bn", "flatten", "out"]
    for name, mask in masks.items():
        kernel = stripped.get_layer(name).kernel.numpy()
        assert np.all(kernel[mask == 0] == 0.0) and np.array_equal(kernel[mask == 1], before[f"{name}/kernel"][mask == 1])
    after = masking.get_weights(wrapped)
    assert all(np.array_equal(after[name], value) for name, value in before.items())  # the wrapped model untouched
    stripped.get_layer("out").kernel.assign(np.zeros_like(masks["out"]))
    assert np.array_equal(masking.get_weights(wrapped)["out/kernel"], before["out/kernel"])  # no shared variable
    masking.apply_masks(wrapped)
    x = rng.normal(size=(5, 6, 6, 2)).astype(np.float32)
    stripped = masking.strip(wrapped)
    np.testing.assert_allclose(stripped(x, training=False).numpy(), wrapped(x, training=False).numpy(), atol=1e-6)


def test_instability_refuses_to_train_on_another_backend_than_the_runs(tmp_path):
    from keras_lottery.analyses import AnalysisError, Run, instability
    from keras_lottery.rundir import layout, storage

    storage.write_json(layout.identity_file(tmp_path), {"identity": {"recipe": {"keras": "keras3"}, "backend": "jax"}})
    run = Run(tmp_path, None, [])
    with pytest.raises(AnalysisError, match=rf"analysis instability: {tmp_path} was trained on the jax backend, but "
                                            r"this process runs tensorflow; run it with KERAS_BACKEND=jax$"):
        instability.check_backend(run)
    storage.write_json(layout.identity_file(tmp_path), {"identity": {"recipe": {}}})  # tf_keras: no backend recorded
    instability.check_backend(run)


def test_speed_measures_one_keras_per_process():
    from click.testing import CliRunner

    from keras_lottery import backend, speed
    from keras_lottery.config import catalog, recipe as recipes

    assert backend.LEGACY  # this process runs tf_keras, so --keras keras3 is refused
    plain = recipes.load(catalog.find("quickstart_digits"))
    keras3 = recipes.load(catalog.find("quickstart_digits"), ['keras="keras3"'])
    assert speed.choose_keras([plain]) == "tf_keras"
    result = CliRunner().invoke(speed.main, ["quickstart_digits", "--keras", "keras3"])
    assert result.exit_code == 2
    assert "--keras is keras3, but this process already runs tf_keras (a process runs one Keras)" in result.output
    with pytest.raises(Exception, match=r"the recipes name several Keras \(keras3, tf_keras\), and a process runs one; "
                                        r"measure them in separate commands, or pass --keras"):
        speed.choose_keras([plain, keras3])


@pytest.mark.slow
@pytest.mark.skipif("jax" not in BACKENDS, reason="jax is not installed")
def test_a_jax_run_exports_on_the_tensorflow_backend(children, tmp_path):
    """Saved weights are arrays: a run trained on JAX exports in a process on TensorFlow."""
    import numpy as np
    import tensorflow as tf

    folder, facts, code, _ = children["jax"]
    assert code == 0
    out = tmp_path / "ticket"
    done = subprocess.run([sys.executable, "-m", "keras_lottery", "export", str(folder / "run"), "--round", "1",
                           "--out", str(out)], env=keras3_env("tensorflow"), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "model.keras").is_file()
    served = tf.saved_model.load(str(out))
    reference = tf.saved_model.load(str(folder / "ticket"))  # exported on JAX
    x = tf.constant(np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype(np.float32))
    np.testing.assert_allclose(served.serve(x).numpy(), reference.serve(x).numpy(), atol=1e-5)


if __name__ == "__main__":
    child(sys.argv[1])
