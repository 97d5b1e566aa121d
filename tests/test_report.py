"""The report: tables checked against hand-written results, figures, TensorBoard tags, CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY, merge
from keras_lottery.reporting import report
from keras_lottery import results
from keras_lottery.rundir import layout, storage
from keras_lottery.cli import main

PNG_HEADER = b"\x89PNG\r\n\x1a\n"
LAYERS = {"dense_a": (6, 4), "logits": (4, 3)}
# (round, variant) -> % remaining, early-stop iterations of trials 0 and 1, accuracies of trials 0 and 1
RESULTS = {
    (0, "ticket"): (100.0, (300, 500), (0.95, 0.97)),
    (1, "ticket"): (51.2345, (100, 200), (0.97, 0.98)),
    (1, "random_reinit"): (51.2345, (400, 600), (0.90, 0.94)),
    (1, "random_prune"): (51.2345, (200, 200), (0.975, 0.975)),
    (2, "ticket"): (26.25, (200, 400), (0.93, 0.95)),
    (2, "random_reinit"): (26.25, (600, 600), (0.80, 0.82)),
    (2, "random_prune"): (26.25, (300, 500), (0.96, 0.98)),
}


def _curve(final_accuracy):
    return [
        {"iteration": i, "train_loss": 1.0 / i, "train_accuracy": 0.5, "val_loss": 1.0 / i,
         "val_accuracy": 0.5, "test_loss": 1.0 / i, "test_accuracy": final_accuracy * i / 600}
        for i in (100, 200, 300, 400, 500, 600)
    ]


def _masks(keep):
    rng = np.random.default_rng(int(keep * 100))
    return {name: (rng.random(shape) < keep / 100).astype(np.float32) for name, shape in LAYERS.items()}


def _weights(seed):
    rng = np.random.default_rng(seed)
    return {f"{name}/kernel": rng.normal(size=shape).astype(np.float32) for name, shape in LAYERS.items()}


def make_run(path, name="handmade", csv_only=False):
    """A run directory written by hand: 2 trials, rounds 0-2, ticket and both controls."""
    rows = []
    for (round_index, variant), (remaining, iterations, accuracies) in RESULTS.items():
        for trial in (0, 1):
            rows.append({
                "trial": trial, "round": round_index, "variant": variant, "weights_remaining": remaining,
                "early_stop_iteration": iterations[trial], "early_stop_test_accuracy": accuracies[trial],
                "final_test_accuracy": accuracies[trial] - 0.01, "best_val_loss": 0.1,
            })
            out = layout.variant_dir(path, trial, round_index, variant)
            storage.write_csv(out / "curve.csv", _curve(accuracies[trial]), results.CURVE_COLUMNS)
            if variant == "ticket":
                storage.save_arrays(out / "mask.npz", _masks(remaining))
                storage.save_arrays(out / "final.npz", _weights(10 + round_index))
    for trial in (0, 1):
        storage.save_arrays(layout.trial_dir(path, trial) / "init.npz", _weights(0))
        storage.save_arrays(layout.trial_dir(path, trial) / "rewind.npz", _weights(0))
    storage.write_json(path / "recipe.json", merge(TINY, {"name": name, "trials": 2}))
    if csv_only:
        storage.write_csv(path / "results.csv", rows, results.COLUMNS)
    else:
        storage.write_json(path / "results.json", rows)
    return path


def section(text, title):
    """The table lines under the markdown heading ``title``."""
    lines = text.split(f"\n{title}\n", 1)[1].split("\n#", 1)[0].strip().splitlines()
    return [line for line in lines if line.startswith("|")]


def cells(line):
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.mark.parametrize("csv_only", [False, True], ids=["results.json", "results.csv"])
def test_tables_match_results(tmp_path, csv_only):
    run = make_run(tmp_path / "run", csv_only=csv_only)
    text = report.write([run], tensorboard=False).read_text()

    dense = section(text, "### Dense network (round 0)")
    assert cells(dense[2]) == ["100.0", "2", "400", "300", "500", "0.9600", "0.9500", "0.9700", "-"]  # no start accuracy in these rows

    ticket = section(text, "### ticket")
    assert [cells(line) for line in ticket[2:]] == [
        ["1", "51.2", "2", "150", "100", "200", "0.9750", "0.9700", "0.9800", "-"],
        ["2", "26.2", "2", "300", "200", "400", "0.9400", "0.9300", "0.9500", "-"],
    ]
    reinit = section(text, "### random_reinit")
    assert cells(reinit[3]) == ["2", "26.2", "2", "600", "600", "600", "0.8100", "0.8000", "0.8200", "-"]

    verdicts = section(text, "### Does the ticket win?")
    assert cells(verdicts[0])[3:6] == ["beats dense (acc)", "beats random_reinit (acc)", "beats random_prune (acc)"]
    # round 1: 0.975 vs dense 0.96, reinit 0.92, prune 0.975; ES 150 vs 400, 500, 200
    assert cells(verdicts[2]) == [
        "1", "51.2", "0.9750", "yes (+1.50 pp)", "yes (+5.50 pp)", "tie (+0.00 pp)",
        "yes (150 vs 400)", "yes (150 vs 500)", "yes (150 vs 200)",
    ]
    # round 2: 0.94 vs 0.96, 0.81, 0.97
    assert cells(verdicts[3])[3:6] == ["no (-2.00 pp)", "yes (+13.00 pp)", "no (-3.00 pp)"]


def test_figures_are_pngs_and_runs_share_them(tmp_path):
    first, second = make_run(tmp_path / "a", name="iterative"), make_run(tmp_path / "b", name="oneshot")
    single = report.write([first], tensorboard=False)
    assert single == first / "report" / "report.md"
    several = report.write([first, second], tmp_path / "both", chosen_rounds=[0, 2], tensorboard=False)
    text = several.read_text()
    assert "## iterative" in text and "## oneshot" in text
    for out in (first / "report", tmp_path / "both"):
        for name in ("early_stop_iteration.png", "test_accuracy.png", "training_curves.png"):
            data = (out / name).read_bytes()
            assert data.startswith(PNG_HEADER) and len(data) > 10_000, name
            assert f"]({name})" in (out / "report.md").read_text()


def _events(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"tensors": 0})
    events.Reload()
    return events


def test_tensorboard_scalars_and_surviving_weight_histograms(tmp_path):
    from keras_lottery.backend import tf

    run = make_run(tmp_path / "run")
    report.write([run])
    rounds = _events(run / "tensorboard" / "rounds" / "ticket")
    tags = set(rounds.Tags()["tensors"])
    for tag in ("early_stop_test_accuracy", "early_stop_iteration", "weights_remaining"):
        assert f"rounds/{tag}" in tags
    assert {"by_remaining/early_stop_test_accuracy", "by_remaining/early_stop_iteration"} <= tags
    accuracy = {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in rounds.Tensors("rounds/early_stop_test_accuracy")}
    assert accuracy == pytest.approx({0: 0.96, 1: 0.975, 2: 0.94})

    weights = _events(run / "tensorboard" / "trial_1" / "weights")
    for layer in LAYERS:
        for kind in ("weights_at_init", "weights_trained"):
            events = weights.Tensors(f"{kind}/{layer}")
            assert [e.step for e in events] == [0, 1, 2]
            for event in events:  # histogram buckets (left, right, count) count the survivors only
                kept = _masks(RESULTS[(event.step, "ticket")][0])[layer].sum()
                assert tf.make_ndarray(event.tensor_proto)[:, 2].sum() == kept
    report.write([run])  # rewriting does not duplicate events
    assert len(_events(run / "tensorboard" / "trial_1" / "weights").Tensors("weights_trained/logits")) == 3


@pytest.mark.parametrize("mode", ["weights", "learning_rate", "finetune"])
def test_weights_at_init_show_the_weights_each_round_really_started_from(tmp_path, mode):
    """θ0 (θk) when rewinding weights; the previous round's trained weights when the
    survivors keep them (learning-rate rewinding and fine-tuning, iterative pruning)."""
    from keras_lottery.backend import tf

    run = make_run(tmp_path / "run")
    storage.write_json(run / "recipe.json", merge(TINY, {"name": "handmade", "trials": 2, "rewind": {"mode": mode}}))
    report.write([run])
    weights = _events(run / "tensorboard" / "trial_1" / "weights")
    for layer in LAYERS:
        events = weights.Tensors(f"weights_at_init/{layer}")
        assert [e.step for e in events] == [0, 1, 2]
        for event in events:
            start = _weights(0) if mode == "weights" or event.step == 0 else _weights(10 + event.step - 1)
            kept = start[f"{layer}/kernel"][_masks(RESULTS[(event.step, "ticket")][0])[layer].astype(bool)]
            buckets = tf.make_ndarray(event.tensor_proto)  # (left, right, count): the range is min..max
            assert (buckets[0, 0], buckets[-1, 1]) == pytest.approx((kept.min(), kept.max()), abs=1e-6)


def test_bad_input_is_one_line_error(tmp_path):
    runner = CliRunner()
    first, second = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(main, ["report", str(empty)])
    assert result.exit_code == 2 and "has no results.json or results.csv" in result.output
    result = runner.invoke(main, ["report", str(first), str(second)])
    assert result.exit_code == 2 and "pass --out DIR" in result.output
    result = runner.invoke(main, ["report", str(first), "--curve-rounds", "0,7"])
    assert result.exit_code == 2 and "--curve-rounds 7: no finished round" in result.output
    result = runner.invoke(main, ["report", str(first), "--curve-rounds", "zero"])
    assert result.exit_code == 2 and "expected round numbers" in result.output
    (first / "results.json").write_text("[{")
    result = runner.invoke(main, ["report", str(first)])
    assert result.exit_code == 2 and "is not valid JSON" in result.output


def test_run_writes_report_and_report_command_reads_it(tmp_path, write_recipe):
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(main, ["run", str(write_recipe(TINY)), "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert f"report: {run / 'report' / 'report.md'}" in result.output
    rows = json.loads((run / "results.json").read_text())
    text = (run / "report" / "report.md").read_text()
    for row in rows:
        if row["round"] > 0:
            line = next(line for line in section(text, f"### {row['variant']}") if line.startswith(f"| {row['round']} |"))
            assert cells(line)[1] == f"{row['weights_remaining']:.1f}"
            assert cells(line)[3] == str(row["early_stop_iteration"])
            assert cells(line)[6] == f"{row['early_stop_test_accuracy']:.4f}"

    out = tmp_path / "again"
    result = runner.invoke(main, ["report", str(run), "--out", str(out), "--curve-rounds", "0,2"])
    assert result.exit_code == 0, result.output
    assert (out / "training_curves.png").read_bytes().startswith(PNG_HEADER)
    sparsity = set(_events(run / "tensorboard" / "trial_0" / "sparsity").Tags()["tensors"])
    assert {"sparsity/fc1", "sparsity/fc2", "sparsity/output", "weights_remaining"} <= sparsity
    weights = set(_events(run / "tensorboard" / "trial_0" / "weights").Tags()["tensors"])
    assert {"weights_at_init/fc1", "weights_trained/output"} <= weights


def test_diverged_run_reports_its_finished_rounds(tmp_path, write_recipe, tiny_recipe, monkeypatch):
    from keras_lottery import lottery
    from keras_lottery.training import DivergedError

    calls = []
    train = lottery.experiment.training.train

    def diverge_in_round_2(*args, **kwargs):  # calls: round 0 ticket, round 1 ticket + reinit, round 2
        calls.append(1)
        if len(calls) == 4:
            raise DivergedError("loss became nan at iteration 20")
        return train(*args, **kwargs)

    monkeypatch.setattr(lottery.experiment.training, "train", diverge_in_round_2)
    run = tmp_path / "run"
    recipe = write_recipe(tiny_recipe(controls=["random_reinit"]))
    result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(run)])
    assert result.exit_code == 1 and "1 of 5 variants failed" in result.output
    assert f"report: {run / 'report' / 'report.md'}" in result.output
    text = (run / "report" / "report.md").read_text()
    ticket = section(text, "### ticket")
    assert [cells(line)[0] for line in ticket[2:]] == ["1"]
    failed = section(text, "### Failed (left out of the tables and figures)")
    assert [cells(line)[:3] for line in failed[2:]] == [["0", "2", "ticket"]]
