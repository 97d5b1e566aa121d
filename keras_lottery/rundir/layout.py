"""The run directory's layout: the one module that knows every file name in it.

::

    <run>/
        recipe.json                       the resolved recipe
        identity.json                     what the results depend on: recipe fields and data fingerprint
        model.json                        input shape and classes (for export)
        results.csv, results.json         one row per trial x round x variant
        test_labels.npz                   the test set's labels, in evaluation order (0.2+)
        trial_<t>/init.npz                θ0
        trial_<t>/rewind.npz              θk (weights pruned rounds rewind to)
        trial_<t>/round_<rr>/<variant>/   mask.npz, final.npz, curve.csv, summary.json;
                                          predictions.npz (0.2+: test predictions at early stop);
                                          checkpoints/ while the variant trains
        analyses/<analysis>/              one folder per analysis (see keras_lottery.analyses)
        export/benchmark.json             `export --format tflite --benchmark`: dense vs ticket in LiteRT
        report/                           report.md and figures
        tensorboard/                      event files
        .lock                             shared by the workers training here; an analysis holds it alone
        .claims/                          one file per training a worker has claimed (see rundir.claims),
                                          and shared.lock, held while a worker rewrites the shared files

A variant's ``summary.json`` is written last: its presence marks the variant finished.
"""

from pathlib import Path

RECIPE = "recipe.json"
IDENTITY = "identity.json"
MODEL = "model.json"
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
LOCK = ".lock"
CLAIMS = ".claims"
SHARED_LOCK = "shared.lock"  # inside .claims/: held while results.csv/json and round summaries are rewritten
REPORT = "report"
TENSORBOARD = "tensorboard"
ANALYSES = "analyses"
ANALYSIS_OPTIONS = "options.json"  # inside analyses/<analysis>/
EXPORT = "export"
EXPORT_BENCHMARK = "benchmark.json"  # inside export/ (keras_lottery.export_tflite)

INIT = "init.npz"
REWIND = "rewind.npz"
MASK = "mask.npz"
FINAL = "final.npz"
CURVE = "curve.csv"
SUMMARY = "summary.json"
# The predicted class of every test example at the early-stop evaluation, its iteration and
# the per-class test accuracy (a variant's folder, and the best so far in a checkpoint).
# Optional: variants trained before 0.2 have none.
PREDICTIONS = "predictions.npz"
TEST_LABELS = "test_labels.npz"
CHECKPOINTS = "checkpoints"
CHECKPOINT_MODEL = "model"  # tf.train.Checkpoint prefix inside checkpoints/it_<iteration>/ (tf_keras)
CHECKPOINT_ARRAYS = "variables.npz"  # the model's and optimizer's variables, in order (Keras 3)
CHECKPOINT_STATE = "state.json"
TEMPORARY_GLOB = ".*.tmp"  # a write cut short before its rename (see storage.atomic_write_bytes)
TRIAL_GLOB = "trial_*"
ROUND_GLOB = "round_*"


def trial_name(trial):
    return f"trial_{trial}"


def round_name(round_index):
    return f"round_{round_index:02d}"


def trial_dir(run_dir, trial):
    return Path(run_dir) / trial_name(trial)


def round_dir(run_dir, trial, round_index):
    return trial_dir(run_dir, trial) / round_name(round_index)


def trial_of(path):
    """The trial number of a ``trial_<t>`` folder."""
    return int(Path(path).name.split("_")[1])


def trials_present(run_dir, below):
    """The trial numbers below ``below`` that have a folder in ``run_dir``, in order.

    Reading a run looks only at what is there, so a recipe asking for a million trials
    costs nothing before they exist.
    """
    found = []
    for path in Path(run_dir).glob(TRIAL_GLOB):
        suffix = path.name[len("trial_"):]
        if path.is_dir() and suffix.isdigit() and int(suffix) < below:
            found.append(int(suffix))
    return sorted(found)


def summary_key(path):
    """``(trial, round, variant)`` of a variant's ``summary.json`` path."""
    path = Path(path)
    return trial_of(path.parents[2]), round_of(path.parents[1]), path.parent.name


def variant_dir(run_dir, trial, round_index, variant):
    return round_dir(run_dir, trial, round_index) / variant


def round_of(path):
    """The round number of a ``round_<rr>`` folder."""
    return int(Path(path).name.split("_")[1])


def init_weights(run_dir, trial):
    """θ0 of a trial."""
    return trial_dir(run_dir, trial) / INIT


def rewind_weights(run_dir, trial):
    """θk of a trial, captured in the dense round."""
    return trial_dir(run_dir, trial) / REWIND


def start_file(run_dir, trial, round_index):
    """The weights file a round's ticket starts from: θ0 in round 0, θk afterwards."""
    return init_weights(run_dir, trial) if round_index == 0 else rewind_weights(run_dir, trial)


def mask(run_dir, trial, round_index, variant):
    return variant_dir(run_dir, trial, round_index, variant) / MASK


def final(run_dir, trial, round_index, variant):
    return variant_dir(run_dir, trial, round_index, variant) / FINAL


def curve(run_dir, trial, round_index, variant):
    return variant_dir(run_dir, trial, round_index, variant) / CURVE


def predictions(run_dir, trial, round_index, variant):
    return variant_dir(run_dir, trial, round_index, variant) / PREDICTIONS


def test_labels(run_dir):
    return Path(run_dir) / TEST_LABELS


def summary(run_dir, trial, round_index, variant):
    return variant_dir(run_dir, trial, round_index, variant) / SUMMARY


def is_finished(run_dir, trial, round_index, variant):
    return summary(run_dir, trial, round_index, variant).is_file()


def checkpoints(variant_folder):
    return Path(variant_folder) / CHECKPOINTS


def analysis_dir(run_dir, name):
    return Path(run_dir) / ANALYSES / name


def export_benchmark(run_dir):
    return Path(run_dir) / EXPORT / EXPORT_BENCHMARK


def tensorboard(run_dir, *parts):
    return Path(run_dir).joinpath(TENSORBOARD, *parts)


def tensorboard_variant(run_dir, trial, round_index, variant):
    return tensorboard(run_dir, trial_name(trial), round_name(round_index), variant)


def report_dir(run_dir):
    return Path(run_dir) / REPORT


def recipe_file(run_dir):
    return Path(run_dir) / RECIPE


def identity_file(run_dir):
    return Path(run_dir) / IDENTITY


def model_file(run_dir):
    return Path(run_dir) / MODEL


def results_csv(run_dir):
    return Path(run_dir) / RESULTS_CSV


def results_json(run_dir):
    return Path(run_dir) / RESULTS_JSON


def lock_file(run_dir):
    return Path(run_dir) / LOCK


def claims_dir(run_dir):
    return Path(run_dir) / CLAIMS


def claim_file(run_dir, trial, round_index, variant):
    """The claim of one training: ``.claims/trial_<t>-round_<rr>-<variant>.json``."""
    return claims_dir(run_dir) / f"{trial_name(trial)}-{round_name(round_index)}-{variant}.json"


def claim_key(path):
    """``(trial, round, variant)`` of a claim file's path, or None for another file."""
    name = Path(path).name
    parts = name[:-len(".json")].split("-", 2) if name.endswith(".json") else []
    if len(parts) != 3 or not parts[0].startswith("trial_") or not parts[1].startswith("round_"):
        return None
    try:
        return int(parts[0][len("trial_"):]), int(parts[1][len("round_"):]), parts[2]
    except ValueError:
        return None


def shared_lock_file(run_dir):
    return claims_dir(run_dir) / SHARED_LOCK
