"""The core guarantees, on the Keras this process runs (see tests/flavoured/__init__.py):
masked weights exactly zero, rewinding bit for bit, the pruning schedule per layer, the
controls, determinism, resume after SIGKILL, failed rounds, TensorBoard, report, export,
and the quick start's table from the command line.

Two small experiments serve every test, each run here through ``keras_lottery.run``:
the quick start cut to 3 rounds of 60 iterations with both controls (rewinding to θ0),
and 2 rounds of 200 iterations rewinding to iteration 20. The second also runs from the
command line in other processes, started first so they train while this one does:
killed with SIGKILL inside round 1, then resumed to its end (same results as here, bit
for bit).
"""

import json
import math
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import keras_lottery as kl
from conftest import ROOT
from keras_lottery import backend, data, masking, training
from keras_lottery.lottery.callbacks import Rewind, restore
from keras_lottery.rundir import layout, storage

FLAVOUR = backend.FLAVOUR
KERAS = "tf_keras" if backend.LEGACY else f"Keras 3 on the {backend.BACKEND} backend"

# The quick start (an MLP 64-100-50-10 on the 8x8 digits), 3 rounds of 60 iterations.
CORE = {"keras": FLAVOUR, "training.iterations": 60, "training.eval_every": 20,
        "controls": ["random_reinit", "random_prune"]}
CORE_ROUNDS = 3
RATES = {"fc1": 0.3, "fc2": 0.3, "output": 0.15}  # the quick start's: 30% per round, 15% for the output layer
VARIANTS = ("ticket", "random_reinit", "random_prune")
# 2 rounds of 200 iterations, rewinding to iteration 20, a checkpoint every 20 iterations.
LATE = {"keras": FLAVOUR, "training.iterations": 200, "training.eval_every": 20,
        "training.checkpoint_every": 20, "rewind.iteration": 20}
LATE_ROUNDS = 2
TIMEOUT = 300


def recipe_of(changes, rounds):
    return kl.load_recipe("quickstart_digits", overrides=changes, rounds=rounds)


def command(changes, rounds, out):
    """``keras-lottery run`` of the quick start with ``changes``, on this process's Keras."""
    sets = [arg for key, value in changes.items() if key != "keras"
            for arg in ("--set", f"{key}={json.dumps(value)}")]
    return [sys.executable, "-m", "keras_lottery", "run", "quickstart_digits", "--keras", FLAVOUR,
            "--rounds", str(rounds), "--out", str(out), *sets]


def start(args, log):
    """Start a command in a new process running this process's Keras (the environment says which)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def arrays(run_dir, round_index, variant, name):
    return storage.load_arrays(layout.variant_dir(run_dir, 0, round_index, variant) / name)


def expected_kept(size, rate, round_index):
    """The schedule's count: round(n (1-p)^r), at least one weight."""
    return max(1, int(np.floor(size * (1 - rate) ** round_index + 0.5)))


# ---- the runs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def core_run(late_cli, tmp_path_factory):
    lines = []
    recipe = recipe_of(CORE, CORE_ROUNDS)
    result = kl.run(recipe, out=tmp_path_factory.mktemp("core") / "run", log=lines.append, report=False)
    return SimpleNamespace(recipe=recipe, result=result, run_dir=result.run_dir, rows=result.rows, lines=lines)


def experiment_on(recipe, run_dir):
    """The experiment of a finished run: its masked model, its rounds' plans."""
    from keras_lottery import lottery

    return lottery.Experiment(recipe, run_dir, data.load(recipe.dataset), log=lambda _: None)


@pytest.fixture(scope="module")
def core_experiment(core_run):
    return experiment_on(core_run.recipe, core_run.run_dir)


