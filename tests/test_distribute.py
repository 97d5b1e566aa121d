"""Distribution: strategies from the recipe, the global batch split among replicas, chief
writes, and CPU runs of `mirrored` (2 logical devices) and `multi_worker` (2 processes on
127.0.0.1) that must agree with a single-device run."""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import TINY, merge, save_recipe
from keras_lottery import distribute
from keras_lottery.rundir import storage
from keras_lottery.cli import main
from keras_lottery.config.recipe import RecipeError, parse

ROOT = Path(__file__).resolve().parents[1]
# Two rounds with both controls: masks, rewinding and controls all run under each strategy.
RECIPE = merge(TINY, {"pruning": {"rounds": 2}})
TIMEOUT = 300


def keras_lottery(args, env=None, timeout=TIMEOUT):
    """Run ``python -m keras_lottery ARGS`` from the repository root; return the completed process."""
    env = {**{k: v for k, v in os.environ.items() if k != "TF_CONFIG"}, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "keras_lottery", *map(str, args)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def rows(run_dir):
    """Result rows keyed (trial, round, variant), without the wall-clock seconds."""
    found = storage.read_json(Path(run_dir) / "results.json")
    return {(r["trial"], r["round"], r["variant"]): {k: v for k, v in r.items() if k != "seconds"} for r in found}


def mask_counts(run_dir):
    """Survivors per layer of every trained variant's mask."""
    counts = {}
    for path in sorted(Path(run_dir).glob("trial_*/round_*/*/mask.npz")):
        key = str(path.parent.relative_to(run_dir))
        counts[key] = {layer: int(mask.sum()) for layer, mask in storage.load_arrays(path).items()}
    return counts


def assert_same_results(run_dir, reference, tolerance=0.02):
    got, want = rows(run_dir), rows(reference)
    assert set(got) == set(want)
    for key, row in want.items():
        assert got[key]["weights_remaining"] == row["weights_remaining"], key
        for metric in ("early_stop_test_accuracy", "final_test_accuracy"):
            assert abs(got[key][metric] - row[metric]) <= tolerance, (key, metric, got[key][metric], row[metric])
    assert mask_counts(run_dir) == mask_counts(reference)


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory):
    return save_recipe(tmp_path_factory.mktemp("distribute"), RECIPE, "tiny.json")


@pytest.fixture(scope="module")
def single_device_run(recipe_file):
    """The reference: the recipe on one device."""
    out = recipe_file.parent / "single"
    done = keras_lottery(["run", recipe_file, "--out", out])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "strategy: default with 1 replica" in done.stdout
    return out


# ---- recipe, batch and chief rules -----------------------------------------------------


def test_distribute_section_is_validated():
    with pytest.raises(RecipeError, match="'distribute.strategy': must be one of default, mirrored"):
        parse(merge(TINY, {"distribute": {"strategy": "gpus"}}))
    with pytest.raises(RecipeError, match="'distribute.devices': must be null unless strategy is 'mirrored'"):
        parse(merge(TINY, {"distribute": {"strategy": "default", "devices": ["/gpu:0"]}}))
    with pytest.raises(RecipeError, match="'distribute.devices': must be null or a non-empty list"):
        parse(merge(TINY, {"distribute": {"strategy": "mirrored", "devices": [0, 1]}}))
    with pytest.raises(RecipeError, match="'distribute.tpu': must be null unless strategy is 'tpu'"):
        parse(merge(TINY, {"distribute": {"strategy": "mirrored", "tpu": "my-tpu"}}))
    with pytest.raises(RecipeError, match="unknown recipe key 'distribute.gpus'"):
        parse(merge(TINY, {"distribute": {"gpus": 2}}))
    recipe = parse(merge(TINY, {"distribute": {"strategy": "mirrored", "devices": ["/gpu:0", "/gpu:1"]}}))
    assert recipe.distribute.devices == ("/gpu:0", "/gpu:1")


def test_strategy_does_not_change_the_recipe_hash():
    """The same experiment on other devices continues in the same run directory."""
    plain = parse(TINY)
    for section in ({"strategy": "mirrored"}, {"strategy": "tpu", "tpu": "grpc://10.0.0.2:8470"}):
        assert parse(merge(TINY, {"distribute": section})).short_hash() == plain.short_hash()
    assert parse(merge(TINY, {"training": {"batch_size": 64}})).short_hash() != plain.short_hash()


