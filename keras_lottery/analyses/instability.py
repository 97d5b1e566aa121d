"""Instability and linear mode connectivity (Frankle, Dziugaite, Roy & Carbin, ICML 2020).

``keras-lottery analyze instability RUN_DIR [--rounds R,...] [--rewind-points k,...]
[--alphas 30] [--copies 2] [--trial 0] [--data PATH]``

For each chosen round's ticket (round 0 is the dense network) and each rewind point k,
the network at ``m ⊙ θk`` is trained from iteration k to the end of the recipe's
schedule ``copies`` times, each copy with its own data order (and so its own
augmentation draws, which are seeded by the batch) and its own random state (dropout).
The test error, ``1 - accuracy`` (a fraction of test examples, like every accuracy in
the results), is evaluated at ``alphas`` evenly spaced α in [0, 1] along the straight
line ``(1 - α)·wA + α·wB`` between two trained copies. Every variable is interpolated,
batch-normalization moving statistics included (they are not recomputed); masked
weights are zero at both ends and so all along the line. The error barrier is
``max over α of err(α) - (err(0) + err(1)) / 2``. With more than two copies every pair
is interpolated and the barrier reported is the mean over pairs (each pair's is kept).

θk: θ0 is the run's ``init.npz``; θk at the recipe's rewind iteration is the run's saved
``rewind.npz``; any other k is reproduced by replaying the dense round's deterministic
training (round 0 from θ0, the run's own seeds, op determinism) up to k. A replay
reproduces the saved θk bit for bit (tests/test_instability.py). Replayed θk are cached in
``theta_k/``; the table says where each θk came from.

Outputs in ``RUN_DIR/analyses/instability/``: ``copies/`` (each trained copy),
``curves/`` (each round and k: errors along α, the barrier, the end errors),
``instability.csv`` and ``instability.json`` (the table), ``error_along_alpha.png`` and
``barrier_vs_k.png``. Every file is written atomically and work whose file exists is
skipped, so a killed analysis resumes where it was (inside a copy's training from its
newest mid-round checkpoint). A later call extends the folder: its rounds and rewind points
are added to the table, and other ``--alphas`` or ``--copies`` recompute the curves from the
saved copies (training only the copies that are missing).

Training needs the data, which the rest of ``analyze`` never reads: the run's
``recipe.json`` names it (an npz file by its absolute path, ``digits`` or a
tensorflow-datasets name); its content must have the run's fingerprint. Pass ``--data``
to point at a moved npz file. Data given to ``keras_lottery.run`` from Python cannot be
reloaded here.
"""

import copy
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_lottery import results
from keras_lottery.analyses import Analysis, AnalysisError, register
from keras_lottery.lottery import rounds, variants
from keras_lottery.rundir import layout, storage

NAME = "instability"
TABLE_CSV = "instability.csv"
TABLE_JSON = "instability.json"
ALPHA_FIGURE = "error_along_alpha.png"
BARRIER_FIGURE = "barrier_vs_k.png"
COPIES_DIR = "copies"
CURVES_DIR = "curves"
THETA_DIR = "theta_k"
WORK_DIR = "work"  # sessions' mid-round checkpoints while a copy (or a replay) trains
COLUMNS = ("trial", "round", "weights_remaining", "k", "theta_k", "barrier", "barrier_max", "end_errors", "alphas")


# The most of each count an analysis accepts: far beyond what anyone plots or can train, and
# refused past it in one line (a huge count would only exhaust memory or time).
MAX_ALPHAS = 1001
MAX_COPIES = 64
MAX_POINTS = 256  # rewind points, and rounds, per call


@dataclass(frozen=True)
class Options:
    rounds: str = ""  # comma list of rounds; "" = round 0 and the last finished ticket round
    rewind_points: str = ""  # comma list of k; "" = 0 and the recipe's rewind.iteration
    alphas: int = 30  # evenly spaced α in [0, 1], both ends included
    copies: int = 2  # trained copies per round and k (every pair is interpolated)
    trial: int = 0
    data: str = ""  # the run's npz data file, if it moved since the run


# ---- pure functions ----------------------------------------------------------------------


def alpha_grid(count):
    return [float(a) for a in np.linspace(0.0, 1.0, count)]


def interpolate(first, second, alpha):
    """``(1 - α)·first + α·second`` for every variable (computed in float64, kept in each
    variable's dtype); α = 0 and α = 1 give the ends exactly."""
    mixed = {}
    for name, a in first.items():
        a = np.asarray(a)
        b = np.asarray(second[name])
        if alpha == 0.0:
            mixed[name] = a.copy()
        elif alpha == 1.0:
            mixed[name] = b.copy()
        else:
            mixed[name] = ((1.0 - alpha) * a.astype(np.float64) + alpha * b.astype(np.float64)).astype(a.dtype)
    return mixed


