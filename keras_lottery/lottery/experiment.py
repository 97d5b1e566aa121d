"""The experiment: trial by trial, round by round, variant by variant.

Round 0 trains the dense network from θ0 and saves θk. Every later round prunes a
trained ticket (:mod:`.rounds` says which) and trains the recipe's variants
(:mod:`.variants`) on that round's sparsity.

Each variant of each round is a training, a node of the experiment's graph
(:mod:`.graph`), which workers claim and train (:mod:`.workers`): the run's own process
by default, or ``workers`` processes. Finished variants (``summary.json`` present) are
skipped, so rerunning a command resumes at the first unfinished round, inside it from
the last mid-round checkpoint (:mod:`.checkpoints`). Damaged files are redone
(:mod:`keras_lottery.rundir.integrity`), a diverging variant is recorded as failed
(:mod:`.failures`), and workers share the run directory (:mod:`keras_lottery.rundir.locking`
keeps analyses out while they train).
"""

import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from keras_lottery import __version__, costs, data, distribute, masking, models, pruning, results, training
from keras_lottery import backend, flavours
from keras_lottery.backend import tf
from keras_lottery.config import identity
from keras_lottery.config.recipe import RecipeError, parse
from keras_lottery.lottery import checkpoints, graph, rounds, session, variants, workers
from keras_lottery.reporting import progress as displays, summaries
from keras_lottery.rundir import claims, integrity, layout, locking, safety, storage
from keras_lottery.pruning import criteria, units
from keras_lottery.training import regularization, saliency
from keras_lottery.errors import UsageError

derive_seed = rounds.derive_seed


class RunDirError(UsageError):
    """A run directory that belongs to another experiment or is not a run directory."""


# ---- the run directory -------------------------------------------------------------------


def run_dir_for(recipe, data_fingerprint, model_fingerprint=None, out=None, root="runs", backend=None):
    """``out``, else ``runs/<name>-<hash>``; a run directory that keras-lottery 0.1.0 made
    for the same recipe is found under its old name and continued."""
    if out:
        return Path(out)
    path = Path(root) / f"{recipe.name}-{identity.short_hash(recipe, data_fingerprint, model_fingerprint, backend)}"
    legacy = identity.legacy_hash(recipe) if model_fingerprint is None else None
    if not path.exists() and legacy:
        old = Path(root) / f"{recipe.name}-{legacy}"
        if layout.recipe_file(old).is_file() and not layout.identity_file(old).is_file():
            return old
    return path


def _difference(saved, wanted, saved_source=None, source=None):
    """The first part of two identities that differs, in words (naming both data sources)."""
    if saved.get("data") != wanted.get("data"):
        there = f"{saved_source}, " if saved_source else ""
        here = f"{source}, " if source else ""
        return (f"other data ({there}fingerprint {str(saved.get('data'))[:12]}; this data: {here}fingerprint "
                f"{str(wanted.get('data'))[:12]})")
    def keras_of(found):  # the recipe's keras field (absent: tf_keras) and the Keras 3 backend
        recipe_part = found.get("recipe") if isinstance(found.get("recipe"), dict) else {}
        name = recipe_part.get("keras", flavours.TF_KERAS)
        return ("tf_keras" if name == flavours.TF_KERAS else f"Keras 3 / {found.get('backend') or 'tensorflow'}",
                {key: value for key, value in recipe_part.items() if key != "keras"})

    (made_on, saved_recipe), (runs_on, wanted_recipe) = keras_of(saved), keras_of(wanted)
    if made_on != runs_on:
        how = "--keras tf_keras" if made_on == "tf_keras" else \
            f"--keras keras3 and KERAS_BACKEND={made_on.split(' / ')[1]}"
        also = "" if saved_recipe == wanted_recipe else " and of another recipe"
        return f"a run made on {made_on}{also}, and this process runs {runs_on} (resume it with {how})"
    if saved.get("model") != wanted.get("model"):
        return "another model architecture"
    return "a different recipe"