@pytest.fixture(scope="module")
def late_reference(late_cli, tmp_path_factory):
    """The late-rewinding recipe, uninterrupted, run here."""
    recipe = recipe_of(LATE, LATE_ROUNDS)
    result = kl.run(recipe, out=tmp_path_factory.mktemp("late") / "reference", log=lambda _: None, report=False)
    return SimpleNamespace(recipe=recipe, run_dir=result.run_dir, rows=result.rows)


def summary_times(run_dir):
    return {str(p): p.stat().st_mtime_ns for p in run_dir.glob("trial_*/round_*/*/summary.json")}


KILL_WHEN = Path(__file__).with_name("kill_when.py")


def kill_and_resume(out, folder, state, stop):
    """``keras-lottery run`` of the late-rewinding recipe, killed with SIGKILL as soon as
    round 1's ticket has saved a mid-round checkpoint (by :mod:`kill_when`, a process of its
    own), then the same command again to its end. Records what happened in ``state``;
    ``stop`` set ends it early (the module's tests are done)."""
    pattern = str(layout.checkpoints(layout.variant_dir(out, 0, 1, "ticket")) / "it_*")
    try:
        killer = [sys.executable, str(KILL_WHEN), pattern, str(TIMEOUT), str(folder / "killed.log"),
                  *command(LATE, LATE_ROUNDS, out)]
        with open(folder / "kill_when.log", "w") as log:
            state["process"] = process = start(killer, log)
            process.wait(timeout=TIMEOUT + 60)
        if process.returncode != 0:
            state["error"] = (folder / "kill_when.log").read_text() + (folder / "killed.log").read_text()
            return
        state["finished_when_killed"] = layout.is_finished(out, 0, 1, "ticket")
        state["before"] = summary_times(out)
        if stop.is_set():
            return
        with open(folder / "resumed.log", "w") as log:
            state["process"] = process = start(command(LATE, LATE_ROUNDS, out), log)
            process.wait(timeout=TIMEOUT)
        state["code"], state["output"] = process.returncode, (folder / "resumed.log").read_text()
    except Exception as err:  # reported by finish()
        state["error"] = f"{type(err).__name__}: {err}"


@pytest.fixture(scope="module")
def late_cli(tmp_path_factory):
    """The late-rewinding recipe from the command line in other processes, killed inside
    round 1 and resumed (:func:`kill_and_resume`), in a thread; ``finish()`` waits for it.
    The runs made here ask for it first, so that it trains while they do."""
    folder = tmp_path_factory.mktemp("cli")
    out, state, stop = folder / "run", {}, threading.Event()
    thread = threading.Thread(target=kill_and_resume, args=(out, folder, state, stop), daemon=True)
    thread.start()

    def finish():
        thread.join(timeout=2 * TIMEOUT)
        assert not thread.is_alive(), "the killed and resumed command line did not finish"
        assert "error" not in state, state["error"][-3000:]
        assert not state["finished_when_killed"], "the kill did not land inside round 1"
        return SimpleNamespace(run_dir=out, **{k: v for k, v in state.items() if k != "process"})

    yield SimpleNamespace(finish=finish)
    stop.set()  # no new process starts after this
    for _ in range(60):
        if not thread.is_alive():
            break
        process = state.get("process")
        if process is not None and process.poll() is None:
            process.terminate()  # the command line stops on SIGTERM; kill_when.py kills its command
        thread.join(timeout=1)


# ---- masked weights are exactly zero -----------------------------------------------------


def test_masked_weights_are_exactly_zero_in_every_saved_file(core_run, late_reference):
    for run_dir, rows in ((core_run.run_dir, core_run.rows), (late_reference.run_dir, late_reference.rows)):
        assert {row["status"] for row in rows} == {"ok"}
        for row in rows:
            masks = arrays(run_dir, row["round"], row["variant"], layout.MASK)
            final = arrays(run_dir, row["round"], row["variant"], layout.FINAL)
            assert set(masks) == set(RATES)
            for layer, mask in masks.items():
                kernel = final[f"{layer}/kernel"]
                assert np.all(kernel[mask == 0] == 0.0), (row["round"], row["variant"], layer)
                assert np.all(kernel[mask == 1] != 0.0)  # survivors trained, not zeroed
                assert bool(np.any(mask == 0)) == (row["round"] > 0)
                assert np.count_nonzero(final[f"{layer}/bias"]) > 0  # biases are never pruned


