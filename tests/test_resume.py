"""Nothing lost: a run killed with SIGKILL resumes (mid-round and between rounds), a
second process is refused while one runs, and a diverging round is marked failed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, TINY, merge, save_recipe
from keras_lottery import lottery  # noqa: F401  (imports TensorFlow once, before the timed parts)
from keras_lottery.rundir import layout, storage
from keras_lottery.cli import main

# 200 iterations per variant, a checkpoint every 20: a kill lands inside a round.
RECIPE = merge(TINY, {
    "training": {"iterations": 200, "eval_every": 20, "checkpoint_every": 20},
    "pruning": {"rounds": 2},
    "controls": ["random_reinit"],
})
KEYS = ("trial", "round", "variant")
TIMEOUT = 240


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory):
    return save_recipe(tmp_path_factory.mktemp("recipe"), RECIPE, "resume.json")


@pytest.fixture(scope="module")
def reference(recipe_file, tmp_path_factory):
    """Results of an uninterrupted run, keyed by (trial, round, variant)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = CliRunner().invoke(main, ["run", str(recipe_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return rows_by_key(out)


def rows_by_key(run_dir):
    rows = storage.read_json(Path(run_dir) / "results.json")
    return {tuple(row[k] for k in KEYS): row for row in rows}


def assert_same_results(run_dir, reference):
    rows = rows_by_key(run_dir)
    assert set(rows) == set(reference)
    for key, row in rows.items():
        expected = reference[key]
        assert row["status"] == "ok"
        assert row["weights_remaining"] == expected["weights_remaining"], key
        assert row["early_stop_iteration"] == expected["early_stop_iteration"], key
        for column in ("early_stop_test_accuracy", "final_test_accuracy", "best_val_loss", "start_test_accuracy",
                       "start_test_loss"):
            assert row[column] == pytest.approx(expected[column], abs=1e-5), (key, column)


def command(recipe_file, out):
    return [sys.executable, "-m", "keras_lottery", "run", str(recipe_file), "--out", str(out)]


def start(recipe_file, out, log):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(command(recipe_file, out), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for(condition, process, what):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def kill(process):
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def rerun(recipe_file, out, tmp_path):
    log_path = tmp_path / "rerun.log"
    with open(log_path, "w") as log:
        process = start(recipe_file, out, log)
        process.wait(timeout=TIMEOUT)
    text = log_path.read_text()
    assert process.returncode == 0, text
    return text


def summary_times(run_dir):
    return {str(p): p.stat().st_mtime_ns for p in Path(run_dir).glob("trial_*/round_*/*/summary.json")}


def test_killed_mid_round_resumes_from_checkpoint(recipe_file, reference, tmp_path):
    """(A second process on the same run directory joins it as a worker: tests/test_workers.py.)"""
    out = tmp_path / "run"
    ticket = layout.variant_dir(out, 0, 1, "ticket")
    with open(tmp_path / "first.log", "w") as log:
        first = start(recipe_file, out, log)
        try:
            # Kill the process inside round 1, after a mid-round checkpoint.
            wait_for(lambda: any((ticket / "checkpoints").glob("it_*")), first, "a round-1 checkpoint")
        finally:
            kill(first)
    assert not (ticket / "summary.json").exists(), "the kill did not land mid-round"
    before = summary_times(out)
    assert before, "round 0 had not finished"

    text = rerun(recipe_file, out, tmp_path)  # the lock of the killed process is not stuck
    assert "trial 0 round 1/1 ticket: resumed from iteration" in text
    resumed_at = int(text.split("ticket: resumed from iteration ")[1].split()[0])
    assert 0 < resumed_at < 200
    assert "round 0/1 ticket: training" not in text, "the finished round 0 was trained again"
    assert {p: t for p, t in summary_times(out).items() if p in before} == before
    assert not list(out.glob("trial_*/round_*/*/checkpoints")), "finished variants keep no checkpoints"
    assert_same_results(out, reference)
    # the early-stop predictions survive the mid-round resume (kept in the checkpoint)
    resumed = storage.load_arrays(layout.predictions(out, 0, 1, "ticket"))
    assert int(resumed["iteration"]) == rows_by_key(out)[(0, 1, "ticket")]["early_stop_iteration"]
    labels = storage.load_arrays(layout.test_labels(out))["labels"]
    assert np.mean(resumed["predictions"] == labels) == pytest.approx(
        reference[(0, 1, "ticket")]["early_stop_test_accuracy"], abs=1e-6)


def test_killed_between_rounds_resumes_without_redoing_finished_rounds(recipe_file, reference, tmp_path):
    out = tmp_path / "run"
    dense = layout.variant_dir(out, 0, 0, "ticket") / "summary.json"
    with open(tmp_path / "first.log", "w") as log:
        first = start(recipe_file, out, log)
        try:
            wait_for(dense.is_file, first, "the end of round 0")
        finally:
            kill(first)
    before = summary_times(out)
    text = rerun(recipe_file, out, tmp_path)
    assert "round 0/1 ticket: training" not in text
    assert {p: t for p, t in summary_times(out).items() if p in before} == before
    assert_same_results(out, reference)


def test_diverging_loss_marks_round_failed_and_stops_its_trial(recipe_file, tmp_path):
    out = tmp_path / "run"
    args = ["run", str(recipe_file), "--out", str(out), "--set", "training.learning_rate=1e10"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "FAILED, training diverged: loss became nan" in result.output
    assert "round 1 skipped: the round 0 ticket they are pruned from failed" in result.output
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: 1 of 1 variants failed, first trial 0 round 0 ticket: loss became nan")
    rows = storage.read_csv(out / "results.csv")
    assert [(r["round"], r["variant"], r["status"]) for r in rows] == [("0", "ticket", "failed")]
    assert not (layout.variant_dir(out, 0, 0, "ticket") / "final.npz").exists()
    # A rerun does not train the failed round again and reports the same failure.
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1
    assert "ticket: training" not in again.output
    assert "loss became nan" in again.stderr