def test_global_batch_is_split_evenly_or_refused():
    assert distribute.per_replica_batch(32, 1) == 32
    assert distribute.per_replica_batch(32, 2) == 16
    with pytest.raises(distribute.DistributeError) as err:
        distribute.per_replica_batch(30, 4)
    message = str(err.value)
    assert "\n" not in message
    assert "'training.batch_size'" in message and "4 replicas" in message and "28 or 32" in message


def test_chief_is_the_chief_task_else_worker_0():
    assert distribute.is_chief_task(None, None)
    assert distribute.is_chief_task("worker", 0, {"worker": ["a:1", "b:2"]})
    assert not distribute.is_chief_task("worker", 1, {"worker": ["a:1", "b:2"]})
    assert distribute.is_chief_task("chief", 0, {"chief": ["a:1"], "worker": ["b:2"]})
    assert not distribute.is_chief_task("worker", 0, {"chief": ["a:1"], "worker": ["b:2"]})


def test_default_strategy_writes_the_run_directory(tmp_path):
    strategy = distribute.create(parse(TINY).distribute)
    assert strategy.num_replicas_in_sync == 1
    assert distribute.work_dir(tmp_path / "run", strategy) == tmp_path / "run"
    assert distribute.describe(strategy, parse(TINY).distribute, 32).startswith(
        "strategy: default with 1 replica, global batch 32 = 32 per replica"
    )


def test_unknown_device_is_refused():
    with pytest.raises(distribute.DistributeError, match=r"'distribute.devices': /gpu:7 not found"):
        distribute.mirrored(["/gpu:7"])


def test_unreachable_tpu_is_a_one_line_error(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(distribute.DistributeError) as err:
        distribute.tpu(None)
    assert str(err.value).startswith("no TPU reachable at the default address")
    assert "distribute.tpu" in str(err.value) and "\n" not in str(err.value)


def test_cli_refuses_an_unknown_strategy(write_recipe):
    path = write_recipe(TINY)
    result = CliRunner().invoke(main, ["run", str(path), "--strategy", "gpus"])
    assert result.exit_code == 2 and "gpus" in result.output
    result = CliRunner().invoke(main, ["run", str(write_recipe(merge(TINY, {"distribute": {"strategy": "gpus"}})))])
    assert result.exit_code == 2 and "'distribute.strategy'" in result.output


# ---- 2 logical CPU devices ---------------------------------------------------------------


def test_batch_not_divisible_among_replicas_is_refused(recipe_file, tmp_path):
    out = tmp_path / "run"
    done = keras_lottery(
        ["run", recipe_file, "--out", out, "--strategy", "mirrored", "--set", "training.batch_size=33"],
        env={"KERAS_LOTTERY_CPU_DEVICES": "2"},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: recipe key 'training.batch_size': the global batch 33 does not divide evenly among "
        "2 replicas; use a multiple of 2 such as 32 or 34"
    )
    assert not out.exists()


def test_mirrored_on_two_devices_matches_one_device(recipe_file, single_device_run):
    out = recipe_file.parent / "mirrored"
    done = keras_lottery(
        ["run", recipe_file, "--out", out, "--strategy", "mirrored"], env={"KERAS_LOTTERY_CPU_DEVICES": "2"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "strategy: mirrored with 2 replicas, global batch 32 = 16 per replica" in done.stdout
    assert_same_results(out, single_device_run)


REPLICA_CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np
    from keras_lottery import data, distribute, lottery, masking, pruning
    from keras_lottery.lottery import callbacks as rewinding
    from keras_lottery.config.recipe import parse

    recipe = parse(json.loads(sys.argv[1]))
    strategy = distribute.create(recipe.distribute)
    experiment = lottery.Experiment(recipe, sys.argv[2], data.load(recipe.dataset), lambda *_: None, strategy)
    lottery.claim_run_dir(recipe, sys.argv[2], experiment.identity())
    model = experiment.model

    def replicas_agree():
        return all(
            len(values) == 2 and all(np.array_equal(values[0].numpy(), v.numpy()) for v in values[1:])
            for values in (strategy.experimental_local_results(v) for v in model.variables)
        )

    # Assigned from outside the replica context, masks and weights reach every replica.
    weights = experiment.theta0(0)
    masks = {n: (np.random.default_rng(1).random(m.shape) < 0.5).astype("float32")
             for n, m in masking.dense_masks(model).items()}
    rewinding.restore(model, weights, masks)
    restored = all(
        np.array_equal(v.numpy(), np.asarray(masks[name], np.float32))
        for name, w in masking.wrappers(model).items()
        for v in strategy.experimental_local_results(w.pruning_vars[0][1])
    )
    before = replicas_agree()
    experiment.run()  # trains, prunes, rewinds, resets the optimizer
    masking.apply_masks(model)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "restored": restored,
                      "agree_before": before, "agree_after": replicas_agree()}))
