"""The instability analysis (Frankle, Dziugaite, Roy & Carbin 2020): the error barrier,
θk replayed bit for bit, the command with its outputs and report section, refused
options, and resuming after SIGKILL."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, TINY, merge
from keras_lottery import analyses
from keras_lottery.analyses import AnalysisError, instability
from keras_lottery.cli import main
from keras_lottery.config import recipe as recipes
from keras_lottery.lottery import variants
from keras_lottery.rundir import layout, storage

# 60 iterations, θk saved at 20, a mid-round checkpoint every 20 (a kill lands inside a copy).
RECIPE = merge(TINY, {
    "training": {"iterations": 60, "eval_every": 20, "checkpoint_every": 20},
    "pruning": {"rounds": 2},
    "controls": [],
    "rewind": {"iteration": 20},
})
OPTIONS = ["--rounds", "0,1", "--rewind-points", "0,40", "--alphas", "5"]
TIMEOUT = 240


def quiet(_):
    pass


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A finished two-round run of the tiny recipe (never analyzed: tests copy it)."""
    from keras_lottery import lottery

    run_dir, _ = lottery.run(recipes.parse(RECIPE), tmp_path_factory.mktemp("pristine") / "run", log=quiet)
    return Path(run_dir)


def fresh_copy(pristine, tmp_path, name="run"):
    target = tmp_path / name
    shutil.copytree(pristine, target)
    (target / layout.LOCK).unlink(missing_ok=True)
    return target


@pytest.fixture(scope="module")
def analyzed(pristine, tmp_path_factory):
    """The pristine run copied and analyzed once, uninterrupted, with OPTIONS."""
    run_dir = fresh_copy(pristine, tmp_path_factory.mktemp("analyzed"))
    result = CliRunner().invoke(main, ["analyze", "instability", str(run_dir), *OPTIONS])
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture(scope="module")
def experiment(pristine):
    run = analyses._load_run(pristine)
    return instability.experiment_for(run, instability.load_data(run, instability.Options()), quiet), run


# ---- the barrier ---------------------------------------------------------------------------