def test_masked_weights_read_from_the_model_are_exactly_zero(core_experiment):
    """After training, reading the model's weights gives zeros where masks are 0 (on Keras 3
    even before apply_masks: a masked weight gets a gradient of exactly zero)."""
    experiment = core_experiment
    model, splits, config = experiment.model, experiment.splits, experiment.recipe.training
    plan = experiment.round(0, 2).plan("ticket")
    restore(model, plan.weights, plan.masks)
    training.reset_optimizer(model)
    stream = data.train_stream(splits.x_train, splits.y_train, config.batch_size, seed=1)
    curve = training.train(model, stream, experiment.val_data, experiment.test_data, config)
    assert len(curve) == config.iterations // config.eval_every
    read = masking.get_weights(model)
    masking.apply_masks(model)
    applied = masking.get_weights(model)
    for layer, mask in plan.masks.items():
        name = f"{layer}/kernel"
        assert np.all(applied[name][mask == 0] == 0.0), layer
        assert np.all(applied[name][mask == 1] != 0.0) and not np.array_equal(applied[name], plan.weights[name] * mask)
        if not backend.LEGACY:
            assert np.array_equal(read[name], applied[name]), f"{layer}: masked weights moved during training"
    assert masking.get_masks(model).keys() == plan.masks.keys()
    assert all(np.array_equal(masking.get_masks(model)[k], plan.masks[k]) for k in plan.masks)


def outputs(model, x):
    """``model(x)`` as a numpy array (on torch, a tensor that requires grad: converted by Keras)."""
    out = model(x, training=False)
    return np.asarray(out) if backend.LEGACY else backend.keras.ops.convert_to_numpy(out)


def test_the_masked_model_computes_with_mask_times_weight(core_experiment):
    """The wrapped model's output is the plain model's with m ⊙ w, whatever w holds where m is 0."""
    experiment = core_experiment
    model = experiment.model
    plan = experiment.round(0, 2).plan("ticket")
    restore(model, plan.weights, plan.masks)
    rng = np.random.default_rng(0)
    noisy = dict(plan.weights)
    variables = masking.named_variables(model)
    for layer in plan.masks:
        noisy[f"{layer}/kernel"] = rng.normal(0.0, 0.3, plan.weights[f"{layer}/kernel"].shape).astype(np.float32)
        variables[f"{layer}/kernel"].assign(noisy[f"{layer}/kernel"])  # non-zero where the mask is 0
    x = np.asarray(experiment.splits.x_test[:64])
    masked_output = outputs(model, x)

    plain = experiment.source.build(0)
    masking.set_weights(plain, {name: value * plan.masks[name.split("/")[0]] if name.endswith("/kernel") else value
                                for name, value in noisy.items()})
    np.testing.assert_allclose(masked_output, outputs(plain, x), rtol=1e-5, atol=1e-5)
    dense = experiment.source.build(0)  # and not the output of the unmasked weights
    masking.set_weights(dense, noisy)
    assert np.abs(masked_output - outputs(dense, x)).max() > 1e-2


# ---- rewinding bit for bit ---------------------------------------------------------------


def measured_on_test_set(model, splits):
    """Test accuracy and loss (mean cross-entropy) of a plain model, computed here in numpy."""
    logits = np.asarray(model.predict(np.asarray(splits.x_test), batch_size=500, verbose=0), np.float64)
    labels = np.asarray(splits.y_test).astype(int)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    loss = -float(np.mean(log_softmax[np.arange(len(labels)), labels]))
    return float(np.mean(np.argmax(logits, axis=-1) == labels)), loss


