"""Run directories made by keras-lottery 0.1.0 stay valid.

``fixtures/v0_1_0/tiny-da046e1e`` was made by 0.1.0 (commit 7f8c75b) running
``fixtures/v0_1_0/tiny.json`` (2 rounds, ticket and random_reinit, on digits); its
TensorBoard and report folders were left out to keep it small.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest

from keras_lottery.config import identity
from keras_lottery.config import recipe as recipes
from keras_lottery.rundir import layout, storage

FIXTURE = Path(__file__).parent / "fixtures" / "v0_1_0"
OLD_NAME = "tiny-da046e1e"


def _finished(run_dir):
    return {p.relative_to(run_dir).as_posix(): p.stat().st_mtime_ns
            for p in Path(run_dir).glob(f"{layout.TRIAL_GLOB}/*/*/{layout.SUMMARY}")}


@pytest.fixture
def old_runs(tmp_path, monkeypatch):
    """A copy of the 0.1.0 run under ``runs/`` of a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURE / OLD_NAME, tmp_path / "runs" / OLD_NAME)
    return tmp_path / "runs" / OLD_NAME


def test_the_old_hash_is_still_computed():
    recipe = recipes.load(FIXTURE / "tiny.json")
    assert identity.legacy_hash(recipe) == OLD_NAME.split("-")[1]


def test_an_old_run_directory_is_found_by_its_old_name_and_resumed(old_runs):
    from keras_lottery import lottery

    before = _finished(old_runs)
    assert len(before) == 3
    recipe = recipes.load(FIXTURE / "tiny.json", rounds=3)
    lines = []
    run_dir, rows = lottery.run(recipe, log=lines.append)
    assert Path(run_dir).resolve() == old_runs.resolve()
    assert {k: v for k, v in _finished(old_runs).items() if k in before} == before  # nothing redone
    assert {(row["round"], row["variant"]) for row in rows} == {
        (0, "ticket"), (1, "ticket"), (1, "random_reinit"), (2, "ticket"), (2, "random_reinit")}
    assert not any("training" in line and "round 0/" in line for line in lines)
    saved = storage.read_json(layout.identity_file(old_runs))  # adopted: from now on guarded by content
    assert saved["identity"]["data"] and saved["identity"]["recipe"]["model"] == {"name": "mlp", "hidden": [16]}


def test_the_refactored_package_trains_an_old_round_again_bit_for_bit(old_runs):
    from keras_lottery import lottery

    for variant in ("ticket", "random_reinit"):
        layout.summary(old_runs, 0, 1, variant).unlink()
        layout.final(old_runs, 0, 1, variant).unlink()
    layout.mask(old_runs, 0, 1, "ticket").unlink()  # the ticket's mask is computed again too
    lottery.run(recipes.load(FIXTURE / "tiny.json"), log=lambda _: None)
    for variant in ("ticket", "random_reinit"):
        for name in (layout.MASK, layout.FINAL):
            made_by_0_1_0 = storage.load_arrays(FIXTURE / OLD_NAME / layout.variant_dir("", 0, 1, variant) / name)
            now = storage.load_arrays(layout.variant_dir(old_runs, 0, 1, variant) / name)
            assert made_by_0_1_0.keys() == now.keys()
            for key in now:
                assert np.array_equal(now[key], made_by_0_1_0[key]), (variant, name, key)
        assert storage.read_json(layout.summary(old_runs, 0, 1, variant))["early_stop_test_accuracy"] == \
            storage.read_json(FIXTURE / OLD_NAME / layout.variant_dir("", 0, 1, variant) / layout.SUMMARY)[
                "early_stop_test_accuracy"]


def test_another_recipe_is_refused_in_an_old_run_directory(old_runs):
    from keras_lottery import lottery

    other = recipes.load(FIXTURE / "tiny.json", overrides=("training.learning_rate=0.01",))
    before = sorted(p.name for p in old_runs.iterdir())
    with pytest.raises(lottery.RunDirError, match="different recipe"):
        lottery.run(other, old_runs, log=lambda _: None)
    assert sorted(p.name for p in old_runs.iterdir()) == before


def test_a_run_pruned_by_another_rule_is_refused_and_left_as_it_was(tmp_path):
    """A run whose masks prune other weights than this version would for its model (0.3 left
    the layers inside a custom layer dense) is not continued by the new rule: one line, and
    its files are left as they were."""
    from conftest import TINY, merge
    from keras_lottery import lottery
    from keras_lottery.errors import UsageError

    recipe = recipes.parse(merge(TINY, {"pruning": {"rounds": 2}, "controls": [], "training": {"iterations": 20}}))
    run_dir, _ = lottery.run(recipe, tmp_path / "run", log=lambda _: None)
    dropped = sorted(storage.load_arrays(layout.mask(run_dir, 0, 1, "ticket")))[0]
    for round_index in (0, 1):  # the masks as a rule that left `dropped` dense would have saved them
        path = layout.mask(run_dir, 0, round_index, "ticket")
        storage.save_arrays(path, {unit: m for unit, m in storage.load_arrays(path).items() if unit != dropped})
    before = {path: path.read_bytes() for path in run_dir.glob("trial_*/**/*") if path.is_file()}
    with pytest.raises(UsageError, match=rf"pruned by another rule .*it would also prune {dropped}.*new --out") as err:
        lottery.run(recipe, run_dir, log=lambda _: None)
    assert "\n" not in str(err.value)
    assert {path: path.read_bytes() for path in run_dir.glob("trial_*/**/*") if path.is_file()} == before