""")


def test_masks_and_weights_are_identical_on_every_replica(tmp_path):
    recipe = merge(RECIPE, {"controls": [], "training": {"iterations": 40}, "distribute": {"strategy": "mirrored"}})
    done = subprocess.run(
        [sys.executable, "-c", REPLICA_CHECK, json.dumps(recipe), str(tmp_path / "run")],
        cwd=ROOT, env={**os.environ, "KERAS_LOTTERY_CPU_DEVICES": "2"},
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"replicas": 2, "restored": True, "agree_before": True, "agree_after": True}


# ---- 2 workers on 127.0.0.1 --------------------------------------------------------------


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_workers(args, count=2, timeout=TIMEOUT):
    """Start ``count`` workers of ``keras-lottery ARGS`` with their TF_CONFIG; wait for all."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(count)]}
    workers = []
    for index in range(count):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "keras_lottery", *map(str, args)], cwd=ROOT,
            env={**os.environ, "TF_CONFIG": tf_config, "KERAS_LOTTERY_CPU_DEVICES": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    try:
        return [(w.wait(timeout=timeout), *w.communicate()) for w in workers]
    finally:
        for w in workers:  # stragglers of a failed or hung run
            if w.poll() is None:
                w.kill()
                w.wait()


@pytest.mark.slow  # two TensorFlow processes on 127.0.0.1 (40 s): run with -m slow
def test_two_workers_match_a_single_process(recipe_file, single_device_run):
    out = recipe_file.parent / "multi"
    (chief_rc, chief_out, chief_err), (rc, out1, err1) = run_workers(
        ["run", recipe_file, "--out", out, "--strategy", "multi_worker"]
    )
    assert chief_rc == 0, chief_err[-2000:]
    assert rc == 0, err1[-2000:]
    assert "global batch 32 = 16 per replica; this is worker 0 of 2 (chief, writes the run directory)" in chief_out
    assert "this is worker 1 of 2 (not the chief, writes a scratch directory)" in out1
    assert_same_results(out, single_device_run)
    assert len(rows(out)) == 4 and (out / "tensorboard").is_dir()
    # The other worker trained the same rounds but wrote only to its scratch directory.
    scratch = out.parent / f"{out.name}.workertemp_1"
    assert rows(scratch) == rows(out)
    assert not list(out.glob("*workertemp*"))
    # A rerun resumes on both workers: everything is finished, nothing is trained again.
    for returncode, stdout, stderr in run_workers(["run", recipe_file, "--out", out, "--strategy", "multi_worker"]):
        assert returncode == 0, stderr[-2000:]
        assert "training" not in stdout and "4 results" in stdout


def test_workers_with_different_progress_refuse_to_start(recipe_file, single_device_run, tmp_path):
    """A worker whose scratch directory lacks the chief's finished rounds would train
    rounds the chief skips, and both would wait forever: both must stop with an error."""
    out = tmp_path / "run"
    shutil.copytree(single_device_run, out)
    results = run_workers(["run", recipe_file, "--out", out, "--strategy", "multi_worker"])
    for returncode, _, stderr in results:
        assert returncode == 2
        assert stderr.strip().splitlines()[-1].startswith("error: the workers' directories hold different finished rounds")