def claim_run_dir(recipe, run_dir, wanted, source=None):
    """Create (or reuse) ``run_dir`` for the identity ``wanted`` (of the data ``source``);
    refuse one that holds results of another, one that is not a directory, and one with a
    link leading outside it. The files are written by :func:`run` once it holds the lock."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--out {run_dir} exists and is not a directory; choose another --out")
    safety.check(run_dir)
    saved_identity, saved_recipe = layout.identity_file(run_dir), layout.recipe_file(run_dir)
    if saved_identity.is_file():
        try:
            saved_file = storage.read_json(saved_identity)
            saved = saved_file["identity"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
            raise RunDirError(f"{saved_identity} is unreadable ({type(err).__name__}); choose another --out") from None
        if saved != wanted:
            difference = _difference(saved, wanted, saved_file.get("data_source"), source)
            raise RunDirError(f"{run_dir} holds results of {difference}; choose another --out or remove that directory")
    elif saved_recipe.is_file():  # made by keras-lottery 0.1.0: its identity is the 0.1.0 hash
        try:
            other = parse(storage.read_json(saved_recipe))
        except (RecipeError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunDirError(f"{saved_recipe} is not a readable recipe ({err}); choose another --out") from None
        legacy = identity.legacy_hash(recipe)
        if legacy is None or "model" in wanted or identity.legacy_hash(other) != legacy:
            raise RunDirError(
                f"{run_dir} holds results of a different recipe ({other.name}-{identity.legacy_hash(other)}); "
                "choose another --out or remove that directory"
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunDirError(f"{run_dir} exists and is not a keras-lottery run directory; choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # under a file, too long a name, read-only
        raise RunDirError(f"cannot create the run directory {run_dir} ({err.strerror or err}); choose another --out") from None
    return run_dir


def model_fingerprint(source, plain):
    """None for the package's models (their code is versioned with it); for the user's
    own, a hash of the architecture, so another model never resumes into this run."""
    if source.builtin:
        return None
    return hashlib.sha256(plain.to_json().encode()).hexdigest()[:16]


# ---- the experiment ----------------------------------------------------------------------


class Experiment:
    """One recipe's model and data; :meth:`run` trains every round into ``run_dir``.

    ``source`` builds the model (:func:`keras_lottery.models.source`; by default the
    recipe's). ``run_dir`` may be set after construction, once it has been claimed.
    """

    def __init__(self, recipe, run_dir, splits, log=print, strategy=None, source=None):
        if source is None:
            source = models.source(recipe.model, splits.input_shape, splits.num_classes)
        if rounds.at_init(recipe) and criteria.needs(recipe.pruning.criterion) in criteria.MODEL_NEEDS:
            saliency.check_backend()  # before anything trains: the backend has the autodiff
        self.recipe, self.splits, self.source = recipe, splits, source
        self.progress = displays.of(log)  # what the run shows (keras_lottery.reporting.progress)
        self.run_dir = None if run_dir is None else Path(run_dir)
        # Every round's stream reads the training images from one tensor. Holding them only as
        # that tensor frees the numpy copy (170 MB for MNIST, 600 MB for CIFAR-10).
        splits.x_train = data.inputs.apply(tf.constant, splits.x_train)
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():  # the model's variables are mirrored on every replica
            self.plain = source.build(0)
        source.check_seeds()  # the user's model: each seed reproducible, seeds different
        self.kernel_sizes = models.kernel_sizes(self.plain)
        self.positions = costs.positions(self.plain)  # uses of each kernel weight per example (MACs)
        self.rates = models.rates_by_layer(self.plain, recipe.pruning)
        with self.strategy.scope():
            self.model = masking.wrap(self.plain, self.rates)
            regularization.add_weight_decay(self.model, recipe.training.weight_decay)
            training.compile_model(self.model, recipe.training)
        batch = recipe.training.eval_batch_size
        self.val_data = data.eval_dataset(splits.x_val, splits.y_val, batch)
        self.test_data = data.eval_dataset(splits.x_test, splits.y_test, batch)

    @property
    def log(self):
        """Show a line of the run's own (see :attr:`progress`)."""
        return self.progress.line

    def describe(self):
        """Lines saying which layers are pruned at which rate."""
        by_target = rounds.at_init(self.recipe) and self.recipe.pruning.target_weights is not None
        lines = models.describe_pruning(self.plain, self.rates, self.recipe.pruning.structure, levels=by_target)
        for same in models.identical_weights(self.plain):
            lines.append(f"note: {', '.join(same)} start from identical weights (one seeded initializer shared "
                         "between them; MultiHeadAttention copies its kernel_initializer to query, key and value): "
                         "give each an unseeded initializer, keras-lottery seeds it")
        if rounds.at_init(self.recipe):
            config = self.recipe.pruning
            levels = rounds.describe_levels(config.target_weights, config.rounds)
            steps = config.score_steps or criteria.steps(config.criterion)
            lines.append(f"pruning at initialization: each round's mask chosen at θ0 by {config.criterion} "
                         f"({steps} scoring step{'s' if steps > 1 else ''}, {config.scope}); levels: {levels}")
        return lines

    def identity(self):
        return identity.identity(self.recipe, self.splits.fingerprint, model_fingerprint(self.source, self.plain),
                                 None if backend.LEGACY else backend.BACKEND)

    def fresh_weights(self, seed):
        """The weights of a newly initialized model (before masking)."""
        return masking.get_weights(self.source.build(seed))

    def flops_remaining(self, masks):
        """Percent of the dense network's multiply-accumulates a network with ``masks`` does."""
        return costs.flops_remaining(masks, self.kernel_sizes, self.positions)

    def round(self, trial, index):
        return rounds.Round(self.recipe, self.run_dir, trial, index, self.rates, self.kernel_sizes, self.fresh_weights,
                            self.saliency)

    # ---- scoring at initialization (pruning.method "at_init") ---------------------------

    def saliency(self, needs, weights, trial):
        """``{unit: array}``: what a criterion scoring the model ``needs``
        (:data:`keras_lottery.pruning.criteria.MODEL_NEEDS`) for the model with ``weights``
        (:mod:`keras_lottery.training.saliency`); data criteria score ``trial``'s batch."""
        if getattr(self, "_scoring_model", None) is None:
            self._scoring_model = self.source.build(0)  # a plain copy whose weights scoring sets
        keys = [units.weight_key(unit, weights) for unit in self.rates]
        if needs == criteria.SYNFLOW:
            found = saliency.synflow_gradient(self._scoring_model, weights, keys)
        else:
            x, y = self.score_batch(trial)
            if needs == criteria.GRADIENT:
                found = saliency.loss_gradient(self._scoring_model, weights, keys, x, y)
            else:
                found = saliency.hessian_gradient(self._scoring_model, weights, keys, x, y, criteria.GRASP_TEMPERATURE)
        return {unit: found[key] for unit, key in zip(self.rates, keys)}

    def score_batch(self, trial):
        """``(x, y)``: ``pruning.score_batch`` training examples (default 10 per class) drawn
        without replacement from ``trial``'s seed, the same for every level of the trial."""
        n = self.recipe.pruning.score_batch or 10 * self.splits.num_classes
        total = len(self.splits.y_train)
        rng = np.random.default_rng(derive_seed(self.recipe.seed, trial, "score_batch"))
        chosen = np.sort(rng.choice(total, size=min(n, total), replace=False))
        return tf.gather(self.splits.x_train, chosen).numpy(), np.asarray(self.splits.y_train)[chosen]

    def theta0(self, trial):
        """θ0 of ``trial``: drawn from the trial's seed once, then read from disk."""
        path = layout.init_weights(self.run_dir, trial)
        if not path.is_file():
            storage.save_arrays(path, self.fresh_weights(derive_seed(self.recipe.seed, trial, "init")))
        return storage.load_arrays(path)

    # ---- training ---------------------------------------------------------------------

    def run(self):
        """Train every training of the graph in this process (one worker); return the rows."""
        workers.Worker(self).run()
        return results.collect(self.run_dir, self.recipe)

    def train_variant(self, trial, round_index, variant, claim=None):
        """Train one variant of one round and write its results; ``claim`` (a held claim)
        must still be this worker's when the results are written."""
        plan = self.round(trial, round_index).plan(variant)
        folder = layout.variant_dir(self.run_dir, trial, round_index, variant)
        label = graph.Node(trial, round_index, variant).label(self.recipe)

        def still_mine():
            if claim is not None and not claim.still_mine():
                raise session.ClaimLost(label)

        try:
            outcome = session.train(self, plan, folder, label, claim)
        except session.Diverged as failure:
            still_mine()
            results.save_failed(self.run_dir, plan, failure, self.flops_remaining(plan.masks))
            checkpoints.clear(folder)
            self.progress.finished(label, f"{label}: FAILED, training diverged: {failure.error}")
            return
        still_mine()
        if plan.capture_at is not None:
            storage.save_arrays(layout.rewind_weights(self.run_dir, trial), outcome.theta_k)
        row = results.save_outputs(self.run_dir, plan, outcome, self.flops_remaining(plan.masks), self.splits.y_test)
        summaries.write_curve(self.run_dir, trial, round_index, variant, outcome.curve)
        if variant == variants.TICKET:
            summaries.write_sparsity(self.run_dir, trial, round_index, pruning.layer_sparsity(plan.masks),
                                     plan.weights_remaining)
        results.mark_finished(self.run_dir, plan, row)
        checkpoints.clear(folder)
        self.progress.finished(
            label,
            f"{label}: {plan.weights_remaining:.1f}% weights, early stop at iteration {row['early_stop_iteration']} "
            f"with test accuracy {row['early_stop_test_accuracy']:.4f} ({row['seconds']:.0f}s)"
        )

    def write_results(self):
        rows = results.collect(self.run_dir, self.recipe)
        results.write(self.run_dir, rows)
        summaries.write_rounds(self.run_dir, [row for row in rows if results.status(row) == results.OK])


def _finished_elsewhere(run_dir, recipe):
    """How many finished variants (``summary.json``) in ``run_dir`` the recipe does not ask for."""
    def asked(trial, round_index, variant):
        return trial < recipe.trials and round_index < recipe.pruning.rounds and \
            variant in rounds.variants_of_round(recipe, round_index)

    found = Path(run_dir).glob(f"{layout.TRIAL_GLOB}/{layout.ROUND_GLOB}/*/{layout.SUMMARY}")
    return sum(1 for path in found if not asked(*layout.summary_key(path)))


def build(recipe, log=print, model=None, data_source=None, announce=True, workers_count=1):
    """Choose the Keras and the strategy, load the data and build the experiment (not yet
    in a run directory): what every process that trains ``recipe`` does first. ``announce``
    says which Keras and strategy it runs (every process says its devices); ``workers_count``
    workers share the CPU cores."""
    display = displays.of(log)
    flavours.choose(recipe.keras)  # this process runs the Keras the recipe names
    if workers_count > 1:
        workers.share_cores(workers_count)
    strategy = distribute.create(recipe.distribute)  # first: multi-worker needs it before any TF op
    if announce:
        display.line(flavours.describe())
    display.line(backend.describe_devices())  # each worker says where it trains
    if announce:
        display.line(distribute.describe(strategy, recipe.distribute, recipe.training.batch_size))
    tf.config.experimental.enable_op_determinism()
    splits = data.load(recipe.dataset, data_source)
    source = models.source(recipe.model if model is None else model, splits.input_shape, splits.num_classes)
    if announce and not source.builtin:
        display.line(source.describe())  # which file the code a recipe names comes from
    try:
        return Experiment(recipe, None, splits, display, strategy, source)  # refuses a model it cannot prune
    except UsageError:
        raise
    except (ValueError, tf.errors.OpError) as err:  # e.g. VGG-19's five poolings on 8x8 images
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise UsageError(
            f"model {recipe.model.name if model is None else getattr(model, '__name__', 'given')} cannot be built "
            f"for inputs shaped {data.inputs.describe_shape(splits.input_shape)} with {splits.num_classes} classes ({first[:200]}); "
            "choose a model that fits the data (see keras-lottery recipes) or other data"
        ) from None


def _check_workers(recipe, workers_count, devices):
    if not isinstance(workers_count, int) or isinstance(workers_count, bool) or not 1 <= workers_count <= MAX_WORKERS:
        raise UsageError(f"workers must be a whole number from 1 to {MAX_WORKERS}, got {workers_count!r}; "
                         "pass e.g. --workers 2 (one per CPU core or GPU)")
    if workers_count > 1 and recipe.distribute.strategy in ("multi_worker", "tpu"):
        raise UsageError(f"--workers {workers_count} trains several trainings side by side, and the "
                         f"{recipe.distribute.strategy} strategy spreads one training over many devices; use one of "
                         "them (--workers 1, or --strategy default / mirrored)")
    if devices is not None and workers_count == 1:
        raise UsageError("--devices gives each worker its own device; pass --workers N with it")


MAX_WORKERS = 256


def run(recipe, out=None, log=print, model=None, data_source=None, root="runs", workers_count=1, devices=None):
    """Run ``recipe``: load data, claim the run directory, train every round.

    ``model`` (a function returning a Keras model) and ``data_source`` (arrays or
    tf.data datasets) replace the recipe's model and dataset (see :mod:`keras_lottery.api`).
    ``workers_count`` trainings run side by side in as many worker processes
    (:mod:`.workers`), each on its own device of ``devices`` when given.
    ``log`` is a function taking a line, or a display of :mod:`keras_lottery.reporting.progress`.
    Returns ``(run_dir, rows)``.
    """
    _check_workers(recipe, workers_count, devices)
    display = displays.of(log)
    with contextlib.ExitStack() as stack:
        pool = None
        if workers_count > 1:  # the other workers start now and build the experiment while this process sets up
            blob = workers.payload(recipe, model, data_source)
            pool = stack.enter_context(workers.Pool(recipe, workers_count - 1, display, blob, devices))
        return _run(recipe, out, display, model, data_source, root, workers_count, devices, pool)


def _run(recipe, out, display, model, data_source, root, workers_count, devices, pool):
    experiment = build(recipe, display, model, data_source, workers_count=workers_count if devices is None else 1)
    splits = experiment.splits
    wanted = experiment.identity()
    run_dir = run_dir_for(recipe, wanted["data"], wanted.get("model"), out, root, wanted.get("backend"))
    run_dir = distribute.work_dir(run_dir, experiment.strategy)  # non-chief workers: scratch
    claim_run_dir(recipe, run_dir, wanted, splits.source)
    _check_same_units(run_dir, experiment)
    with locking.hold(run_dir, shared=True):  # workers share it; an analysis waits
        with claims.shared_lock(run_dir):
            storage.write_json(layout.identity_file(run_dir), {
                "identity": wanted, "data_source": splits.source, "keras_lottery": __version__,
            })
            storage.write_json(layout.recipe_file(run_dir), recipe.to_dict())
            storage.save_arrays(layout.test_labels(run_dir),
                                {"labels": results.compact(splits.y_test, splits.num_classes)})
            storage.write_json(layout.model_file(run_dir), {
                "input_shape": data.inputs.shape_json(splits.input_shape), "num_classes": splits.num_classes,
                "architecture": json.loads(experiment.plain.to_json()),
            })
            display.line(f"run directory: {run_dir}")
            for line in experiment.describe():
                display.line(line)
            experiment.run_dir = Path(run_dir)
            # damaged files are redone, never read as finished (trials a live worker trains are its own)
            integrity.repair(run_dir, recipe, display.line, skip_trials=workers.busy_trials(run_dir))
            claims.clear_stale(run_dir)
        left_out = _finished_elsewhere(run_dir, recipe)
        if left_out:
            display.line(f"note: {left_out} finished variant(s) of this run directory are outside this command's "
                         "rounds, trials or controls; they are kept on disk but left out of results.csv and the report "
                         "(rerun with the earlier --rounds, --trials or controls to list them again)")
        distribute.check_same_progress(experiment.strategy, results.collect(run_dir, recipe))  # multi-worker resume
        display.tally(*graph.tally(run_dir, recipe))
        if pool is None:
            experiment.run()
        else:  # this process is worker w1; the pool's workers train beside it
            pool.start(run_dir)
            experiment.progress = pool.own()
            experiment.run()
            experiment.progress = display  # w1 ends when every training is finished: a worker that died was replaced
        for trial, (first, failed_round) in sorted(graph.blocked_trials(run_dir, recipe).items()):
            last = recipe.pruning.rounds - 1
            skipped = f"round {last}" if first == last else f"rounds {first}-{last}"
            display.line(f"trial {trial}: {skipped} skipped: the round {failed_round} ticket they are pruned from failed")
        with claims.shared_lock(run_dir):
            experiment.write_results()
            claims.clear_stale(run_dir)
        rows = results.collect(run_dir, recipe)
    return run_dir, rows


def _check_same_units(run_dir, experiment):
    """Refuse to continue a run whose saved masks prune other weights than this version would
    (keras-lottery 0.3 left the layers inside a custom layer dense; they are pruned now): the
    run stays readable (report, export), but its rounds cannot be continued by a rule that
    differs from the one that pruned them."""
    saved = next((path for path in sorted(Path(run_dir).glob(f"trial_*/round_*/*/{layout.MASK}"))), None)
    if saved is None:
        return
    try:
        found = set(storage.load_arrays(saved))
    except Exception:  # a damaged mask is redone by integrity.repair, not judged here
        return
    wanted = set(experiment.rates)
    if found != wanted:
        more, fewer = sorted(wanted - found), sorted(found - wanted)
        what = "; ".join(part for part in (
            f"it would also prune {', '.join(more[:3])}{', ...' if len(more) > 3 else ''}" if more else "",
            f"it would not prune {', '.join(fewer[:3])}{', ...' if len(fewer) > 3 else ''}" if fewer else "") if part)
        raise UsageError(
            f"{run_dir} was pruned by another rule than this keras-lottery ({__version__}) uses for this model "
            f"({what}); its results stay readable (report, export): continue it with the version that made it, "
            "or run into a new --out"
        )


def join(run_dir, name=None, data_path=None, until_finished=False, log=print):
    """Join the run in ``run_dir`` as one worker: rebuild its experiment from its
    ``recipe.json``, check it is the same experiment, and train until nothing is left for
    this worker. Returns how many trainings it trained."""
    run_dir = Path(run_dir)
    try:
        saved = storage.read_json(layout.recipe_file(run_dir))
        storage.read_json(layout.identity_file(run_dir))["identity"]  # set up by keras-lottery run
    except FileNotFoundError:
        raise RunDirError(f"{run_dir} is not a run directory that keras-lottery run has set up (no recipe.json or "
                          "identity.json); start the run with keras-lottery run first") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RunDirError(f"{run_dir}: recipe.json or identity.json is unreadable ({type(err).__name__}); "
                          "choose a run directory keras-lottery run made") from None
    recipe = parse(saved)
    if data_path is not None:
        recipe = dataclasses.replace(recipe, dataset=dataclasses.replace(recipe.dataset, path=str(data_path)))
    if recipe.dataset.name == data.PYTHON:
        raise RunDirError(f"{run_dir} trains data given from Python (kl.run): only the workers that kl.run(..., "
                          "workers=N) starts can train it; run it with workers=N, or give the data in a recipe")
    if models.is_python_function(recipe.model.name):
        raise RunDirError(f"{run_dir} trains a model function given from Python (kl.run): only the workers that "
                          "kl.run(..., workers=N) starts can train it; name the function as module:function in "
                          "the recipe to share the run")
    if recipe.dataset.path and not Path(recipe.dataset.path).is_file():
        raise RunDirError(f"the run's data file {recipe.dataset.path} is not found from {Path.cwd()}; start the "
                          "worker where the run was started, or pass --data with the same data")
    return _work(build(recipe, log), run_dir, name, until_finished)


def join_pool(stream, name, log):
    """Work as a worker that a :class:`.workers.Pool` started: build the experiment from the
    payload on ``stream`` while the pool's process sets the run directory up, then train in
    the run directory it sends until the experiment is finished. Returns how many trainings
    it trained (none if the pool stopped before the run directory was set up)."""
    payload = workers.read_payload(stream)
    experiment = build(parse(payload["recipe"]), log, payload["model"], payload["data"], announce=False)
    run_dir = workers.read_payload(stream, default=None)
    return 0 if run_dir is None else _work(experiment, Path(run_dir), name, until_finished=True)


def _work(experiment, run_dir, name, until_finished):
    """Train ``experiment``'s ready trainings in ``run_dir`` as the worker ``name``."""
    claim_run_dir(experiment.recipe, run_dir, experiment.identity(), experiment.splits.source)  # other data, model
    experiment.run_dir = run_dir
    with locking.hold(run_dir, shared=True):
        with claims.shared_lock(run_dir):
            integrity.repair(run_dir, experiment.recipe, experiment.log, skip_trials=workers.busy_trials(run_dir))
            claims.clear_stale(run_dir)
        return workers.Worker(experiment, name, until_finished=until_finished).run()
