"""Results: one row per trial x round x variant, its schema, and the results files.

:data:`SCHEMA` is the one definition of a results row: its columns, in order, and their
types. A finished variant's ``summary.json`` holds its row; ``results.csv`` and
``results.json`` hold the rows of every finished variant a recipe asks for. A variant
whose training diverged has ``status`` ``failed``, no accuracies and an ``error``
(see :mod:`keras_lottery.lottery.failures`).
"""

from collections import defaultdict

import numpy as np

from keras_lottery.lottery import rounds, variants
from keras_lottery.rundir import layout, storage

OK = "ok"
FAILED = "failed"

SCHEMA = {
    "trial": int,
    "round": int,
    "variant": str,
    "weights_remaining": float,
    # multiply-accumulates of one forward pass, percent of the dense network's (keras_lottery.costs)
    "flops_remaining": float,
    "early_stop_iteration": int,
    "early_stop_test_accuracy": float,
    "final_test_accuracy": float,
    "best_val_loss": float,
    "status": str,
    "start_test_accuracy": float,  # the network a variant starts from, before any update
    "start_test_loss": float,
}
COLUMNS = tuple(SCHEMA)
# Columns added after results were first written: rows without them (older run
# directories, or an empty CSV cell) load with None there.
ADDED = ("start_test_accuracy", "start_test_loss", "flops_remaining")
# Columns a failed row leaves empty.
MEASURED = ("early_stop_iteration", "early_stop_test_accuracy", "final_test_accuracy", "best_val_loss")
CURVE_COLUMNS = (
    "iteration", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
)


class RowError(ValueError):
    """A results row that does not fit :data:`SCHEMA`."""


def early_stop(curve):
    """The curve row with the lowest validation loss (the paper's early-stopping point)."""
    return min(curve, key=lambda row: (row["val_loss"], row["iteration"]))


def status(row):
    """``ok`` or ``failed``; rows written without a status (an empty CSV cell) are ``ok``."""
    return row.get("status") or OK


def _start_columns(start):
    start = start or {}
    return {"start_test_accuracy": start.get("test_accuracy"), "start_test_loss": start.get("test_loss")}


def _rounded(value):
    return None if value is None else round(value, 4)


def finished_row(trial, round_index, variant, weights_remaining, curve, start=None, flops_remaining=None):
    """The row of a variant that trained to the end: early stop and final accuracy, and
    (``start``: test_loss and test_accuracy) the accuracy before training."""
    best = early_stop(curve)
    return {
        "trial": trial,
        "round": round_index,
        "variant": variant,
        "weights_remaining": round(weights_remaining, 4),
        "flops_remaining": _rounded(flops_remaining),
        "early_stop_iteration": best["iteration"],
        "early_stop_test_accuracy": best["test_accuracy"],
        "final_test_accuracy": curve[-1]["test_accuracy"],
        "best_val_loss": best["val_loss"],
        "status": OK,
        **_start_columns(start),
    }


def failed_row(trial, round_index, variant, weights_remaining, curve, error, start=None, flops_remaining=None):
    """The row of a variant that diverged: no accuracies after training, and the reason."""
    row = {
        "trial": trial, "round": round_index, "variant": variant,
        "weights_remaining": round(weights_remaining, 4), "flops_remaining": _rounded(flops_remaining),
        "status": FAILED, **_start_columns(start),
    }
    row.update({column: None for column in MEASURED})
    row.update({"error": str(error), "failed_after_evaluations": len(curve)})
    return {column: row[column] for column in (*COLUMNS, "error", "failed_after_evaluations")}


def typed(row):
    """``row`` (from JSON or CSV text) with every column of :data:`SCHEMA` of its type.

    Raises :class:`RowError` naming the column that is missing or of the wrong type.
    """
    if not isinstance(row, dict):
        raise RowError(f"a results row must be an object, got {type(row).__name__}")
    result = dict(row)
    failed = status(row) == FAILED
    for column, kind in SCHEMA.items():
        if column == "status":
            result[column] = status(row)
            continue
        if column in ADDED and row.get(column) in (None, ""):
            result[column] = None
            continue
        if column not in row:
            raise RowError(f"column '{column}' is missing")
        value = row[column]
        if failed and column in MEASURED and value in (None, ""):
            result[column] = None
            continue
        try:
            if kind is int and isinstance(value, str):
                value = float(value)
            if isinstance(value, bool) or (kind is int and float(value) != int(float(value))):
                raise ValueError
            result[column] = kind(value) if kind is not int else int(float(value))
        except (TypeError, ValueError):
            raise RowError(f"column '{column}' holds {value!r}, not {kind.__name__}") from None
    if result["status"] not in (OK, FAILED):
        raise RowError(f"column 'status' holds {result['status']!r}, not '{OK}' or '{FAILED}'")
    return result


def collect(run_dir, recipe):
    """Rows of every finished trial/round/variant the recipe asks for."""
    rows = []
    for trial in layout.trials_present(run_dir, recipe.trials):
        for round_index in range(recipe.pruning.rounds):
            for variant in rounds.variants_of_round(recipe, round_index):
                path = layout.summary(run_dir, trial, round_index, variant)
                if path.is_file():
                    rows.append(storage.read_json(path))
    return rows


