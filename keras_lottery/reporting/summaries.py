"""TensorBoard event files: training curves, per-layer sparsity, results across rounds.

Layout under ``<run>/tensorboard/``:
- ``trial_<t>/round_<rr>/<variant>``: ``loss/*`` and ``accuracy/*`` by iteration;
- ``trial_<t>/sparsity``: ``sparsity/<layer>`` and ``weights_remaining`` by round;
- ``trial_<t>/weights``: histograms of the ticket's surviving weights at the start of
  each round and after training, by round (written by the report);
- ``rounds/<variant>``: ``rounds/*`` by round, and ``by_remaining/*`` whose step is
  the percent of weights remaining times 10 (so 1000 is the dense network).
"""

import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from keras_lottery.backend import tf
from keras_lottery.pruning import units
from keras_lottery.rundir import layout


def _writer(path):
    return tf.summary.create_file_writer(str(path))


def write_curve(run_dir, trial, round_index, variant, curve):
    writer = _writer(layout.tensorboard_variant(run_dir, trial, round_index, variant))
    with writer.as_default():
        for row in curve:
            step = row["iteration"]
            tf.summary.scalar("loss/train", row["train_loss"], step=step)
            tf.summary.scalar("loss/validation", row["val_loss"], step=step)
            tf.summary.scalar("loss/test", row["test_loss"], step=step)
            tf.summary.scalar("accuracy/train", row["train_accuracy"], step=step)
            tf.summary.scalar("accuracy/validation", row["val_accuracy"], step=step)
            tf.summary.scalar("accuracy/test", row["test_accuracy"], step=step)
    writer.close()


def write_sparsity(run_dir, trial, round_index, sparsity, weights_remaining):
    writer = _writer(layout.tensorboard(run_dir, layout.trial_name(trial), "sparsity"))
    with writer.as_default():
        for layer, value in sparsity.items():
            tf.summary.scalar(f"sparsity/{layer}", value, step=round_index)
        tf.summary.scalar("weights_remaining", weights_remaining, step=round_index)
    writer.close()


def write_rounds(run_dir, rows):
    """Rewrite the across-round scalars from the results rows (means over trials)."""
    root = layout.tensorboard(run_dir, "rounds")
    shutil.rmtree(root, ignore_errors=True)
    groups = defaultdict(list)
    for row in rows:
        groups[(row["variant"], row["round"])].append(row)
    for variant in sorted({variant for variant, _ in groups}):
        writer = _writer(root / variant)
        with writer.as_default():
            for (name, round_index), found in sorted(groups.items()):
                if name != variant:
                    continue
                remaining = float(np.mean([r["weights_remaining"] for r in found]))
                values = {
                    "weights_remaining": remaining,
                    "early_stop_iteration": float(np.mean([r["early_stop_iteration"] for r in found])),
                    "early_stop_test_accuracy": float(np.mean([r["early_stop_test_accuracy"] for r in found])),
                    "final_test_accuracy": float(np.mean([r["final_test_accuracy"] for r in found])),
                }
                for tag, value in values.items():
                    tf.summary.scalar(f"rounds/{tag}", value, step=round_index)
                    if tag != "weights_remaining":
                        tf.summary.scalar(f"by_remaining/{tag}", value, step=int(round(remaining * 10)))
        writer.close()


def write_weights(run_dir, recipe=None):
    """Rewrite ``trial_<t>/weights``: per round (the step) and pruned layer, histograms of
    the ticket's surviving weights where training starts (``weights_at_init/<layer>``: the
    weights the round really started from, as ``recipe``'s rewinding mode says: m ⊙ θ0, or
    m ⊙ θk when rewinding to iteration k; the source round's trained weights for
    ``learning_rate`` and ``finetune``) and after training (``weights_trained/<layer>``).
    ``recipe`` is the run's (a dict or a Recipe; without one, weight rewinding). Rounds
    without mask.npz and final.npz, or whose start weights are not on disk, are skipped."""
    from keras_lottery.config.recipe import Recipe, parse
    from keras_lottery.lottery.variants import TICKET
    from keras_lottery.rundir import storage

    recipe = recipe if isinstance(recipe, Recipe) else parse(recipe) if recipe else None
    for trial_dir in sorted(Path(run_dir).glob(layout.TRIAL_GLOB)):
        trial = layout.trial_of(trial_dir)
        tensorboard = layout.tensorboard(run_dir, trial_dir.name, "weights")
        shutil.rmtree(tensorboard, ignore_errors=True)
        writer = None
        for round_dir in sorted(trial_dir.glob(layout.ROUND_GLOB)):
            round_index = layout.round_of(round_dir)
            files = (layout.mask(run_dir, trial, round_index, TICKET), layout.final(run_dir, trial, round_index, TICKET))
            if not all(p.is_file() for p in files):
                continue
            masks, trained = (storage.load_arrays(p) for p in files)
            try:
                start = _start_weights(recipe, run_dir, trial, round_index)
            except FileNotFoundError:
                continue
            writer = writer or _writer(tensorboard)
            with writer.as_default():
                for layer, mask in masks.items():
                    kept = mask.astype(bool)
                    tf.summary.histogram(f"weights_at_init/{layer}", start[units.weight_key(layer, start)][kept], step=round_index)
                    tf.summary.histogram(f"weights_trained/{layer}", trained[units.weight_key(layer, trained)][kept], step=round_index)
        if writer is not None:
            writer.close()


def _start_weights(recipe, run_dir, trial, round_index):
    """The weights round ``round_index``'s ticket started from (before masking)."""
    from keras_lottery.lottery.rounds import Round
    from keras_lottery.rundir import storage

    if recipe is None:  # no recipe to read the rewinding mode from: weight rewinding
        return storage.load_arrays(layout.start_file(run_dir, trial, round_index))
    return Round(recipe, run_dir, trial, round_index, None, None, None).rewound_weights()
