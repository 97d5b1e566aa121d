"""Results: one summary row per trial x round x variant, tables and results files."""

from collections import defaultdict

import numpy as np

from keras_lottery.rundir import storage
from keras_lottery.training import early_stop

COLUMNS = (
    "trial",
    "round",
    "variant",
    "weights_remaining",
    "early_stop_iteration",
    "early_stop_test_accuracy",
    "final_test_accuracy",
    "best_val_loss",
    "status",
)
CURVE_COLUMNS = (
    "iteration", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
)


def summarize(trial, round_index, variant, weights_remaining, curve):
    best = early_stop(curve)
    return {
        "trial": trial,
        "round": round_index,
        "variant": variant,
        "weights_remaining": round(weights_remaining, 4),
        "early_stop_iteration": best["iteration"],
        "early_stop_test_accuracy": best["test_accuracy"],
        "final_test_accuracy": curve[-1]["test_accuracy"],
        "best_val_loss": best["val_loss"],
        "status": "ok",
    }


def collect(run_dir, recipe):
    """Summary rows of every finished trial/round/variant the recipe asks for."""
    rows = []
    for trial in range(recipe.trials):
        for round_index in range(recipe.pruning.rounds):
            for variant in recipe.variants if round_index else ("ticket",):
                path = storage.variant_dir(run_dir, trial, round_index, variant) / "summary.json"
                if path.is_file():
                    rows.append(storage.read_json(path))
    return rows


def write(run_dir, rows):
    storage.write_csv(run_dir / "results.csv", rows, COLUMNS)
    storage.write_json(run_dir / "results.json", rows)


def table(rows, variants):
    """The end-of-run table: per round, % remaining and each variant's early-stop
    iteration and test accuracy (means over trials)."""
    by_key = defaultdict(list)
    failed = {(row["round"], row["variant"]) for row in rows if row.get("status") == "failed"}
    for row in rows:
        if row.get("status", "ok") == "ok":
            by_key[(row["round"], row["variant"])].append(row)
    rounds = sorted({row["round"] for row in rows})
    header = f"{'round':>5} {'remaining':>9}"
    for variant in variants:
        header += f" | {variant + ' ES iter':>20} {'test acc':>8}"
    lines = [header, "-" * len(header)]
    for round_index in rounds:
        remaining = [r["weights_remaining"] for r in rows if r["round"] == round_index and r["variant"] == "ticket"]
        if not remaining:
            continue
        line = f"{round_index:>5} {np.mean(remaining):>8.1f}%"
        for variant in variants:
            found = by_key.get((round_index, variant)) or (by_key[(round_index, "ticket")] if round_index == 0 else [])
            if found:
                iteration = np.mean([r["early_stop_iteration"] for r in found])
                accuracy = np.mean([r["early_stop_test_accuracy"] for r in found])
                line += f" | {iteration:>20.0f} {accuracy:>8.4f}"
            elif (round_index, variant) in failed or (round_index == 0 and (0, "ticket") in failed):
                line += f" | {'failed':>20} {'-':>8}"
            else:
                line += f" | {'-':>20} {'-':>8}"
        lines.append(line)
    return "\n".join(lines)
