"""Distribution on Keras 3: ``mirrored`` as tf.distribute's MirroredStrategy over 2 logical
CPU devices on the TensorFlow backend, and as ``keras.distribution.DataParallel`` over 2
CPU devices on JAX; the strategies Keras 3 cannot run refused in one line.

A process runs one Keras (this one runs tf_keras), so every check runs in a subprocess
started with ``KERAS_LOTTERY_KERAS=keras3``; the two backends' subprocesses run at once.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY, merge
from keras_lottery.rundir import storage

TIMEOUT = 300
HAS_JAX = importlib.util.find_spec("jax") is not None
BACKENDS = [
    "tensorflow",
    pytest.param("jax", marks=pytest.mark.skipif(not HAS_JAX, reason="jax is not installed (pip install 'jax[cpu]')")),
]
# Two devices each: logical CPUs for TensorFlow, host-platform devices for XLA (JAX).
DEVICES = {
    "tensorflow": {"KERAS_BACKEND": "tensorflow", "KERAS_LOTTERY_CPU_DEVICES": "2"},
    "jax": {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
}
DESCRIBED = {
    "tensorflow": "strategy: mirrored with 2 replicas, global batch 32 = 16 per replica on "
                  "/job:localhost/replica:0/task:0/device:CPU:0, /job:localhost/replica:0/task:0/device:CPU:1",
    "jax": "strategy: mirrored with 2 replicas (keras.distribution.DataParallel on cpu:0, cpu:1), "
           "global batch 32 = 16 per replica",
}
# The quick start (64-100-50-10, 30% per round, 15% in the output layer), 2 rounds of 100 iterations.
RUN = ["run", "quickstart_digits", "--keras", "keras3", "--rounds", "2", "--set", "training.iterations=100"]
RATES = {"fc1": 0.3, "fc2": 0.3, "output": 0.15}
KERNELS = {"fc1": 64 * 100, "fc2": 100 * 50, "output": 50 * 10}


def environment(backend):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "XLA_FLAGS", "KERAS_LOTTERY_CPU_DEVICES")}
    return {**env, "KERAS_LOTTERY_KERAS": "keras3", **DEVICES[backend]}


def run_at_once(commands):
    """Run ``{key: (argv, backend)}`` concurrently; ``{key: (returncode, stdout, stderr)}``."""
    started = {
        key: subprocess.Popen(argv, cwd=ROOT, env=environment(backend), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        for key, (argv, backend) in commands.items()
    }
    try:
        return {key: (process.wait(timeout=TIMEOUT), *process.communicate()) for key, process in started.items()}
    finally:
        for process in started.values():  # stragglers of a failed or hung run
            if process.poll() is None:
                process.kill()
                process.wait()


def installed(backends):
    return [backend for backend in backends if backend != "jax" or HAS_JAX]


def keras_lottery(*args):
    return [sys.executable, "-m", "keras_lottery", *map(str, args)]


def script(code, *args):
    return [sys.executable, "-c", code, *map(str, args)]


@pytest.fixture(scope="module")
def mirrored_runs(tmp_path_factory):
    """The 2-round quick start with ``--strategy mirrored`` on each installed backend, at once."""
    root = tmp_path_factory.mktemp("keras3_mirrored")
    commands = {backend: (keras_lottery(*RUN, "--strategy", "mirrored", "--out", root / backend), backend)
                for backend in installed(["tensorflow", "jax"])}
    done = run_at_once(commands)
    return {backend: (*done[backend], root / backend) for backend in done}


def layer_counts(masks):
    return {layer: int(mask.sum()) for layer, mask in masks.items()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_mirrored_trains_on_two_devices_with_exact_zeros(mirrored_runs, backend):
    returncode, stdout, stderr, out = mirrored_runs[backend]
    assert returncode == 0, stderr[-3000:]
    assert DESCRIBED[backend] in stdout.splitlines()
    assert "3 results in" in stdout
    rows = storage.read_json(out / "results.json")
    assert sorted((row["round"], row["variant"]) for row in rows) == [(0, "ticket"), (1, "random_reinit"), (1, "ticket")]
    for row in rows:
        assert row["final_test_accuracy"] > 0.5, row
        if row["round"] == 0 or row["variant"] == "random_reinit":  # starts from a fresh initialization:
            # its test loss is near ln 10, not divided among the replicas
            assert 1.5 < row["start_test_loss"] < 4, row
    for round_index, variant in ((0, "ticket"), (1, "ticket"), (1, "random_reinit")):
        folder = out / "trial_0" / f"round_{round_index:02d}" / variant
        masks, final = storage.load_arrays(folder / "mask.npz"), storage.load_arrays(folder / "final.npz")
        # the schedule, per layer: round r keeps (1 - rate)^r of each kernel
        assert layer_counts(masks) == {layer: round(KERNELS[layer] * (1 - RATES[layer]) ** round_index)
                                       for layer in RATES}, (round_index, variant)
        for layer, mask in masks.items():
            kernel = final[f"{layer}/kernel"]
            assert np.all(kernel[mask == 0] == 0), (round_index, variant, layer)  # exactly zero
            assert np.count_nonzero(kernel[mask == 1]) > 0.99 * mask.sum()  # the survivors trained


REFUSALS = textwrap.dedent("""
    import json, sys
    from click.testing import CliRunner
    from keras_lottery import distribute
    from keras_lottery.backend import BACKEND, keras
    from keras_lottery.cli import main
    from keras_lottery.config.recipe import parse

    recipe = json.loads(sys.argv[1])

    def config(strategy, devices=None):
        return parse({**recipe, "distribute": {"strategy": strategy, "devices": devices}}).distribute

    def refusal(strategy, devices=None):
        try:
            distribute.create(config(strategy, devices))
        except distribute.DistributeError as err:
            return str(err)
        return None

    report = {"multi_worker": refusal("multi_worker")}
    ran = CliRunner().invoke(main, ["run", sys.argv[2], "--keras", "keras3", "--strategy", "multi_worker",
                                    "--out", sys.argv[3]])
    report["cli"] = [ran.exit_code, ran.output.strip().splitlines()]
    if BACKEND == "jax":
        report["tpu"] = refusal("tpu")
        report["unknown_device"] = refusal("mirrored", ["cpu:1", "gpu:3"])
        one = distribute.create(config("mirrored", ["cpu:1"]))
        report["one_device"] = [one.num_replicas_in_sync, distribute.describe(one, config("mirrored", ["cpu:1"]), 32),
                                [d.id for d in keras.distribution.distribution().device_mesh.devices.tolist()]]
        both = distribute.create(config("mirrored"))
        report["both"] = [both.num_replicas_in_sync, keras.distribution.distribution().device_mesh.devices.size,
                          distribute.task(both), distribute.is_chief(both), str(distribute.work_dir("r", both))]
        try:
            distribute.describe(both, config("mirrored"), 33)
        except distribute.DistributeError as err:
            report["uneven"] = str(err)
        default = distribute.create(config("default"))
        report["default"] = [default.num_replicas_in_sync, keras.distribution.distribution() is None,
                             distribute.describe(default, config("default"), 32)]
    print(json.dumps(report))