def write(run_dir, rows):
    storage.write_csv(layout.results_csv(run_dir), rows, COLUMNS)
    storage.write_json(layout.results_json(run_dir), rows)


def table(rows, variant_names):
    """The end-of-run table: per round, % remaining and each variant's early-stop
    iteration, test accuracy there, and the test accuracy of the network it started from,
    before any update (means over trials; ``-`` for rows written before start accuracy was
    recorded). Round 0 is the dense network, shown in every column."""
    ticket = variants.TICKET
    by_key = defaultdict(list)
    failed = {(row["round"], row["variant"]) for row in rows if status(row) == FAILED}
    for row in rows:
        if status(row) == OK:
            by_key[(row["round"], row["variant"])].append(row)
    round_numbers = sorted({row["round"] for row in rows})
    header = f"{'round':>5} {'remaining':>9}"
    for variant in variant_names:
        header += f" | {variant + ' ES iter':>20} {'test acc':>8} {'start acc':>9}"
    lines = [header, "-" * len(header)]
    for round_index in round_numbers:
        remaining = [r["weights_remaining"] for r in rows if r["round"] == round_index and r["variant"] == ticket]
        if not remaining:
            continue
        line = f"{round_index:>5} {np.mean(remaining):>8.1f}%"
        for variant in variant_names:
            shown = ticket if round_index == 0 else variant
            found = by_key.get((round_index, shown))
            if found:
                iteration = np.mean([r["early_stop_iteration"] for r in found])
                accuracy = np.mean([r["early_stop_test_accuracy"] for r in found])
                starts = [r["start_test_accuracy"] for r in found if r.get("start_test_accuracy") is not None]
                start = f"{np.mean(starts):>9.4f}" if starts else f"{'-':>9}"
                line += f" | {iteration:>20.0f} {accuracy:>8.4f} {start}"
            elif (round_index, shown) in failed:
                line += f" | {'failed':>20} {'-':>8} {'-':>9}"
            else:
                line += f" | {'-':>20} {'-':>8} {'-':>9}"
        lines.append(line)
    return "\n".join(lines)


# ---- a variant's result files --------------------------------------------------------


def class_accuracy(predictions, labels, num_classes=None):
    """Test accuracy of each class (NaN for a class without test examples)."""
    labels = np.asarray(labels).astype(np.int64)
    num_classes = int(num_classes or labels.max() + 1)
    correct = np.bincount(labels, weights=np.asarray(predictions) == labels, minlength=num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return correct / counts


def compact(predictions, num_classes):
    """Predicted classes in the smallest unsigned integer type that holds them."""
    dtype = np.uint8 if num_classes <= 2**8 else np.uint16 if num_classes <= 2**16 else np.uint32
    return np.asarray(predictions).astype(dtype)


def save_predictions(path, iteration, predictions, labels):
    """A variant's test predictions at its early stop, their iteration and per-class accuracy."""
    num_classes = int(max(np.max(labels), np.max(predictions)) + 1)
    storage.save_arrays(path, {
        "iteration": np.int64(iteration),
        "predictions": compact(predictions, num_classes),
        "class_accuracy": class_accuracy(predictions, labels, num_classes),
    })


def save_outputs(run_dir, plan, outcome, flops_remaining=None, labels=None):
    """Write a trained variant's mask, trained weights, curve and (with the test ``labels``,
    when known) its test predictions at early stop; return its row.

    The row is written by :func:`mark_finished`, last, so a variant counts as finished
    only once every file it needs is in place.
    """
    key = (run_dir, plan.trial, plan.round, plan.variant)
    storage.save_arrays(layout.mask(*key), plan.masks)
    storage.save_arrays(layout.final(*key), outcome.weights)
    storage.write_csv(layout.curve(*key), outcome.curve, CURVE_COLUMNS)
    predictions = getattr(outcome, "predictions", None)
    if predictions is not None and labels is not None and len(predictions[1]) == len(labels):
        save_predictions(layout.predictions(*key), predictions[0], predictions[1], labels)
    elif layout.predictions(*key).is_file():  # left by an earlier training of this variant
        layout.predictions(*key).unlink()
    row = finished_row(plan.trial, plan.round, plan.variant, plan.weights_remaining, outcome.curve, outcome.start,
                       flops_remaining)
    row["seconds"] = round(outcome.seconds, 2)
    return row


def save_failed(run_dir, plan, failure, flops_remaining=None):
    """Record a diverged variant: its curve so far and a failed row; return the row."""
    key = (run_dir, plan.trial, plan.round, plan.variant)
    storage.write_csv(layout.curve(*key), failure.curve, CURVE_COLUMNS)
    row = failed_row(plan.trial, plan.round, plan.variant, plan.weights_remaining, failure.curve, failure.error,
                     getattr(failure, "start", None), flops_remaining)
    row["seconds"] = round(failure.seconds, 2)
    mark_finished(run_dir, plan, row)
    return row


def mark_finished(run_dir, plan, row):
    storage.write_json(layout.summary(run_dir, plan.trial, plan.round, plan.variant), row)
