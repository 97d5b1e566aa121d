"""Several workers on one run directory: the same results as one, whatever happens to them.

Every run here is a command in processes of its own (workers are processes), of one
small recipe whose trainings each take a few seconds, so that a worker can be killed
in the middle of one. ``tests/flavoured/test_core.py`` checks ``--workers 2`` against one
worker bit for bit on every Keras.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY, merge, save_recipe
from keras_lottery.rundir import claims, layout, storage

RECIPE = merge(TINY, {
    "training": {"iterations": 300, "eval_every": 20, "checkpoint_every": 20},
    "pruning": {"rounds": 3},
})
TIMEOUT = 400


def start(args, log, cwd=ROOT, **options):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-m", "keras_lottery", *args], cwd=cwd, env=env, stdout=log,
                            stderr=subprocess.STDOUT, **options)


def finished(process, log_path):
    try:
        process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"did not finish in {TIMEOUT}s:\n{Path(log_path).read_text()[-3000:]}")
    return Path(log_path).read_text()


def run(recipe_path, out, folder, *extra):
    log = folder / f"{out.name}.log"
    with open(log, "w") as handle:
        process = start(["run", str(recipe_path), "--out", str(out), *extra], handle)
        text = finished(process, log)
    assert process.returncode == 0, text[-3000:]
    return text


def rows_without_seconds(run_dir):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in storage.read_json(run_dir / "results.json")]


def assert_same_run(run_dir, reference):
    assert rows_without_seconds(run_dir) == rows_without_seconds(reference)
    ours = sorted(p.relative_to(run_dir) for p in run_dir.glob("trial_*/**/*.npz") if "checkpoints" not in p.parts)
    assert ours == sorted(p.relative_to(reference) for p in reference.glob("trial_*/**/*.npz")
                          if "checkpoints" not in p.parts)
    for name in ours:
        found, expected = storage.load_arrays(run_dir / name), storage.load_arrays(reference / name)
        assert all(np.array_equal(found[key], expected[key]) for key in expected), name
    assert not list(layout.claims_dir(run_dir).glob("*.json")), "claims are released"


def trained(text):
    """The trainings a log shows starting (fresh or resumed)."""
    return [line.split("] ", 1)[-1].split(": ")[0] for line in text.splitlines()
            if line.split("] ", 1)[-1].startswith("trial ") and ": training " in line]


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory):
    return save_recipe(tmp_path_factory.mktemp("recipe"), RECIPE, "workers.json")


@pytest.fixture(scope="module")
def reference(recipe_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    text = run(recipe_path, folder / "one", folder)
    assert len(trained(text)) == 7
    return folder / "one"


@pytest.mark.slow  # tests/flavoured/test_core.py checks two workers against one on every Keras
def test_three_workers_give_the_results_of_one(recipe_path, reference, tmp_path):
    text = run(recipe_path, tmp_path / "three", tmp_path, "--workers", "3")
    assert_same_run(tmp_path / "three", reference)
    seen = trained(text)
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 7, "each training trained once"
    assert "progress: 7/7 trainings done" in text


def wait_for(condition, seconds=TIMEOUT, what="the condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_a_worker_killed_mid_training_is_taken_over(recipe_path, reference, tmp_path):
    """SIGKILL the worker process while it trains (after a mid-round checkpoint): the
    other worker takes its training over from that checkpoint and the run ends as one
    uninterrupted worker's does."""
    out, log = tmp_path / "killed", tmp_path / "killed.log"
    with open(log, "w") as handle:
        parent = start(["run", str(recipe_path), "--out", str(out), "--workers", "2"], handle)

        def child_training_with_checkpoint():
            for path in layout.claims_dir(out).glob("trial_*.json"):
                claim = claims.read(path)
                key = layout.claim_key(path)
                if claim and key and claim.get("pid") != parent.pid and \
                        list(layout.checkpoints(layout.variant_dir(out, *key)).glob("it_*")):
                    return claim["pid"], key
            return None

        pid, key = wait_for(child_training_with_checkpoint, what="a worker process with a checkpoint")
        os.kill(pid, signal.SIGKILL)
        text = finished(parent, log)
    assert parent.returncode == 0, text[-3000:]
    label = f"trial {key[0]} round {key[1]}/2 {key[2]}"
    assert f"{label}: resumed from iteration" in text, text[-3000:]
    assert_same_run(out, reference)