def assert_starts_from(experiment, round_index, variant, expected, row):
    """The model at the start of training ``variant`` holds exactly ``m ⊙ expected``, and the
    run measured that network's accuracy before the round's first update."""
    plan = experiment.round(0, round_index).plan(variant)
    for name, value in expected.items():
        assert np.array_equal(plan.weights[name], value), name
    rewind = Rewind(weights=plan.weights, masks=plan.masks)  # what the session's fit runs first
    rewind.set_model(experiment.model)
    rewind.on_train_begin()
    weights = masking.get_weights(experiment.model)
    assert weights.keys() == expected.keys()
    for name, value in expected.items():
        layer = name.split("/")[0]
        wanted = value * plan.masks[layer] if name.endswith("/kernel") and layer in plan.masks else value
        assert np.array_equal(weights[name], wanted), name
    plain = experiment.source.build(0)
    masking.set_weights(plain, weights)
    accuracy, loss = measured_on_test_set(plain, experiment.splits)
    assert row["start_test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert row["start_test_loss"] == pytest.approx(loss, rel=1e-4)


def test_pruned_rounds_rewind_survivors_to_theta0_bit_for_bit(core_run, core_experiment):
    theta0 = storage.load_arrays(layout.init_weights(core_run.run_dir, 0))
    rows = {(row["round"], row["variant"]): row for row in core_run.rows}
    for round_index in (1, 2):
        for variant in ("ticket", "random_prune"):
            assert_starts_from(core_experiment, round_index, variant, theta0, rows[(round_index, variant)])
    # the rewind point of k = 0 is θ0 itself
    rewind = storage.load_arrays(layout.rewind_weights(core_run.run_dir, 0))
    assert rewind.keys() == theta0.keys() and all(np.array_equal(rewind[n], theta0[n]) for n in theta0)


def test_late_rewinding_captures_theta_k_and_restores_it_bit_for_bit(late_reference):
    run_dir = late_reference.run_dir
    theta0 = storage.load_arrays(layout.init_weights(run_dir, 0))
    theta_k = storage.load_arrays(layout.rewind_weights(run_dir, 0))
    trained = arrays(run_dir, 0, "ticket", layout.FINAL)
    assert not np.array_equal(theta_k["fc1/kernel"], theta0["fc1/kernel"])
    assert not np.array_equal(theta_k["fc1/kernel"], trained["fc1/kernel"])
    experiment = experiment_on(late_reference.recipe, run_dir)
    # θk is the network of iteration k: the dense round's evaluation there measured it
    plain = experiment.source.build(0)
    masking.set_weights(plain, theta_k)
    at_k = storage.read_csv(layout.curve(run_dir, 0, 0, "ticket"))[0]
    assert int(at_k["iteration"]) == LATE["rewind.iteration"]
    accuracy, loss = measured_on_test_set(plain, experiment.splits)
    assert float(at_k["test_accuracy"]) == pytest.approx(accuracy, abs=1e-6)
    assert float(at_k["test_loss"]) == pytest.approx(loss, rel=1e-4)
    rows = {(row["round"], row["variant"]): row for row in late_reference.rows}
    assert_starts_from(experiment, 1, "ticket", theta_k, rows[(1, "ticket")])
    # a pruned round trains from iteration k to the end
    curve = storage.read_csv(layout.curve(run_dir, 0, 1, "ticket"))
    assert [int(r["iteration"]) for r in curve] == list(range(40, 201, 20))


# ---- the schedule and the controls -----------------------------------------------------------


def test_per_layer_remaining_counts_follow_the_schedule(core_run):
    run_dir = core_run.run_dir
    previous = None
    for round_index in range(CORE_ROUNDS):
        masks = arrays(run_dir, round_index, "ticket", layout.MASK)
        for layer, rate in RATES.items():
            assert int(masks[layer].sum()) == expected_kept(masks[layer].size, rate, round_index), (round_index, layer)
            if previous is not None:
                assert np.all(masks[layer] <= previous[layer]), "a pruned weight came back"
        total = sum(m.size for m in masks.values())
        remaining = 100.0 * sum(int(m.sum()) for m in masks.values()) / total
        for row in core_run.rows:
            if row["round"] == round_index:
                assert row["weights_remaining"] == pytest.approx(remaining, abs=1e-3)
        if previous is not None:  # the ticket keeps the largest trained weights among the survivors
            trained = arrays(run_dir, round_index - 1, "ticket", layout.FINAL)
            for layer in RATES:
                magnitude = np.abs(trained[f"{layer}/kernel"])
                dropped = magnitude[(previous[layer] == 1) & (masks[layer] == 0)]
                assert magnitude[masks[layer] == 1].min() >= dropped.max()
        previous = masks


def test_controls_share_the_tickets_sparsity_and_differ_as_intended(core_run, core_experiment):
    run_dir = core_run.run_dir
    theta0 = storage.load_arrays(layout.init_weights(run_dir, 0))
    for round_index in (1, 2):
        ticket = arrays(run_dir, round_index, "ticket", layout.MASK)
        reinit = arrays(run_dir, round_index, "random_reinit", layout.MASK)
        shuffled = arrays(run_dir, round_index, "random_prune", layout.MASK)
        for layer in RATES:
            assert np.array_equal(reinit[layer], ticket[layer])  # the ticket's mask
            assert int(shuffled[layer].sum()) == int(ticket[layer].sum())  # the ticket's count per layer
            assert not np.array_equal(shuffled[layer], ticket[layer])  # another mask
        start = core_experiment.round(0, round_index).plan("random_reinit").weights
        for layer in RATES:  # new weights from the same initializer
            assert not np.array_equal(start[f"{layer}/kernel"], theta0[f"{layer}/kernel"])
            assert np.std(start[f"{layer}/kernel"]) == pytest.approx(np.std(theta0[f"{layer}/kernel"]), rel=0.2)
        final = {v: arrays(run_dir, round_index, v, layout.FINAL)["fc1/kernel"] for v in VARIANTS}
        assert not np.array_equal(final["random_reinit"], final["ticket"])
        assert not np.array_equal(final["random_prune"], final["ticket"])


# ---- resume, determinism, the command line ---------------------------------------------------


def by_key(rows):
    return {(row["round"], row["variant"]): row for row in rows}


def test_killed_mid_round_resumes_with_the_results_of_an_uninterrupted_run(late_cli, late_reference):
    resumed = late_cli.finish()
    assert resumed.code == 0, resumed.output[-3000:]
    found = re.search(r"trial 0 round 1/1 ticket: resumed from iteration (\d+)", resumed.output)
    assert found, resumed.output[-3000:]
    assert 0 < int(found.group(1)) < LATE["training.iterations"]
    assert "round 0/1 ticket: training" not in resumed.output, "the finished round 0 was trained again"
    out = resumed.run_dir
    assert resumed.before and {p: t for p, t in summary_times(out).items() if p in resumed.before} == resumed.before
    assert not list(out.glob("trial_*/round_*/*/checkpoints")), "finished variants keep no checkpoints"
    reference = by_key(late_reference.rows)
    rows = by_key(storage.read_json(layout.results_json(out)))
    assert rows.keys() == reference.keys() == {(0, "ticket"), (1, "ticket"), (1, "random_reinit")}
    for key, row in rows.items():
        expected = reference[key]
        assert row["status"] == "ok"
        for column in ("weights_remaining", "early_stop_iteration"):
            assert row[column] == expected[column], (key, column)
        for column in ("early_stop_test_accuracy", "final_test_accuracy", "best_val_loss", "start_test_accuracy"):
            assert row[column] == pytest.approx(expected[column], abs=1e-5), (key, column)
    # the early-stop predictions survive the resume (kept in the checkpoint)
    predictions = storage.load_arrays(layout.predictions(out, 0, 1, "ticket"))
    assert int(predictions["iteration"]) == reference[(1, "ticket")]["early_stop_iteration"]


def test_the_quick_start_prints_its_table_from_the_command_line(late_cli):
    resumed = late_cli.finish()
    text = resumed.output
    assert resumed.code == 0, text[-3000:]
    assert f"keras: {KERAS}" in text
    header = next(line for line in text.splitlines() if line.lstrip().startswith("round"))
    assert header.split()[:2] == ["round", "remaining"]
    assert [part.split()[0] for part in header.split("|")[1:]] == ["ticket", "random_reinit"]
    for round_index in range(LATE_ROUNDS):
        # per variant: the early-stop iteration, the test accuracy there, the start accuracy
        assert re.search(rf"^\s+{round_index}\s+\d+\.\d%( \|\s+\d+\s+0\.\d{{4}}\s+0\.\d{{4}}){{2}}$", text, re.M), \
            text[-2000:]
    assert storage.read_json(layout.recipe_file(resumed.run_dir))["keras"] == FLAVOUR
    identity = storage.read_json(layout.identity_file(resumed.run_dir))["identity"]
    assert identity.get("backend") == (None if backend.LEGACY else backend.BACKEND)


def test_the_same_recipe_and_seed_give_the_same_run(late_cli, late_reference):
    """The run made here and the command line's, in two directories and two processes: the
    same dense round (trained whole in both), bit for bit, and the same masks after it."""
    out, here = late_cli.finish().run_dir, late_reference.run_dir
    for name in (layout.MASK, layout.FINAL):
        a, b = arrays(here, 0, "ticket", name), arrays(out, 0, "ticket", name)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), name
    assert storage.read_csv(layout.curve(here, 0, 0, "ticket")) == storage.read_csv(layout.curve(out, 0, 0, "ticket"))
    for path in (layout.init_weights, layout.rewind_weights):
        a, b = storage.load_arrays(path(here, 0)), storage.load_arrays(path(out, 0))
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for variant in ("ticket", "random_reinit"):
        a, b = arrays(here, 1, variant, layout.MASK), arrays(out, 1, variant, layout.MASK)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), variant
    ignore = ("seconds",)
    rows = [{k: v for k, v in row.items() if k not in ignore} for row in storage.read_json(layout.results_json(out))]
    assert rows == [{k: v for k, v in row.items() if k not in ignore} for row in late_reference.rows]