def barrier(errors):
    """The error barrier of a curve of errors along α (first and last at the two ends):
    the largest error minus the mean of the two end errors."""
    errors = [float(e) for e in errors]
    return max(errors) - (errors[0] + errors[-1]) / 2.0


def parse_list(text, option):
    """Distinct non-negative integers of a comma list, in the given order."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise AnalysisError(f"analysis {NAME}: --{option} must be a comma list of integers, got {text!r}") from None
        if value < 0:
            raise AnalysisError(f"analysis {NAME}: --{option} must be non-negative integers, got {value}")
        if value not in values:
            values.append(value)
    return values


# ---- choosing what to compute ------------------------------------------------------------


def finished_ticket_rounds(run, trial):
    """Rounds of ``trial`` whose ticket finished (not failed), in order."""
    return sorted(
        int(row["round"]) for row in run.rows
        if int(row["trial"]) == trial and row["variant"] == variants.TICKET and results.status(row) == results.OK
    )


def chosen_rounds(run, options):
    finished = finished_ticket_rounds(run, options.trial)
    if not finished:
        raise AnalysisError(
            f"analysis {NAME}: trial {options.trial} of {run.path} has no finished round; run keras-lottery run first"
        )
    wanted = parse_list(options.rounds, "rounds") or sorted({0, finished[-1]} & set(finished)) or finished[-1:]
    for round_index in wanted:
        if round_index not in finished:
            raise AnalysisError(
                f"analysis {NAME}: round {round_index} has no finished ticket in trial {options.trial}; "
                f"pass --rounds from {', '.join(map(str, finished))}"
            )
    return wanted


def chosen_points(recipe, options):
    config = recipe.training
    wanted = parse_list(options.rewind_points, "rewind-points") or sorted({0, recipe.rewind.iteration})
    for k in wanted:
        if k % config.eval_every:
            raise AnalysisError(
                f"analysis {NAME}: rewind point {k} is not a multiple of training.eval_every ({config.eval_every}); "
                "pass --rewind-points that are"
            )
        if k >= config.iterations:
            raise AnalysisError(
                f"analysis {NAME}: rewind point {k} is not before the end of training (training.iterations "
                f"{config.iterations}); pass --rewind-points below it"
            )
    return wanted


def check_options(run, options):
    if not 2 <= options.alphas <= MAX_ALPHAS:
        raise AnalysisError(
            f"analysis {NAME}: --alphas must be from 2 (both ends of the line) to {MAX_ALPHAS}, got {options.alphas}"
        )
    if not 2 <= options.copies <= MAX_COPIES:
        raise AnalysisError(
            f"analysis {NAME}: --copies must be from 2 (a line needs two ends) to {MAX_COPIES}, got {options.copies}"
        )
    for option, text in (("rewind-points", options.rewind_points), ("rounds", options.rounds)):
        if len(parse_list(text, option)) > MAX_POINTS:
            raise AnalysisError(f"analysis {NAME}: --{option} lists more than {MAX_POINTS} values; pass at most "
                                f"{MAX_POINTS} per call (results of earlier calls are kept)")
    if not 0 <= options.trial < run.recipe.trials or not layout.init_weights(run.path, options.trial).is_file():
        raise AnalysisError(f"analysis {NAME}: trial {options.trial} is not in {run.path}; pass --trial of a run trial")
    check_backend(run)
    return chosen_rounds(run, options), chosen_points(run.recipe, options)


def check_backend(run):
    """Refuse to train on another Keras 3 backend than the run's: the copies and replayed θk
    would not continue the run's training (replays are exact on the run's backend only)."""
    from keras_lottery import flavours

    try:
        trained_on = storage.read_json(layout.identity_file(run.path))["identity"].get("backend")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return
    running = flavours.keras_backend_name()
    if trained_on is not None and trained_on != running:
        raise AnalysisError(
            f"analysis {NAME}: {run.path} was trained on the {trained_on} backend, but this process runs "
            f"{running}; run it with KERAS_BACKEND={trained_on}"
        )


# ---- the data and the model ----------------------------------------------------------------


def load_data(run, options):
    """The run's data, refused unless its content has the run's fingerprint."""
    from keras_lottery.rundir import integrity

    try:
        return integrity.run_data(run.path, run.recipe.dataset, options.data)
    except integrity.OtherDataError as err:
        raise AnalysisError(f"analysis {NAME}: {err}") from None


def experiment_for(run, splits, log):
    """An :class:`~keras_lottery.lottery.experiment.Experiment` of the run's model and data
    (not claiming the run directory: it trains only where this analysis tells it)."""
    from keras_lottery import export, models
    from keras_lottery.backend import tf
    from keras_lottery.lottery.experiment import Experiment

    tf.config.experimental.enable_op_determinism()  # as keras-lottery run: replays are exact
    recipe = run.recipe
    if recipe.model.name in models.BUILTIN:
        source = models.source(recipe.model, splits.input_shape, splits.num_classes)
    else:
        def build(seed):
            return export.build(run.path, recipe, seed)

        source = models.source(build, splits.input_shape, splits.num_classes)
    experiment = Experiment(recipe, run.path, splits, log, source=source)
    experiment.test_evaluator = None
    return experiment


def test_error(experiment, weights, masks):
    """Test error (1 - accuracy) of ``masks ⊙ weights``."""
    from keras_lottery.lottery.callbacks import restore
    from keras_lottery.training import evaluation

    if getattr(experiment, "test_evaluator", None) is None:
        experiment.test_evaluator = evaluation.make(experiment.model, {"test": experiment.test_data})
    restore(experiment.model, weights, masks)
    with experiment.strategy.scope():
        return 1.0 - experiment.test_evaluator()["test"]["accuracy"]


# ---- θk ----------------------------------------------------------------------------------------


def replay_theta_k(experiment, trial, k, folder):
    """θk of ``trial``: the dense round's training replayed from θ0 up to iteration ``k``
    with the run's seeds (mid-round checkpoints in ``folder``)."""
    from keras_lottery.lottery import checkpoints, session

    from keras_lottery import masking

    recipe = experiment.recipe
    theta_0 = storage.load_arrays(layout.init_weights(experiment.run_dir, trial))
    if k == 0:
        return theta_0
    # round 0's plan (rounds.Round.plan of the ticket), built here so nothing is written to the run
    plan = rounds.Plan(
        trial=trial, round=0, variant=variants.TICKET, masks=masking.dense_masks(experiment.model), weights=theta_0,
        start_iteration=0, weights_remaining=100.0, capture_at=k,
    )
    shortened = copy.copy(experiment)  # the same model and data; the schedule stops at k
    shortened.recipe = dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, iterations=k))
    outcome = session.train(shortened, plan, folder, f"instability: replaying trial {trial} round 0 to k={k}")
    checkpoints.clear(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return outcome.theta_k


def theta_k(experiment, trial, k, folder, log):
    """``(θk, where it came from)``: the run's files for k = 0 and the rewind iteration,
    else a replay of the dense round (cached in ``folder/theta_k/``)."""
    run_dir, recipe = experiment.run_dir, experiment.recipe
    if k == 0:
        return storage.load_arrays(layout.init_weights(run_dir, trial)), f"θ0 ({layout.INIT})"
    saved = layout.rewind_weights(run_dir, trial)
    if k == recipe.rewind.iteration and saved.is_file():
        return storage.load_arrays(saved), f"saved ({layout.REWIND})"
    cached = folder / THETA_DIR / f"trial_{trial}_k_{k:07d}.npz"
    if not cached.is_file():
        log(f"instability: θk for k={k} is not saved; replaying the dense round to iteration {k}")
        storage.save_arrays(cached, replay_theta_k(experiment, trial, k, folder / WORK_DIR / f"replay_k_{k}"))
    return storage.load_arrays(cached), "replayed (round 0 from θ0)"


# ---- copies and curves ---------------------------------------------------------------------


def copy_seeds(recipe, trial, index):
    """The data-order and random-state seeds of copy ``index`` (the same at every round and k)."""
    return (rounds.derive_seed(recipe.seed, trial, NAME, index, "data"),
            rounds.derive_seed(recipe.seed, trial, NAME, index, "train"))


def train_copy(experiment, trial, round_index, k, start, masks, remaining, index, folder):
    """Train copy ``index`` of ``m ⊙ start`` from iteration k to the end; return its weights."""
    from keras_lottery.lottery import checkpoints, session

    data_seed, train_seed = copy_seeds(experiment.recipe, trial, index)
    plan = rounds.Plan(
        trial=trial, round=round_index, variant=variants.TICKET, masks=masks, weights=start, start_iteration=k,
        weights_remaining=remaining, capture_at=None, learning_rate_at=None, data_seed=data_seed, train_seed=train_seed,
    )
    label = f"instability round {round_index} k={k} copy {index}"
    try:
        outcome = session.train(experiment, plan, folder, label)
    except session.Diverged as failure:
        raise AnalysisError(f"analysis {NAME}: {label} diverged ({failure.error}); nothing of it was saved") from None
    checkpoints.clear(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return outcome.weights


def curve_file(folder, trial, round_index, k):
    return folder / CURVES_DIR / f"trial_{trial}_round_{round_index:02d}_k_{k:07d}.json"


def copy_file(folder, trial, round_index, k, index):
    return folder / COPIES_DIR / f"trial_{trial}_round_{round_index:02d}_k_{k:07d}_copy_{index}.npz"


def line_errors(experiment, first, second, masks, alphas):
    return [test_error(experiment, interpolate(first, second, alpha), masks) for alpha in alphas]


def copies_of(entry):
    """How many copies a curve entry interpolates (entries before 0.4 do not say: from its pairs)."""
    return entry.get("copies") or 1 + max((j for _, j in entry.get("pairs", [[0, 1]])), default=1)


def is_current(entry, options):
    """Whether a saved curve was measured with ``options``' alphas and copies."""
    return entry.get("alphas") == alpha_grid(options.alphas) and copies_of(entry) == options.copies


def measure(experiment, run, options, folder, trial, round_index, k, log, previous=None):
    """The curve of one trial, round and k: train (or read) the copies, interpolate every pair.
    ``previous`` is the curve saved with other options, whose copies are reused."""
    masks = storage.load_arrays(layout.mask(run.path, trial, round_index, variants.TICKET))
    remaining = next(float(row["weights_remaining"]) for row in run.rows
                     if int(row["trial"]) == trial and int(row["round"]) == round_index
                     and row["variant"] == variants.TICKET)
    paths = [copy_file(folder, trial, round_index, k, index) for index in range(options.copies)]
    if previous is not None and all(path.is_file() for path in paths):
        start, source = None, previous["theta_k"]  # nothing to train: θk is not needed
    else:
        start, source = theta_k(experiment, trial, k, folder, log)
    trained = []
    for index, path in enumerate(paths):
        if not path.is_file():
            work = folder / WORK_DIR / path.stem
            weights = train_copy(experiment, trial, round_index, k, start, masks, remaining, index, work)
            storage.save_arrays(path, weights)
        trained.append(storage.load_arrays(path))
    alphas = alpha_grid(options.alphas)
    pairs, curves = [], []
    for i in range(len(trained)):
        for j in range(i + 1, len(trained)):
            pairs.append([i, j])
            curves.append(line_errors(experiment, trained[i], trained[j], masks, alphas))
    barriers = [barrier(errors) for errors in curves]
    end_errors = [curves[0][0]] + [curves[n][-1] for n, (i, _) in enumerate(pairs) if i == 0]
    return {
        "trial": trial, "round": round_index, "weights_remaining": remaining, "k": k, "theta_k": source,
        "alphas": alphas, "copies": len(trained), "pairs": pairs, "errors": curves, "barriers": barriers,
        "barrier": float(np.mean(barriers)), "barrier_max": float(np.max(barriers)), "end_errors": end_errors,
    }


def saved_curves(folder):
    """``(trial, round, k)`` of every curve in ``folder`` (measured by this or an earlier call)."""
    found = []
    for path in sorted((Path(folder) / CURVES_DIR).glob("trial_*_round_*_k_*.json")):
        parts = path.stem.split("_")
        try:
            found.append((int(parts[1]), int(parts[3]), int(parts[5])))
        except (IndexError, ValueError):
            continue
    return found


# ---- the table and figures -----------------------------------------------------------------


def table_rows(entries):
    return [{
        "trial": e["trial"], "round": e["round"], "weights_remaining": round(e["weights_remaining"], 2), "k": e["k"],
        "theta_k": e["theta_k"], "barrier": round(e["barrier"], 6), "barrier_max": round(e["barrier_max"], 6),
        "end_errors": ";".join(f"{x:.6f}" for x in e["end_errors"]), "alphas": len(e["alphas"]),
    } for e in entries]


def markdown(entries):
    lines = [
        "| round | % weights remaining | k | θk | error barrier | end errors |",
        "|---:|---:|---:|:--|---:|:--|",
    ]
    for e in entries:
        ends = ", ".join(f"{x:.4f}" for x in e["end_errors"])
        lines.append(f"| {e['round']} | {e['weights_remaining']:.1f} | {e['k']} | {e['theta_k']} | "
                     f"{e['barrier']:.4f} | {ends} |")
    return "\n".join(lines)


def alpha_figure(entries, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    round_list = sorted({e["round"] for e in entries})
    figure = Figure(figsize=(4.2 * len(round_list), 3.6))
    axes = figure.subplots(1, len(round_list), squeeze=False, sharey=True)[0]
    points = sorted({e["k"] for e in entries})
    for axis, round_index in zip(axes, round_list):
        chosen = [e for e in entries if e["round"] == round_index]
        for e in chosen:
            colour = f"C{points.index(e['k']) % 10}"
            errors = np.mean(np.asarray(e["errors"]), axis=0)
            axis.plot(e["alphas"], errors, color=colour, marker="o", markersize=3, linewidth=1.3, label=f"k={e['k']}")
        axis.set_title(f"round {round_index}: {chosen[0]['weights_remaining']:.1f}% remaining", fontsize=10)
        axis.set_xlabel("interpolation α")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    axes[0].set_ylabel("test error")
    figure.tight_layout()
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=120)


def barrier_figure(entries, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 4.0))
    axis = figure.add_subplot()
    for number, round_index in enumerate(sorted({e["round"] for e in entries})):
        chosen = sorted((e for e in entries if e["round"] == round_index), key=lambda e: e["k"])
        axis.plot([e["k"] for e in chosen], [e["barrier"] for e in chosen], color=f"C{number % 10}", marker="o",
                  label=f"round {round_index}: {chosen[0]['weights_remaining']:.1f}% remaining")
    axis.axhline(0.0, color="grey", linewidth=0.8)
    axis.set_xlabel("rewind point k (iteration)")
    axis.set_ylabel("error barrier (fraction of test examples)")
    axis.set_title("Instability: error barrier vs rewind point")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=120)