""")


def test_strategies_keras3_cannot_run_are_refused_in_one_line(tmp_path):
    recipe = merge(TINY, {"keras": "keras3"})
    recipe_file = tmp_path / "tiny.json"
    recipe_file.write_text(json.dumps(recipe))
    backends = installed(["tensorflow", "jax"])
    done = run_at_once({backend: (script(REFUSALS, json.dumps(recipe), recipe_file, tmp_path / backend), backend)
                        for backend in backends})
    reports = {}
    for backend in backends:
        returncode, stdout, stderr = done[backend]
        assert returncode == 0, stderr[-3000:]
        reports[backend] = json.loads(stdout.strip().splitlines()[-1])
        assert not (tmp_path / backend).exists()  # refused before the run directory is made

    tf_report = reports["tensorflow"]
    assert tf_report["multi_worker"] == (
        "recipe key 'distribute.strategy': multi_worker does not run on Keras 3, whose fit fails under "
        "MultiWorkerMirroredStrategy (keras-team/keras#20585); use --keras tf_keras for several machines, "
        "or --strategy mirrored for this machine's devices"
    )
    assert tf_report["cli"] == [2, [f"error: {tf_report['multi_worker']}"]]
    if "jax" not in reports:
        return
    jax_report = reports["jax"]
    assert jax_report["multi_worker"] == (
        "recipe key 'distribute.strategy': multi_worker is a tf.distribute strategy, not available on the JAX "
        "backend; use --strategy mirrored for this machine's devices, or --keras tf_keras for several machines"
    )
    assert jax_report["cli"] == [2, [f"error: {jax_report['multi_worker']}"]]
    assert jax_report["tpu"].startswith("recipe key 'distribute.strategy': tpu is a tf.distribute strategy, not "
                                        "available on the JAX backend; on a TPU VM use --strategy mirrored")
    assert jax_report["unknown_device"] == (
        "recipe key 'distribute.devices': gpu:3 not found on this machine, which has cpu:0, cpu:1; "
        "set it to null to use all local devices"
    )
    count, line, mesh = jax_report["one_device"]
    assert count == 1 and mesh == [1]  # the device listed, not the first
    assert line == ("strategy: mirrored with 1 replica (keras.distribution.DataParallel on cpu:1), "
                    "global batch 32 = 32 per replica")
    assert jax_report["both"] == [2, 2, [None, None], True, "r"]  # one process: the chief, writes the run
    assert "global batch 33 does not divide evenly among 2 replicas" in jax_report["uneven"]
    assert jax_report["default"] == [1, True, "strategy: default with 1 replica, global batch 32 = 32 per replica"]


REPLICA_CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np
    from keras_lottery import data, distribute, lottery, masking
    from keras_lottery.backend import BACKEND
    from keras_lottery.lottery import callbacks as rewinding
    from keras_lottery.config.recipe import parse

    recipe = parse(json.loads(sys.argv[1]))
    strategy = distribute.create(recipe.distribute)
    experiment = lottery.Experiment(recipe, sys.argv[2], data.load(recipe.dataset), lambda *_: None, strategy)
    lottery.claim_run_dir(recipe, sys.argv[2], experiment.identity())
    model = experiment.model

    def copies(variable):
        '''The value of ``variable`` on each device.'''
        if BACKEND == "jax":
            value = variable.value
            assert value.sharding.is_fully_replicated
            return [np.asarray(shard.data) for shard in value.addressable_shards]
        return [np.asarray(value) for value in strategy.experimental_local_results(variable.value)]

    def replicas_agree(variables):
        return all(len(c) == 2 and all(np.array_equal(c[0], other) for other in c[1:]) for c in map(copies, variables))

    # Assigned from outside any replica or jitted step, masks and weights reach every device.
    masks = {n: (np.random.default_rng(1).random(m.shape) < 0.5).astype("float32")
             for n, m in masking.dense_masks(model).items()}
    rewinding.restore(model, experiment.theta0(0), masks)
    pairs = masking.masked_weights(model)
    restored = all(np.array_equal(c, masks[unit]) for unit, (_, mask) in pairs.items() for c in copies(mask))
    zeros = all(np.all(c[masks[unit] == 0] == 0) for unit, (weight, _) in pairs.items() for c in copies(weight))
    before = replicas_agree(model.variables)
    experiment.run()  # trains, prunes, rewinds, resets the optimizer
    masking.apply_masks(model)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "restored": restored, "zeros": zeros,
                      "agree_before": before, "agree_after": replicas_agree(model.variables + model.optimizer.variables)}))
""")