# ---- failures, TensorBoard, report, export ------------------------------------------------


def test_a_diverging_round_is_recorded_failed_not_a_crash(tmp_path):
    # 1e30: the weights overflow on every backend (at 1e10 torch's loss stays finite, about 1e33)
    recipe = recipe_of({"keras": FLAVOUR, "training.learning_rate": 1e30, "training.iterations": 40,
                        "training.eval_every": 20, "controls": []}, 2)
    lines = []
    result = kl.run(recipe, out=tmp_path / "run", log=lines.append, report=False)
    said = "\n".join(lines)
    assert [(r["round"], r["variant"], r["status"]) for r in result.rows] == [(0, "ticket", "failed")]
    assert re.search(r"loss became (nan|inf|-inf) at iteration 20", result.rows[0]["error"]), result.rows[0]
    assert "ticket: FAILED, training diverged" in said
    assert "round 1 skipped: the round 0 ticket they are pruned from failed" in said
    assert not layout.final(result.run_dir, 0, 0, "ticket").exists()
    assert storage.read_csv(layout.results_csv(result.run_dir))[0]["status"] == "failed"


def test_tensorboard_events_and_the_report_are_written(core_run, late_cli):
    from keras_lottery.backend import tf

    run_dir = core_run.run_dir
    for row in core_run.rows:
        folder = layout.tensorboard_variant(run_dir, 0, row["round"], row["variant"])
        events = sorted(folder.glob("events.out.tfevents.*"))
        assert events, folder
        tags = {value.tag for path in events for event in tf.compat.v1.train.summary_iterator(str(path))
                for value in event.summary.value}
        assert {"loss/validation", "accuracy/test"} <= tags, tags
    assert list(layout.tensorboard(run_dir, "rounds").rglob("events.out.tfevents.*"))
    # the command line writes the report at the end of a run
    resumed = late_cli.finish()
    report = layout.report_dir(resumed.run_dir) / "report.md"
    assert f"report: {report}" in resumed.output
    assert "random_reinit" in report.read_text()
    assert list(report.parent.glob("*.png"))