def test_a_worker_started_elsewhere_joins_and_shares_the_work(recipe_path, reference, tmp_path):
    """``keras-lottery worker RUN_DIR`` from another working directory joins a running
    ``run``: both train, neither trains a training the other trained."""
    out = tmp_path / "shared"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with open(tmp_path / "run.log", "w") as run_log, open(tmp_path / "worker.log", "w") as worker_log:
        runner = start(["run", str(recipe_path), "--out", str(out)], run_log)

        def runner_mid_training():  # a claim of the run's, with a checkpoint: no shared lock held
            for path in layout.claims_dir(out).glob("trial_*.json"):
                claim, key = claims.read(path), layout.claim_key(path)
                if claim and key and key[1] >= 1 and claim.get("pid") == runner.pid and \
                        list(layout.checkpoints(layout.variant_dir(out, *key)).glob("it_*")):
                    return key
            return None

        def joiner_claimed():
            return any((claims.read(path) or {}).get("pid") == joiner.pid
                       for path in layout.claims_dir(out).glob("trial_*.json"))

        # The run is paused in the middle of a training until the worker has claimed one, so
        # that both train however fast this machine is (the run would otherwise finish first).
        wait_for(runner_mid_training, what="the run in the middle of a pruned round's training")
        os.kill(runner.pid, signal.SIGSTOP)
        try:
            joiner = start(["worker", str(out), "--name", "helper"], worker_log, cwd=elsewhere)
            wait_for(lambda: joiner_claimed() or joiner.poll() is not None, what="the worker's claim")
        finally:
            os.kill(runner.pid, signal.SIGCONT)
        run_text = finished(runner, tmp_path / "run.log")
        worker_text = finished(joiner, tmp_path / "worker.log")
    assert runner.returncode == 0, run_text[-3000:]
    assert joiner.returncode == 0, worker_text[-3000:]
    mine, theirs = trained(run_text), trained(worker_text)
    assert mine and theirs, (run_text[-2000:], worker_text[-2000:])
    assert not set(mine) & set(theirs) and len(mine) + len(theirs) == 7
    assert "worker helper: trained" in worker_text
    assert not list(elsewhere.iterdir()), "the worker wrote nothing where it was started"
    assert_same_run(out, reference)


def test_an_unfinished_run_resumes_with_another_number_of_workers(recipe_path, reference, tmp_path):
    out, log = tmp_path / "resumed", tmp_path / "first.log"
    with open(log, "w") as handle:
        first = start(["run", str(recipe_path), "--out", str(out), "--workers", "2"], handle, start_new_session=True)
        wait_for(lambda: len(list(out.glob("trial_0/round_*/*/summary.json"))) >= 2, what="two finished trainings")
        os.killpg(first.pid, signal.SIGKILL)  # the run and its worker processes
        first.wait()
    left = len(list(out.glob("trial_0/round_*/*/summary.json")))
    assert left < 7
    text = run(Path(recipe_path), out, tmp_path, "--workers", "3")
    assert len(trained(text)) <= 7 - left + 2  # at most the two cut short are trained again from checkpoints
    assert_same_run(out, reference)


def test_a_worker_refuses_what_it_cannot_join(tmp_path):
    with open(tmp_path / "log", "w") as handle:
        process = start(["worker", str(tmp_path)], handle)
        text = finished(process, tmp_path / "log")
    assert process.returncode == 2
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "keras-lottery run first" in errors[0], text


