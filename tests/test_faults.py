"""Faults inside a run, in-process: damaged files are redone, unreadable checkpoints are
skipped, a failed ticket stops only the rounds pruned from it."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import TINY, merge, save_recipe
from keras_lottery.lottery import checkpoints
from keras_lottery.rundir import locking, layout, storage
from keras_lottery import training
from keras_lottery.cli import main

RECIPE = merge(TINY, {
    "training": {"iterations": 60, "eval_every": 20, "checkpoint_every": 20},
    "pruning": {"rounds": 2},
    "controls": ["random_reinit"],
})


def run(recipe_path, out, *extra):
    return CliRunner().invoke(main, ["run", str(recipe_path), "--out", str(out), *extra])


def results(out):
    return {(r["round"], r["variant"]): r for r in storage.read_json(Path(out) / "results.json")}


def same(rows, expected):
    assert set(rows) == set(expected)
    for key, row in rows.items():
        for column in ("weights_remaining", "early_stop_iteration", "early_stop_test_accuracy", "best_val_loss"):
            assert row[column] == pytest.approx(expected[key][column], abs=1e-5), (key, column)


def die_after_checkpoint(monkeypatch, round_index, iteration):
    """Make a run raise Killed right after it saves the checkpoint at ``iteration`` of ``round_index``."""
    save = checkpoints.MidRound.save

    def save_then_die(self, at):
        save(self, at)
        if f"round_{round_index:02d}" in str(self.variant_dir) and at == iteration:
            raise Killed()

    monkeypatch.setattr(checkpoints.MidRound, "save", save_then_die)


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory):
    return save_recipe(tmp_path_factory.mktemp("recipe"), RECIPE, "faults.json")


@pytest.fixture(scope="module")
def reference(recipe_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    result = run(recipe_path, out)
    assert result.exit_code == 0, result.output
    return results(out)


def test_damaged_files_are_reported_and_their_rounds_redone(recipe_path, reference, tmp_path):
    out = tmp_path / "run"
    assert run(recipe_path, out).exit_code == 0
    final = layout.variant_dir(out, 0, 1, "ticket") / "final.npz"
    final.write_bytes(final.read_bytes()[: final.stat().st_size // 2])  # half-written
    (layout.variant_dir(out, 0, 1, "random_reinit") / "summary.json").write_text('{"trial": 0, "rou')
    (layout.trial_dir(out, 0) / "init.npz").write_bytes(b"not an npz")
    dense = layout.variant_dir(out, 0, 0, "ticket") / "summary.json"
    dense_time = dense.stat().st_mtime_ns

    result = run(recipe_path, out)
    assert result.exit_code == 0, result.output
    assert "trial 0 round 1 ticket: final.npz is unreadable (BadZipFile); training it again" in result.output
    assert "trial 0 round 1 random_reinit: summary.json is unreadable (JSONDecodeError); training it again" in result.output
    assert "init.npz is damaged" in result.output
    assert "round 1/1 ticket: training" in result.output and "round 1/1 random_reinit: training" in result.output
    assert "round 0/1 ticket: training" not in result.output
    assert dense.stat().st_mtime_ns == dense_time
    assert storage.load_arrays(final)  # readable again
    same(results(out), reference)


class Killed(BaseException):
    """Stands in for SIGKILL inside the test process."""


@pytest.mark.parametrize("damage", [False, True], ids=["resume", "unreadable-checkpoint"])
def test_resume_from_checkpoint_in_process(recipe_path, reference, tmp_path, monkeypatch, damage):
    out = tmp_path / "run"
    die_after_checkpoint(monkeypatch, round_index=1, iteration=40)
    with pytest.raises(Killed):
        run(recipe_path, out)
    monkeypatch.undo()
    saved = checkpoints.saved(layout.variant_dir(out, 0, 1, "ticket"))
    assert [p.name for p in saved] == ["it_000000040"]  # the older checkpoint was replaced
    if damage:
        (saved[0] / "model.index").write_bytes(b"garbage")

    result = run(recipe_path, out)
    assert result.exit_code == 0, result.output
    if damage:
        assert "is unreadable" in result.output and "ignoring it" in result.output
        assert "resumed from iteration" not in result.output
    else:
        assert "trial 0 round 1/1 ticket: resumed from iteration 40 (mid-round checkpoint)" in result.output
    same(results(out), reference)


@pytest.mark.parametrize("method, round_2_runs", [("iterative", False), ("oneshot", True)])
def test_failed_ticket_stops_only_rounds_pruned_from_it(write_recipe, tmp_path, monkeypatch, method, round_2_runs):
    recipe = merge(RECIPE, {"pruning": {"rounds": 3, "method": method}})
    calls = []
    train = training.train

    def diverge_on_round_1_ticket(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # order: round 0 ticket, round 1 ticket, round 1 random_reinit, ...
            raise training.DivergedError("loss became nan at iteration 20; lower training.learning_rate or add warmup")
        return train(*args, **kwargs)

    monkeypatch.setattr(training, "train", diverge_on_round_1_ticket)
    out = tmp_path / "run"
    result = run(write_recipe(recipe), out)
    assert result.exit_code == 1, result.output
    assert "trial 0 round 1/2 ticket: FAILED, training diverged: loss became nan" in result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 of ")
    status = {key: row["status"] for key, row in results(out).items()}
    expected = {(0, "ticket"): "ok", (1, "ticket"): "failed", (1, "random_reinit"): "ok"}
    if round_2_runs:
        expected.update({(2, "ticket"): "ok", (2, "random_reinit"): "ok"})
    else:
        assert "round 2 skipped: the round 1 ticket they are pruned from failed" in result.output
    assert status == expected
    assert "failed" in result.output  # the table shows it
    assert (layout.variant_dir(out, 0, 0, "ticket") / "final.npz").is_file()


def test_lock_is_released_when_its_holder_ends(tmp_path):
    with locking.hold(tmp_path):
        with pytest.raises(locking.RunLockedError, match="is in use by process"):
            with locking.hold(tmp_path):
                pass
    with locking.hold(tmp_path):  # free again
        pass


def test_resume_after_late_rewind_point_keeps_captured_weights(write_recipe, tmp_path, monkeypatch):
    """Killed in the dense round after θk was captured (k = 20): the rewind weights survive."""
    recipe = write_recipe(merge(RECIPE, {"rewind": {"iteration": 20}}))
    expected_out = tmp_path / "expected"
    assert run(recipe, expected_out).exit_code == 0
    die_after_checkpoint(monkeypatch, round_index=0, iteration=40)
    out = tmp_path / "run"
    with pytest.raises(Killed):
        run(recipe, out)
    monkeypatch.undo()
    assert (checkpoints.saved(layout.variant_dir(out, 0, 0, "ticket"))[0] / "rewind.npz").is_file()
    result = run(recipe, out)
    assert "trial 0 round 0/1 ticket: resumed from iteration 40" in result.output
    rewound, expected = (storage.load_arrays(layout.trial_dir(d, 0) / "rewind.npz") for d in (out, expected_out))
    assert set(rewound) == set(expected)
    assert all((rewound[k] == expected[k]).all() for k in expected)
    same(results(out), results(expected_out))