def test_barrier_is_the_largest_error_above_the_mean_of_the_ends():
    assert instability.barrier([0.1, 0.1, 0.1]) == 0.0
    assert instability.barrier([0.10, 0.25, 0.40, 0.20, 0.12]) == pytest.approx(0.40 - 0.11)
    assert instability.barrier([0.10, 0.12, 0.30]) == pytest.approx(0.30 - 0.20)  # monotone: half the ends' gap
    assert instability.alpha_grid(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    a, b = {"w": np.float32([1.0, -3.0])}, {"w": np.float32([3.0, 5.0])}
    assert np.array_equal(instability.interpolate(a, b, 0.0)["w"], a["w"])
    assert np.array_equal(instability.interpolate(a, b, 1.0)["w"], b["w"])
    assert np.array_equal(instability.interpolate(a, b, 0.25)["w"], np.float32([1.5, -1.0]))
    assert instability.interpolate(a, b, 0.5)["w"].dtype == np.float32


def test_barrier_is_zero_for_identical_copies_and_positive_for_a_known_bump(experiment):
    experiment, run = experiment
    masks = storage.load_arrays(layout.mask(run.path, 0, 1, variants.TICKET))
    trained = storage.load_arrays(layout.final(run.path, 0, 1, variants.TICKET))
    alphas = instability.alpha_grid(5)

    same = instability.line_errors(experiment, trained, dict(trained), masks, alphas)
    assert len(set(same)) == 1 and instability.barrier(same) == 0.0
    assert 0.0 < same[0] < 0.5  # a trained network

    # The output layer negated: at α = 0.5 every logit is 0, so every example is predicted as
    # class 0 (argmax of ties) and the error is exactly the share of other classes.
    flipped = dict(trained)
    for key in ("output/kernel", "output/bias"):
        flipped[key] = -trained[key]
    bumped = instability.line_errors(experiment, trained, flipped, masks, alphas)
    y_test = experiment.splits.y_test
    assert bumped[2] == pytest.approx(float(np.mean(y_test != 0)), abs=1e-6)
    assert bumped[0] == pytest.approx(same[0], abs=1e-7) and bumped[-1] > 0.8  # negated logits: nearly all wrong
    assert instability.barrier(bumped) == pytest.approx(max(bumped) - (bumped[0] + bumped[-1]) / 2)

    # The same function with its hidden units permuted: equal ends, a bump in between.
    permuted = dict(trained)
    order = np.random.default_rng(0).permutation(trained["fc1/kernel"].shape[1])
    for key in ("fc1/kernel", "fc1/bias"):
        permuted[key] = trained[key][..., order]
    permuted["fc2/kernel"] = trained["fc2/kernel"][order]
    permuted_masks = dict(masks, fc1=masks["fc1"][:, order], fc2=masks["fc2"][order])
    ends = [instability.test_error(experiment, w, m) for w, m in ((trained, masks), (permuted, permuted_masks))]
    assert ends[0] == pytest.approx(ends[1], abs=1e-6)


def test_replaying_the_dense_round_gives_the_saved_theta_k_bit_for_bit(experiment, tmp_path):
    experiment, run = experiment
    saved = storage.load_arrays(layout.rewind_weights(run.path, 0))
    replayed = instability.replay_theta_k(experiment, 0, run.recipe.rewind.iteration, tmp_path / "replay")
    assert set(replayed) == set(saved)
    for name, value in saved.items():
        assert replayed[name].dtype == value.dtype and np.array_equal(replayed[name], value), name
    assert not (tmp_path / "replay").exists()  # its checkpoints are removed
    theta_0 = instability.replay_theta_k(experiment, 0, 0, tmp_path / "zero")
    init = storage.load_arrays(layout.init_weights(run.path, 0))
    assert all(np.array_equal(theta_0[name], init[name]) for name in init)
    assert not any(p.name.startswith(".") and p.suffix == ".tmp" for p in run.path.rglob("*"))


# ---- the command -----------------------------------------------------------------------------


def test_the_command_writes_the_table_figures_and_a_report_section(analyzed):
    folder = layout.analysis_dir(analyzed, "instability")
    entries = storage.read_json(folder / instability.TABLE_JSON)
    assert [(e["round"], e["k"]) for e in entries] == [(0, 0), (0, 40), (1, 0), (1, 40)]
    assert [e["theta_k"].split()[0] for e in entries] == ["θ0", "replayed", "θ0", "replayed"]
    for e in entries:
        assert e["alphas"] == [0.0, 0.25, 0.5, 0.75, 1.0] and e["pairs"] == [[0, 1]]
        errors = e["errors"][0]
        assert e["barrier"] == pytest.approx(max(errors) - (errors[0] + errors[-1]) / 2) and e["barrier"] >= 0
        assert e["end_errors"] == [errors[0], errors[-1]]
    assert entries[0]["weights_remaining"] == 100.0 and entries[2]["weights_remaining"] < 100.0
    # the two copies trained on different data orders: different weights, the mask kept
    a = storage.load_arrays(instability.copy_file(folder, 0, 1, 40, 0))
    b = storage.load_arrays(instability.copy_file(folder, 0, 1, 40, 1))
    masks = storage.load_arrays(layout.mask(analyzed, 0, 1, variants.TICKET))
    assert not np.array_equal(a["fc1/kernel"], b["fc1/kernel"])
    assert np.all(a["fc1/kernel"][masks["fc1"] == 0] == 0)
    # replayed θ40 cached; no training leftovers; nothing written outside the folder
    assert len(list((folder / instability.THETA_DIR).iterdir())) == 1
    assert not (folder / instability.WORK_DIR).exists()
    rows = storage.read_csv(folder / instability.TABLE_CSV)
    assert [int(r["k"]) for r in rows] == [0, 40, 0, 40] and rows[0]["end_errors"].count(";") == 1
    for figure in (instability.ALPHA_FIGURE, instability.BARRIER_FIGURE):
        assert (folder / figure).stat().st_size > 1000

    result = CliRunner().invoke(main, ["report", str(analyzed)])
    assert result.exit_code == 0, result.output
    text = (layout.report_dir(analyzed) / "report.md").read_text()
    assert "### Analysis: instability" in text and "| round | % weights remaining | k |" in text
    assert f"(../{layout.ANALYSES}/instability/{instability.BARRIER_FIGURE})" in text

    # rerunning finds everything done: the same table, no training
    result = CliRunner().invoke(main, ["analyze", "instability", str(analyzed), *OPTIONS])
    assert result.exit_code == 0 and "training" not in result.output, result.output
    assert storage.read_json(folder / instability.TABLE_JSON) == entries


@pytest.mark.parametrize("options, message", [
    (["--rounds", "2"], "round 2 has no finished ticket"),
    (["--rounds", "zero"], "comma list of integers"),
    (["--rewind-points", "30"], "not a multiple of training.eval_every"),
    (["--rewind-points", "60"], "not before the end of training"),
    (["--alphas", "1"], "--alphas must be from 2 (both ends of the line) to 1001"),
    (["--copies", "1"], "--copies must be from 2 (a line needs two ends) to 64"),
    (["--trial", "3"], "trial 3 is not in"),
])
def test_bad_options_are_refused_in_one_line_with_exit_2_and_nothing_written(pristine, tmp_path, options, message):
    run_dir = fresh_copy(pristine, tmp_path)
    result = CliRunner().invoke(main, ["analyze", "instability", str(run_dir), *options])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (run_dir / layout.ANALYSES).exists()
    if options[0] == "--copies":  # not an integer: refused by the command line itself
        result = CliRunner().invoke(main, ["analyze", "instability", str(run_dir), "--copies", "two"])
        assert result.exit_code == 2 and "not a valid integer" in result.output


def test_data_that_is_not_the_runs_or_cannot_be_reloaded_is_refused(pristine, tmp_path, fake_npz):
    run_dir = fresh_copy(pristine, tmp_path)
    result = CliRunner().invoke(main, ["analyze", "instability", str(run_dir), "--data", str(fake_npz)])
    assert result.exit_code == 2 and "is not the run's" in result.output, result.output
    result = CliRunner().invoke(main, ["analyze", "instability", str(run_dir), "--data", str(tmp_path / "gone.npz")])
    assert result.exit_code == 2 and "--data" in result.output, result.output
    recipe = storage.read_json(layout.recipe_file(run_dir))
    recipe["dataset"]["name"] = "python"
    storage.write_json(layout.recipe_file(run_dir), recipe)
    with pytest.raises(AnalysisError, match="passed to keras_lottery.run from Python"):
        analyses.analyze("instability", run_dir, {}, log=quiet)
    assert not (run_dir / layout.ANALYSES).exists()


# ---- resuming --------------------------------------------------------------------------------


@pytest.mark.slow  # about 45 s: a subprocess imports TensorFlow and trains
def test_a_killed_analysis_resumes_and_gives_the_uninterrupted_result(pristine, analyzed, tmp_path):
    run_dir = fresh_copy(pristine, tmp_path)
    folder = layout.analysis_dir(run_dir, "instability")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "keras_lottery", "analyze", "instability", str(run_dir), *OPTIONS]
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT
        # kill inside the second copy of round 0, k = 0: one copy saved, a mid-round checkpoint of the next
        checkpoint = f"{instability.WORK_DIR}/*/{layout.CHECKPOINTS}/it_*"  # complete ones only (not .tmp-*)
        while not list(folder.glob(checkpoint)) or not list(folder.glob(f"{instability.COPIES_DIR}/*.npz")):
            assert process.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, "timed out waiting for the analysis to start training"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not (folder / instability.TABLE_JSON).exists()

    result = CliRunner().invoke(main, ["analyze", "instability", str(run_dir), *OPTIONS])
    assert result.exit_code == 0, result.output
    assert "resumed from iteration" in result.output  # the copy continued from its checkpoint
    expected = layout.analysis_dir(analyzed, "instability")
    assert storage.read_json(folder / instability.TABLE_JSON) == storage.read_json(expected / instability.TABLE_JSON)
    for path in sorted((expected / instability.COPIES_DIR).iterdir()):
        mine, theirs = storage.load_arrays(folder / instability.COPIES_DIR / path.name), storage.load_arrays(path)
        assert all(np.array_equal(mine[name], theirs[name]) for name in theirs), path.name
    assert json.loads((folder / layout.ANALYSIS_OPTIONS).read_text())["rounds"] == "0,1"
