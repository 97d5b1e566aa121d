"""Hardening from a hostile-input sweep (issue 14): nothing escapes the run directory,
two datasets never mix in one run, a run stays usable after its data file moved, and
crashes, faults and overwrites become one line with exit 2 (input) or 1 (fault)."""

import errno
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

from conftest import ROOT, TINY, merge, save_recipe
from keras_lottery.cli import main
from keras_lottery.rundir import layout, storage

RECIPE = merge(TINY, {"training": {"iterations": 40}, "pruning": {"rounds": 2}, "controls": []})


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line(result, code, expected):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    return lines[0]


def write_npz(path, seed):
    rng = np.random.default_rng(seed)
    y_train, y_test = (np.arange(300) % 10).astype(np.uint8), (np.arange(100) % 10).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=rng.integers(0, 255, (300, 8, 8)).astype(np.uint8), y_train=y_train,
             x_test=rng.integers(0, 255, (100, 8, 8)).astype(np.uint8), y_test=y_test)
    return path


def snapshot(folder):
    """Every file under ``folder`` with its bytes (links not followed)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {"v1": write_npz(root / "v1" / "mnist.npz", 1), "v2": write_npz(root / "v2" / "mnist.npz", 2), "root": root}


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory):
    return save_recipe(tmp_path_factory.mktemp("recipe"), RECIPE, "hardening.json")


@pytest.fixture(scope="module")
def finished(recipe_path, data, tmp_path_factory):
    """A finished 2-round run on v1/mnist.npz (copy it before changing it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = cli("run", recipe_path, "--data", data["v1"], "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def copy(finished, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(finished, target, symlinks=True)
    return target


# ---- 1. two datasets never mix in one run directory --------------------------------------


def test_same_file_name_other_content_is_refused_naming_both_files(copy, recipe_path, data, tmp_path):
    before = snapshot(copy)
    result = cli("run", recipe_path, "--data", data["v2"], "--rounds", "3", "--out", copy)
    line = one_line(result, 2, "holds results of other data")
    assert str(data["v1"]) in line and str(data["v2"]) in line
    assert snapshot(copy) == before
    # named by content: the default directories of the two files differ
    from keras_lottery import lottery
    from keras_lottery.config import recipe as recipes
    from keras_lottery.data import sources

    recipe = recipes.load(recipe_path)
    names = {lottery.run_dir_for(recipe, sources.fingerprint(*sources.load_npz(data[v]))) for v in ("v1", "v2")}
    assert len(names) == 2


# ---- 3. a run stays usable when its data file moved ----------------------------------------


def test_run_without_its_data_file_exports_reports_and_resumes_with_matching_data(copy, recipe_path, data, tmp_path):
    saved = storage.read_json(layout.recipe_file(copy))
    assert Path(saved["dataset"]["path"]).is_absolute()  # stored absolute, whatever --data said
    saved["dataset"]["path"] = str(tmp_path / "moved-away" / "mnist.npz")  # the file is gone
    storage.write_json(layout.recipe_file(copy), saved)
    result = cli("export", copy, "--round", "1", "--out", tmp_path / "exported")
    assert result.exit_code == 0, result.output
    result = cli("report", copy, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    # the data under a new path with the same content continues the run; nothing is trained again
    moved = tmp_path / "elsewhere" / "renamed.npz"
    moved.parent.mkdir()
    shutil.copy(data["v1"], moved)
    summaries = {p: p.stat().st_mtime_ns for p in copy.rglob(layout.SUMMARY)}
    result = cli("run", recipe_path, "--data", moved, "--out", copy)
    assert result.exit_code == 0, result.output
    assert {p: p.stat().st_mtime_ns for p in copy.rglob(layout.SUMMARY)} == summaries
    assert storage.read_json(layout.recipe_file(copy))["dataset"]["path"] == str(moved)


# ---- 2. nothing is written or deleted outside the run directory ---------------------------


def test_lock_link_to_outside_is_refused_and_its_target_kept(copy, recipe_path, data, tmp_path):
    decoy = tmp_path / "decoy.txt"
    decoy.write_text("precious")
    layout.lock_file(copy).unlink(missing_ok=True)
    layout.lock_file(copy).symlink_to(decoy)
    one_line(cli("run", recipe_path, "--data", data["v1"], "--out", copy), 2, "is a symbolic link")
    assert decoy.read_text() == "precious"


def test_lock_link_inside_is_refused_too(copy, recipe_path, data):
    from keras_lottery.rundir import locking, safety

    layout.lock_file(copy).unlink(missing_ok=True)
    layout.lock_file(copy).symlink_to(layout.recipe_file(copy))
    text = layout.recipe_file(copy).read_text()
    with pytest.raises(safety.UnsafeRunDirError, match="symbolic link"):
        with locking.hold(copy):
            pass
    assert layout.recipe_file(copy).read_text() == text


def test_trial_link_to_outside_folder_is_refused_and_nothing_there_changes(copy, recipe_path, data, tmp_path):
    decoy = tmp_path / "decoy"
    (decoy / "round_00" / "ticket").mkdir(parents=True)
    (decoy / ".keep.tmp").write_text("not ours")
    (decoy / "round_00" / "ticket" / ".summary.json.abc.tmp").write_text("not ours either")
    (copy / "trial_9").symlink_to(decoy, target_is_directory=True)
    before = snapshot(decoy)
    one_line(cli("run", recipe_path, "--data", data["v1"], "--trials", "10", "--out", copy), 2, "trial_9")
    one_line(cli("report", copy), 2, "trial_9")  # the default report writes into the run directory
    from keras_lottery.config import recipe as recipes
    from keras_lottery.rundir import integrity, safety

    with pytest.raises(safety.UnsafeRunDirError):
        integrity.repair(copy, recipes.load(recipe_path, trials=10), log=lambda _: None)
    assert snapshot(decoy) == before


# ---- crashes become one line ---------------------------------------------------------------


def test_model_that_cannot_take_the_data_shape_is_refused(tmp_path, write_recipe):
    recipe = merge(TINY, {"model": {"name": "vgg19", "hidden": None}, "pruning": {"rounds": 1}})
    out = tmp_path / "run"
    one_line(cli("run", write_recipe(recipe), "--out", out), 2, "cannot be built for inputs shaped (8, 8, 1)")
    assert not out.exists()


@pytest.mark.parametrize("where", ["device", "under-a-file"])
def test_out_that_cannot_be_a_directory_is_refused(tmp_path, recipe_path, data, where):
    if where == "device":
        out, expected = Path(os.devnull), "is not a directory"
    else:
        (tmp_path / "file").write_text("")
        out, expected = tmp_path / "file" / "run", "cannot create the run directory"
    one_line(cli("run", recipe_path, "--data", data["v1"], "--out", out), 2, expected)


# ---- faults: one line, exit 1, nothing earlier lost ------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_disk_or_read_only_while_writing_is_one_line_and_loses_nothing(copy, recipe_path, data, monkeypatch, code):
    summary = layout.summary(copy, 0, 1, "ticket")
    summary.unlink()  # round 1 is trained again and its files written
    final = layout.final(copy, 0, 1, "ticket").read_bytes()
    write = storage._atomic_write_bytes

    def failing(path, data_):
        if path.name == layout.FINAL:
            raise OSError(code, os.strerror(code))
        write(path, data_)

    monkeypatch.setattr(storage, "_atomic_write_bytes", failing)
    line = one_line(cli("run", recipe_path, "--data", data["v1"], "--out", copy), 1, os.strerror(code))
    assert "final.npz" in line and "nothing written before was lost" in line
    assert layout.final(copy, 0, 1, "ticket").read_bytes() == final  # the old file is whole
    assert not list(copy.rglob(layout.TEMPORARY_GLOB))
    monkeypatch.setattr(storage, "_atomic_write_bytes", write)
    assert cli("run", recipe_path, "--data", data["v1"], "--out", copy).exit_code == 0
    assert summary.is_file()


def test_full_disk_while_writing_a_checkpoint_is_one_line(copy, recipe_path, data, monkeypatch):
    from keras_lottery.backend import tf
    from keras_lottery.lottery import checkpoints

    layout.summary(copy, 0, 1, "ticket").unlink()

    class Full:
        def write(self, prefix):
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(checkpoints.MidRound, "_checkpoint", lambda self: Full())
    result = cli("run", recipe_path, "--data", data["v1"], "--out", copy, "--set", "training.checkpoint_every=20")
    one_line(result, 1, "the checkpoint could not be written (No space left on device)")


def test_full_disk_while_writing_the_report_is_one_line(copy, tmp_path, monkeypatch):
    write = storage._atomic_write_bytes

    def failing(path, data_):
        if path.suffix == ".md":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(path, data_)

    monkeypatch.setattr(storage, "_atomic_write_bytes", failing)
    one_line(cli("report", copy, "--out", tmp_path / "r"), 1, "No space left on device")


def test_report_elsewhere_only_reads_the_run(copy, tmp_path):
    before = snapshot(copy)
    assert cli("report", copy, "--out", tmp_path / "r").exit_code == 0
    assert snapshot(copy) == before


# ---- damaged or hand-edited files: one line naming the file --------------------------------


@pytest.mark.parametrize("damage, command, expected", [
    ("truncated-final", "export", "final.npz is unreadable"),
    ("summary-wrong-type", "export", "summary.json is not a results row"),
    ("mask-wrong-shape", "export", "does not fit the weights of layer"),
    ("truncated-model-json", "export", "model.json is damaged"),
    ("truncated-curve", "report", "curve.csv"),
    ("truncated-recipe", "report", "recipe.json is damaged"),
])
def test_damaged_file_is_one_line_naming_it(copy, tmp_path, damage, command, expected):
    if damage == "truncated-final":
        path = layout.final(copy, 0, 1, "ticket")
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "summary-wrong-type":
        path = layout.summary(copy, 0, 1, "ticket")
        storage.write_json(path, dict(storage.read_json(path), early_stop_iteration="soon"))
    elif damage == "mask-wrong-shape":
        path = layout.mask(copy, 0, 1, "ticket")
        storage.save_arrays(path, {name: np.ones((3, 3), np.float32) for name in storage.load_arrays(path)})
    elif damage == "truncated-model-json":
        layout.model_file(copy).write_text('{"input_shape": [8, 8')
    elif damage == "truncated-curve":
        path = layout.curve(copy, 0, 1, "ticket")
        path.write_text(path.read_text()[:60])
    else:
        layout.recipe_file(copy).write_text('{"name": ')
    if command == "export":
        result = cli("export", copy, "--round", "1", "--out", tmp_path / "exported")
    else:
        result = cli("report", copy, "--out", tmp_path / "report")
    one_line(result, 2, expected)


# ---- overwrites and messages -------------------------------------------------------------------


def test_export_refuses_a_non_empty_or_run_directory_target(copy, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep")
    one_line(cli("export", copy, "--round", "1", "--out", full), 2, "is not empty")
    one_line(cli("export", copy, "--round", "1", "--out", copy / "exported"), 2, "inside the run directory")
    assert cli("export", copy, "--round", "1", "--out", full, "--force").exit_code == 0
    assert (full / "mine.txt").read_text() == "keep"


def test_report_refuses_a_folder_holding_something_else(copy, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    one_line(cli("report", copy, "--out", out), 2, "is not empty and does not hold a report of these runs")
    (out / "notes.txt").unlink()
    assert cli("report", copy, "--out", out).exit_code == 0
    assert cli("report", copy, "--out", out).exit_code == 0  # rebuilding the same report


def test_report_of_a_failed_dense_round_says_it_failed(copy):
    rows = storage.read_json(layout.results_json(copy))
    for row in rows:
        if row["round"] == 0:
            row.update(status="failed", error="loss became nan at iteration 20")
    storage.write_json(layout.results_json(copy), rows)
    one_line(cli("report", copy, "--out", copy.parent / "r"), 2, "round 0) failed (loss became nan")


def test_export_of_a_run_without_results_says_no_round_finished(copy, tmp_path):
    for path in list(copy.glob(layout.TRIAL_GLOB)) + [layout.results_csv(copy), layout.results_json(copy)]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    one_line(cli("export", copy, "--round", "0", "--out", tmp_path / "e"), 2, "no round has finished yet")


def test_fewer_rounds_says_finished_rounds_are_left_out(copy, recipe_path, data):
    result = cli("run", recipe_path, "--data", data["v1"], "--rounds", "1", "--out", copy)
    assert result.exit_code == 0, result.output
    assert "note: 1 finished variant(s) of this run directory are outside this command's rounds" in result.output
    assert layout.summary(copy, 0, 1, "ticket").is_file()


# ---- SIGINT / SIGTERM ------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_with_one_line_and_the_run_resumes(tmp_path, data, signum):
    recipe = save_recipe(tmp_path, merge(RECIPE, {"training": {"iterations": 100000, "eval_every": 20}}))
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_lottery", "run", str(recipe), "--data", str(data["v1"]), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    for line in process.stdout:  # training has started
        if "ticket: training" in line:
            break
    time.sleep(1)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and signal.Signals(signum).name in errors[0], stderr
    assert "rerun the same command" in errors[0] and str(out) in errors[0]
    from keras_lottery.rundir import locking

    with locking.hold(out):  # released
        pass


def test_huge_work_shows_its_first_progress_line_at_the_first_evaluation(tmp_path):
    """Ten thousand trials (the most a recipe may ask) of 10^12 iterations: the first evaluation
    is printed when it is made, not after a tenth of the round; nothing iterates over every trial first."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "keras_lottery", "run", "quickstart_digits", "--out", str(tmp_path / "run"),
            "--trials", "10000", "--set", "training.iterations=1000000000000"]
    import threading

    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(180, process.kill)  # without the first line, fail instead of waiting forever
    watchdog.start()
    seen = []
    try:
        for line in process.stdout:
            seen.append(line.rstrip())
            if "iteration 50/1000000000000" in line:
                break
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()
    assert any("trial 0 round 0/9 ticket iteration 50/1000000000000: val loss" in line for line in seen), seen