def test_export_writes_the_ticket_without_wrappers_masked_weights_zero(core_run, tmp_path):
    from keras_lottery import export
    from keras_lottery.backend import keras, tf

    out = tmp_path / "ticket"
    model = export.export(core_run.run_dir, 2, out)
    assert not any(masking.is_wrapper(layer) for layer in model.layers)
    masks = arrays(core_run.run_dir, 2, "ticket", layout.MASK)
    final = arrays(core_run.run_dir, 2, "ticket", layout.FINAL)
    for layer, mask in masks.items():
        kernel = np.asarray(model.get_layer(layer).kernel.numpy())
        assert np.array_equal(kernel, final[f"{layer}/kernel"]) and np.all(kernel[mask == 0] == 0.0)
    x = np.asarray(data.load(core_run.recipe.dataset).x_test[:32])
    expected = np.asarray(model.predict(x, verbose=0))
    written = []
    if (out / "saved_model.pb").is_file():
        loaded = tf.saved_model.load(str(out))
        signature = loaded.signatures["serving_default"]
        (name,) = signature.structured_input_signature[1]
        (logits,) = signature(**{name: tf.constant(x)}).values()
        np.testing.assert_allclose(logits.numpy(), expected, atol=1e-5)
        written.append("SavedModel")
    for path in out.glob("*.keras"):
        loaded = keras.saving.load_model(str(path))
        for layer, mask in masks.items():
            assert np.all(np.asarray(loaded.get_layer(layer).kernel.numpy())[mask == 0] == 0.0)
        np.testing.assert_allclose(np.asarray(loaded.predict(x, verbose=0)), expected, atol=1e-5)
        written.append(path.name)
    assert written, f"export wrote no model to {out}: {sorted(p.name for p in out.iterdir())}"
    assert math.isfinite(float(expected.sum()))


