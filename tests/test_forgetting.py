"""What pruning forgets: per-class accuracy, Welch's t-test, Pruning Identified Exemplars,
the stored predictions, the analysis (resume after SIGKILL, bad options), the report."""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, TINY, merge
from keras_lottery import results
from keras_lottery.analyses import forgetting
from keras_lottery.cli import main
from keras_lottery.config import recipe as recipes
from keras_lottery.rundir import layout, storage

SMALL = merge(TINY, {"training": {"iterations": 40}, "pruning": {"rounds": 2}, "controls": [], "trials": 2})


def test_class_accuracies_weighted_by_class_size_give_the_overall_accuracy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 500)
    predictions = np.where(rng.random(500) < 0.7, labels, rng.integers(0, 7, 500))
    accuracy = results.class_accuracy(predictions, labels, 7)
    sizes = np.bincount(labels, minlength=7)
    assert np.sum(accuracy * sizes) / sizes.sum() == pytest.approx(np.mean(predictions == labels), abs=1e-12)


def test_welch_t_test_matches_scipy():
    from scipy import stats

    dense = np.array([[0.021, -0.030, 0.004], [0.025, -0.041, 0.010], [0.019, -0.028, 0.001]])
    sparse = np.array([[0.010, -0.020, 0.012], [0.002, -0.025, 0.015], [0.015, -0.010, 0.011], [0.008, -0.031, 0.0]])
    t, p = forgetting.welch(dense, sparse)
    expected = stats.ttest_ind(dense, sparse, equal_var=False)
    np.testing.assert_allclose(t, expected.statistic, rtol=1e-12)
    np.testing.assert_allclose(p, expected.pvalue, rtol=1e-10)


def test_pies_on_a_hand_built_prediction_table():
    dense = [[0, 1, 2, 3, 4], [0, 1, 2, 3, 3], [0, 2, 2, 3, 4]]  # modal: 0 1 2 3 4
    sparse = [[0, 1, 1, 3, 4], [1, 1, 1, 0, 4], [1, 2, 1, 0, 0]]  # modal: 1 1 1 0 4
    indices, dense_modal, sparse_modal = forgetting.pies(dense, sparse, 5)
    assert indices.tolist() == [0, 2, 3]
    assert dense_modal.tolist() == [0, 1, 2, 3, 4] and sparse_modal.tolist() == [1, 1, 1, 0, 4]
    assert forgetting.modal([[0, 2], [1, 2]], 3).tolist() == [0, 2]  # a tie goes to the lower class
    compared = forgetting.compare(dense, sparse, [0, 1, 2, 3, 3], 5)
    assert compared["pies"] == 3 and compared["pies_by_class"].tolist() == [1, 0, 1, 1, 0]
    assert compared["overall_dense"] == pytest.approx(np.mean([4 / 5, 5 / 5, 3 / 5]))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from keras_lottery import lottery

    out = tmp_path_factory.mktemp("forgetting") / "run"
    lottery.run(recipes.parse(SMALL), out, log=lambda _: None)
    return out


def test_every_variant_stores_its_early_stop_predictions_and_the_run_its_labels(run_dir):
    labels = storage.load_arrays(layout.test_labels(run_dir))["labels"]
    assert labels.dtype == np.uint8
    for row in storage.read_json(layout.results_json(run_dir)):
        saved = storage.load_arrays(layout.predictions(run_dir, row["trial"], row["round"], row["variant"]))
        assert saved["predictions"].dtype == np.uint8 and saved["predictions"].shape == labels.shape
        assert int(saved["iteration"]) == row["early_stop_iteration"]
        assert np.mean(saved["predictions"] == labels) == pytest.approx(row["early_stop_test_accuracy"], abs=1e-6)
        sizes = np.bincount(labels, minlength=len(saved["class_accuracy"]))
        assert np.nansum(saved["class_accuracy"] * sizes) / sizes.sum() == pytest.approx(
            row["early_stop_test_accuracy"], abs=1e-6)
        assert row["flops_remaining"] == pytest.approx(row["weights_remaining"], abs=1e-3)  # an MLP


def _analyze(run_dir, *options):
    return CliRunner().invoke(main, ["analyze", "forgetting", str(run_dir), *options])


def test_the_analysis_writes_rounds_a_grid_and_a_report_section(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    result = _analyze(run)
    assert result.exit_code == 0, result.output
    folder = layout.analysis_dir(run, "forgetting")
    first = storage.read_json(forgetting.round_file(folder, 1))
    assert first["trials"] == {"dense": [0, 1], "sparse": [0, 1]}
    assert len(first["p"]) == 10 and first["significant"] is not None  # 2 trials: tested
    assert (folder / forgetting.GRID).is_file() or storage.read_json(folder / forgetting.GRID_INFO)["note"]
    assert "| round | % weights | % MACs |" in result.output
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    text = (layout.report_dir(run) / "report.md").read_text()
    assert "### Analysis: forgetting" in text and "PIEs by true class" in text
    assert "### What the ticket costs" in text and "bitmask + values" in text


@pytest.mark.parametrize("options, message", [
    (["--alpha", "1.5"], "--alpha"), (["--variant", "random_prune"], "--variant"), (["--top", "0"], "--top"),
    (["--grid", "-1"], "--grid"), (["--alpha", "many"], "many"),
])
def test_bad_options_are_refused_with_exit_2_and_nothing_written(run_dir, tmp_path, options, message):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    result = _analyze(run, *options)
    assert result.exit_code == 2 and message in result.output
    assert not layout.analysis_dir(run, "forgetting").exists()


def test_rounds_without_predictions_are_noted_not_fatal(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    layout.predictions(run, 1, 1, "ticket").unlink()  # as if trial 1 round 1 was made before 0.2
    result = _analyze(run, "--grid", "0")
    assert result.exit_code == 0, result.output
    assert "round 1: no predictions stored for rounds made before 0.2 (trials 1)" in result.output
    assert storage.read_json(forgetting.round_file(layout.analysis_dir(run, "forgetting"), 1))["p"] is None
    layout.test_labels(run).unlink()
    shutil.rmtree(layout.analysis_dir(run, "forgetting"))
    result = _analyze(run)
    assert result.exit_code == 0 and "no predictions stored for rounds made before 0.2" in result.output


def test_the_analysis_resumes_after_sigkill(run_dir, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    shutil.copytree(run_dir, reference)
    shutil.copytree(run_dir, killed)
    assert _analyze(reference).exit_code == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen([sys.executable, "-m", "keras_lottery", "analyze", "forgetting", str(killed)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    options = layout.analysis_dir(killed, "forgetting") / layout.ANALYSIS_OPTIONS
    deadline = time.monotonic() + 120
    while not options.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    folder = layout.analysis_dir(killed, "forgetting")
    (folder / f".{forgetting.SUMMARY}.x.tmp").write_text("{half")  # a write cut short
    result = _analyze(killed)  # the killed process's lock is released with it
    assert result.exit_code == 0, result.output
    expected = layout.analysis_dir(reference, "forgetting")
    for name in (forgetting.SUMMARY, "round_01.json", forgetting.GRID_INFO):
        assert storage.read_json(folder / name) == storage.read_json(expected / name), name