@pytest.mark.slow
def test_masks_and_weights_are_identical_on_every_device(tmp_path):
    recipe = merge(TINY, {"keras": "keras3", "controls": [], "pruning": {"rounds": 2}, "training": {"iterations": 40},
                          "distribute": {"strategy": "mirrored"}})
    backends = installed(["tensorflow", "jax"])
    done = run_at_once({backend: (script(REPLICA_CHECK, json.dumps(recipe), tmp_path / backend), backend)
                        for backend in backends})
    for backend in backends:
        returncode, stdout, stderr = done[backend]
        assert returncode == 0, stderr[-3000:]
        assert json.loads(stdout.strip().splitlines()[-1]) == {
            "replicas": 2, "restored": True, "zeros": True, "agree_before": True, "agree_after": True,
        }, backend


def rows(run_dir):
    return {(r["round"], r["variant"]): r for r in storage.read_json(Path(run_dir) / "results.json")}


@pytest.mark.slow
def test_mirrored_matches_one_device(mirrored_runs, tmp_path):
    """Splitting each batch between two devices changes only the float rounding."""
    backends = installed(["tensorflow", "jax"])
    done = run_at_once({backend: (keras_lottery(*RUN, "--out", tmp_path / backend), backend) for backend in backends})
    for backend in backends:
        returncode, _, stderr = done[backend]
        assert returncode == 0, stderr[-3000:]
        mirrored, single = rows(mirrored_runs[backend][3]), rows(tmp_path / backend)
        assert set(mirrored) == set(single)
        for key, row in single.items():
            got = mirrored[key]
            assert got["weights_remaining"] == row["weights_remaining"]
            assert got["start_test_loss"] == pytest.approx(row["start_test_loss"], rel=1e-5), (backend, key)
            for metric in ("early_stop_test_accuracy", "final_test_accuracy", "early_stop_iteration"):
                assert got[metric] == pytest.approx(row[metric], abs=0.02), (backend, key, metric)
        for path in sorted(tmp_path.glob(f"{backend}/trial_0/round_*/*/final.npz")):
            there = storage.load_arrays(mirrored_runs[backend][3] / path.relative_to(tmp_path / backend))
            for name, value in storage.load_arrays(path).items():
                assert np.allclose(there[name], value, atol=1e-4), (backend, path, name)