def npz_files(run_dir):
    """``{relative path: arrays}`` of every npz a run keeps (θ0, θk, masks, weights, predictions)."""
    return {str(path.relative_to(run_dir)): storage.load_arrays(path)
            for path in sorted(Path(run_dir).glob("trial_*/**/*.npz")) if "checkpoints" not in path.parts}


def test_two_workers_give_the_results_of_one_bit_for_bit(core_run, tmp_path):
    """``run --workers 2``: this process and a worker process train side by side; every
    results column but the seconds, every mask and weight equal the one-worker run's."""
    out = tmp_path / "two"
    with open(tmp_path / "log", "w") as log:
        process = start(command(CORE, CORE_ROUNDS, out) + ["--workers", "2"], log)
        process.wait(timeout=TIMEOUT)
    text = (tmp_path / "log").read_text()
    assert process.returncode == 0, text[-3000:]
    assert "[w2] " in text and "[w1] " in text  # both trained
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert strip(storage.read_json(out / "results.json")) == strip(core_run.rows)
    ours, theirs = npz_files(out), npz_files(core_run.run_dir)
    assert ours.keys() == theirs.keys() and len(ours) > 10
    for name, found in ours.items():
        assert found.keys() == theirs[name].keys(), name
        for key in found:
            assert np.array_equal(found[key], theirs[name][key]), (name, key)