def test_bad_worker_counts_are_refused_in_one_line(recipe_path, tmp_path):
    from click.testing import CliRunner

    from keras_lottery.cli import main

    for args, message in ((["--workers", "0"], "whole number from 1"),
                          (["--workers", "2", "--strategy", "multi_worker"], "use one of them"),
                          (["--devices", "0,1"], "pass --workers N with it"),
                          (["--workers", "2", "--devices", "a,b"], "device numbers")):
        result = CliRunner().invoke(main, ["run", str(recipe_path), "--out", str(tmp_path / "x"), *args])
        assert result.exit_code == 2, result.output
        assert message in result.output, result.output
        assert not (tmp_path / "x").exists()


def small_model(seed):
    """A model function of this test module: the worker processes import it as the test does."""
    from keras_lottery.backend import keras

    inputs = keras.Input(shape=(8, 8))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(24, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="out")(x))


def test_the_python_api_runs_workers_with_its_own_model_and_data(tmp_path):
    import keras_lottery as kl
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.images.astype("float32") / 16, digits.target
    data = (x[:1400], y[:1400], x[1400:], y[1400:])
    recipe = kl.load_recipe("quickstart_digits", overrides={
        "training.iterations": 60, "training.eval_every": 20, "pruning.rounds": 3, "controls": ["random_prune"],
        "pruning.rates": {"dense": 0.3, "output": 0.15}})
    lines = []
    two = kl.run(recipe, model=small_model, data=data, out=tmp_path / "two", workers=2, log=lines.append, report=False)
    one = kl.run(recipe, model=small_model, data=data, out=tmp_path / "one", log=lambda _: None, report=False)
    assert any(line.startswith("[w2] ") for line in lines), lines
    assert_same_run(two.run_dir, one.run_dir)
    with pytest.raises(kl.UsageError, match="cannot be sent to worker processes"):
        import threading

        lock = threading.Lock()
        kl.run(recipe, model=lambda seed: lock and small_model(seed), data=data, out=tmp_path / "x", workers=2)
    assert not (tmp_path / "x").exists()


def test_the_scheduler_examples_use_the_commands_as_they_are(tmp_path):
    """examples/: the Slurm script is valid bash, the Kubernetes Job valid YAML, and every
    keras-lottery option they pass exists."""
    import re

    import yaml
    from click.testing import CliRunner

    from keras_lottery.cli import main

    slurm, k8s = ROOT / "examples" / "slurm_array.sh", ROOT / "examples" / "k8s_indexed_job.yaml"
    assert subprocess.run(["bash", "-n", str(slurm)]).returncode == 0
    job = yaml.safe_load(k8s.read_text())
    assert job["kind"] == "Job" and job["spec"]["completionMode"] == "Indexed"
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    for text in (slurm.read_text(), script):
        for command, options in re.findall(r"keras-lottery (run|worker) ([^\n]*)", text):
            helped = CliRunner().invoke(main, [command, "--help"]).output
            for option in re.findall(r"(--[a-z-]+)", options):
                assert option in helped, (command, option)


def test_an_interrupted_run_stops_its_workers_with_one_line(recipe_path, tmp_path):
    """SIGINT (Ctrl-C reaches the whole process group) while two workers train: one line,
    exit 130, no worker left running; the finished trainings stay finished."""
    out = tmp_path / "stopped"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen([sys.executable, "-m", "keras_lottery", "run", str(recipe_path), "--out", str(out),
                                "--workers", "2", "--plain"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: layout.summary(out, 0, 0, "ticket").is_file() and
             any(claims.holder(p) for p in layout.claims_dir(out).glob("trial_*.json")), what="a second training")
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    errors = [line for line in (stdout + stderr).splitlines() if "error: " in line]
    assert len(errors) == 1 and errors[0].startswith("error: stopped by SIGINT"), stdout[-2000:] + stderr[-2000:]
    time.sleep(1)
    assert not [p for p in layout.claims_dir(out).glob("trial_*.json") if claims.holder(p)], "no worker left"
    assert layout.summary(out, 0, 0, "ticket").is_file()