# ---- the analysis ------------------------------------------------------------------------------


@register
class Instability(Analysis):
    name = NAME
    description = ("linear mode connectivity (Frankle et al. 2020): train each ticket from θk twice under "
                   "different data orders and measure the test-error barrier along the line between them")
    Options = Options
    adapts = True  # new rounds and k add to the table; other alphas or copies recompute the curves

    def __init__(self):
        self._checked = None  # (run path, options, splits): the data check() loaded, for run()

    def check(self, run, options):
        check_options(run, options)
        self._checked = (Path(run.path), options, load_data(run, options))

    def run(self, run, options, folder, log):
        wanted_rounds, points = check_options(run, options)
        if self._checked is not None and self._checked[:2] == (Path(run.path), options):
            splits = self._checked[2]
        else:
            splits = load_data(run, options)
        self._checked = None
        experiment = experiment_for(run, splits, log)
        wanted = [(options.trial, round_index, k) for round_index in wanted_rounds for k in points]
        entries, left_out = [], []
        for key in sorted(set(wanted) | set(saved_curves(folder))):
            trial, round_index, k = key
            path = curve_file(folder, trial, round_index, k)
            entry = storage.read_json(path) if path.is_file() else None
            if entry is None or not is_current(entry, options):
                copies = [copy_file(folder, trial, round_index, k, i) for i in range(options.copies)]
                if key not in wanted and not all(path.is_file() for path in copies):
                    left_out.append(f"round {round_index} k={k}" + (f" (trial {trial})" if trial != options.trial else ""))
                    continue  # an earlier call's curve that other --copies would have to train again
                entry = measure(experiment, run, options, folder, trial, round_index, k, log, previous=entry)
                storage.write_json(path, entry)
            entries.append(entry)
            log(f"instability round {round_index} ({entry['weights_remaining']:.1f}% remaining) k={k}: "
                f"barrier {entry['barrier']:.4f}, end errors {', '.join(f'{x:.4f}' for x in entry['end_errors'])}")
        if left_out:
            log(f"instability: note: {', '.join(left_out)} of an earlier call left out of the table: they were "
                f"measured with other --copies; pass their --rounds/--rewind-points to train {options.copies} copies")
        shutil.rmtree(folder / WORK_DIR, ignore_errors=True)  # leftovers of a killed analysis
        storage.write_csv(folder / TABLE_CSV, table_rows(entries), COLUMNS)
        storage.write_json(folder / TABLE_JSON, entries)
        alpha_figure(entries, folder / ALPHA_FIGURE)
        barrier_figure(entries, folder / BARRIER_FIGURE)

    def section(self, folder, link):
        path = Path(folder) / TABLE_JSON
        if not path.is_file():
            return None
        try:
            entries = storage.read_json(path)
        except (OSError, ValueError):
            return None
        if not entries:
            return None
        return "\n\n".join([
            "Error barrier along the line between two copies trained from θk with different data orders "
            "(a fraction of test examples; near 0: stable, linearly mode connected).",
            markdown(entries),
            f"![test error along α]({link(ALPHA_FIGURE)})",
            f"![error barrier vs k]({link(BARRIER_FIGURE)})",
        ])


