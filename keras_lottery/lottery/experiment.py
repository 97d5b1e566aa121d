"""The experiment: trial by trial, round by round, variant by variant.

Round 0 trains the dense network from θ0 and saves θk. Every later round prunes a
trained ticket (:mod:`.rounds` says which) and trains the recipe's variants
(:mod:`.variants`) on that round's sparsity.

Finished variants (``summary.json`` present) are skipped, so rerunning a command
resumes at the first unfinished round, inside it from the last mid-round checkpoint
(:mod:`.checkpoints`). Damaged files are redone (:mod:`keras_lottery.rundir.integrity`),
a diverging variant is recorded as failed (:mod:`.failures`), and one process at a time
holds the run directory (:mod:`keras_lottery.rundir.locking`).
"""

import hashlib
import json
from pathlib import Path

from keras_lottery import __version__, costs, data, distribute, masking, models, pruning, results, training
from keras_lottery import backend, flavours
from keras_lottery.backend import tf
from keras_lottery.config import identity
from keras_lottery.config.recipe import RecipeError, parse
from keras_lottery.lottery import checkpoints, failures, rounds, session, variants
from keras_lottery.reporting import summaries
from keras_lottery.rundir import integrity, layout, locking, safety, storage
from keras_lottery.training import regularization
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
        self.recipe, self.splits, self.source, self.log = recipe, splits, source, log
        self.run_dir = None if run_dir is None else Path(run_dir)
        # Every round's stream reads the training images from one tensor. Holding them only as
        # that tensor frees the numpy copy (170 MB for MNIST, 600 MB for CIFAR-10).
        splits.x_train = tf.constant(splits.x_train)
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

    def describe(self):
        """Lines saying which layers are pruned at which rate."""
        return models.describe_pruning(self.plain, self.rates, self.recipe.pruning.structure)

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
        return rounds.Round(self.recipe, self.run_dir, trial, index, self.rates, self.kernel_sizes, self.fresh_weights)

    def theta0(self, trial):
        """θ0 of ``trial``: drawn from the trial's seed once, then read from disk."""
        path = layout.init_weights(self.run_dir, trial)
        if not path.is_file():
            storage.save_arrays(path, self.fresh_weights(derive_seed(self.recipe.seed, trial, "init")))
        return storage.load_arrays(path)

    # ---- training ---------------------------------------------------------------------

    def run(self):
        recipe = self.recipe
        for trial in range(recipe.trials):
            self.theta0(trial)
            for round_index in range(recipe.pruning.rounds):
                blocked = failures.blocking_round(self.run_dir, recipe, trial, round_index)
                if blocked is not None:
                    last = recipe.pruning.rounds - 1
                    skipped = f"round {last}" if round_index == last else f"rounds {round_index}-{last}"
                    self.log(f"trial {trial}: {skipped} skipped: the round {blocked} ticket they are pruned from failed")
                    break
                for variant in rounds.variants_of_round(recipe, round_index):
                    if not layout.is_finished(self.run_dir, trial, round_index, variant):
                        self.train_variant(trial, round_index, variant)
                self.write_results()
        return results.collect(self.run_dir, recipe)

    def train_variant(self, trial, round_index, variant):
        plan = self.round(trial, round_index).plan(variant)
        folder = layout.variant_dir(self.run_dir, trial, round_index, variant)
        label = f"trial {trial} round {round_index}/{self.recipe.pruning.rounds - 1} {variant}"
        try:
            outcome = session.train(self, plan, folder, label)
        except session.Diverged as failure:
            results.save_failed(self.run_dir, plan, failure, self.flops_remaining(plan.masks))
            checkpoints.clear(folder)
            self.log(f"{label}: FAILED, training diverged: {failure.error}")
            return
        if plan.capture_at is not None:
            storage.save_arrays(layout.rewind_weights(self.run_dir, trial), outcome.theta_k)
        row = results.save_outputs(self.run_dir, plan, outcome, self.flops_remaining(plan.masks), self.splits.y_test)
        summaries.write_curve(self.run_dir, trial, round_index, variant, outcome.curve)
        if variant == variants.TICKET:
            summaries.write_sparsity(self.run_dir, trial, round_index, pruning.layer_sparsity(plan.masks),
                                     plan.weights_remaining)
        results.mark_finished(self.run_dir, plan, row)
        checkpoints.clear(folder)
        self.log(
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


def run(recipe, out=None, log=print, model=None, data_source=None, root="runs"):
    """Run ``recipe``: load data, claim the run directory, train every round.

    ``model`` (a function returning a Keras model) and ``data_source`` (arrays or
    tf.data datasets) replace the recipe's model and dataset (see :mod:`keras_lottery.api`).
    Returns ``(run_dir, rows)``.
    """
    flavours.choose(recipe.keras)  # this process runs the Keras the recipe names
    strategy = distribute.create(recipe.distribute)  # first: multi-worker needs it before any TF op
    log(flavours.describe())
    log(distribute.describe(strategy, recipe.distribute, recipe.training.batch_size))
    tf.config.experimental.enable_op_determinism()
    splits = data.load(recipe.dataset, data_source)
    source = models.source(recipe.model if model is None else model, splits.input_shape, splits.num_classes)
    try:
        experiment = Experiment(recipe, None, splits, log, strategy, source)  # refuses a model it cannot prune
    except UsageError:
        raise
    except (ValueError, tf.errors.OpError) as err:  # e.g. VGG-19's five poolings on 8x8 images
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise UsageError(
            f"model {recipe.model.name if model is None else getattr(model, '__name__', 'given')} cannot be built "
            f"for inputs shaped {tuple(splits.input_shape)} with {splits.num_classes} classes ({first[:200]}); "
            "choose a model that fits the data (see keras-lottery recipes) or other data"
        ) from None
    wanted = experiment.identity()
    run_dir = run_dir_for(recipe, wanted["data"], wanted.get("model"), out, root, wanted.get("backend"))
    run_dir = distribute.work_dir(run_dir, strategy)  # non-chief workers: scratch
    claim_run_dir(recipe, run_dir, wanted, splits.source)
    with locking.hold(run_dir):  # refuses a second process at once
        storage.write_json(layout.identity_file(run_dir), {
            "identity": wanted, "data_source": splits.source, "keras_lottery": __version__,
        })
        storage.write_json(layout.recipe_file(run_dir), recipe.to_dict())
        storage.save_arrays(layout.test_labels(run_dir), {"labels": results.compact(splits.y_test, splits.num_classes)})
        storage.write_json(layout.model_file(run_dir), {
            "input_shape": list(splits.input_shape), "num_classes": splits.num_classes,
            "architecture": json.loads(experiment.plain.to_json()),
        })
        log(f"run directory: {run_dir}")
        for line in experiment.describe():
            log(line)
        experiment.run_dir = Path(run_dir)
        integrity.repair(run_dir, recipe, log)  # damaged files are redone, never read as finished
        left_out = _finished_elsewhere(run_dir, recipe)
        if left_out:
            log(f"note: {left_out} finished variant(s) of this run directory are outside this command's rounds, trials "
                "or controls; they are kept on disk but left out of results.csv and the report (rerun with the "
                "earlier --rounds, --trials or controls to list them again)")
        distribute.check_same_progress(strategy, results.collect(run_dir, recipe))  # multi-worker resume
        rows = experiment.run()
    return run_dir, rows
