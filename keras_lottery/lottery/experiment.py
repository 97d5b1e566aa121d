"""Rounds: the lottery-ticket experiment, trial by trial, round by round, variant by variant.

Round 0 trains the dense network from θ0 and saves θk. Round r >= 1 prunes the
previous ticket's trained weights (iterative) or the dense network's (one-shot), and
trains three variants on that round's sparsity:

- ``ticket``: the magnitude mask, survivors rewound to θk;
- ``random_reinit``: the same mask, weights drawn afresh from the same initializer;
- ``random_prune``: a random mask with the ticket's per-layer sparsity, rewound to θk.

Finished variants (``summary.json`` present) are skipped, so rerunning a command
resumes at the first unfinished round, inside it from the last mid-round checkpoint
(:mod:`checkpoints`). Damaged files are redone (:mod:`integrity`), a diverging variant
is recorded as failed (:mod:`failures`), and one process at a time holds the run
directory (:mod:`locking`).
"""

import json
import zlib
from pathlib import Path

import numpy as np

from keras_lottery.data import augment
from keras_lottery import data, distribute, masking, models, pruning, results
from keras_lottery.training import regularization
from keras_lottery.lottery import checkpoints, failures
from keras_lottery.rundir import integrity, locking, storage
from keras_lottery.reporting import summaries
from keras_lottery import training
from keras_lottery.backend import keras, tf
from keras_lottery.config.recipe import RecipeError, parse
from keras_lottery.lottery.rewinding import Rewind


class RunDirError(ValueError):
    """A run directory that belongs to another recipe or is not a run directory."""


def derive_seed(*parts):
    """A seed (< 2**20) derived from the recipe seed and names such as trial and round."""
    ints = [p if isinstance(p, int) else zlib.crc32(str(p).encode()) for p in parts]
    return int(np.random.SeedSequence(ints).generate_state(1)[0] % 2**20)


def run_dir_for(recipe, out=None, root="runs"):
    return Path(out) if out else Path(root) / f"{recipe.name}-{recipe.short_hash()}"


def claim_run_dir(recipe, run_dir):
    """Create (or reuse) ``run_dir`` for ``recipe``; refuse one that holds another recipe.

    The resolved recipe is written by :func:`run` once it holds the directory's lock.
    """
    run_dir = Path(run_dir)
    saved = run_dir / "recipe.json"
    if saved.is_file():
        try:
            other = parse(storage.read_json(saved))
        except (RecipeError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunDirError(f"{saved} is not a readable recipe ({err}); choose another --out") from None
        if other.short_hash() != recipe.short_hash():
            raise RunDirError(
                f"{run_dir} holds results of a different recipe ({other.name}-{other.short_hash()}); "
                "choose another --out or remove that directory"
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunDirError(f"{run_dir} exists and is not a keras-lottery run directory; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def start_weights(run_dir, recipe, trial, round_index, variant, initial_weights):
    """Weights a variant starts from, before masking: θ0 (round 0), θk, or a fresh draw.

    ``initial_weights(seed)`` returns a freshly initialized model's weights.
    """
    if variant == "random_reinit":
        return initial_weights(derive_seed(recipe.seed, trial, round_index, "random_reinit"))
    name = "init.npz" if round_index == 0 else "rewind.npz"
    return storage.load_arrays(storage.trial_dir(run_dir, trial) / name)


class Experiment:
    """One recipe's model, data and run directory; :meth:`run` does all the rounds."""

    def __init__(self, recipe, run_dir, splits, log=print, strategy=None):
        self.recipe, self.run_dir, self.splits, self.log = recipe, Path(run_dir), splits, log
        # Every round's stream reads the training images from one tensor. Holding them only as
        # that tensor frees the numpy copy (170 MB for MNIST, 600 MB for CIFAR-10).
        splits.x_train = tf.constant(splits.x_train)
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():  # the model's variables are mirrored on every replica
            plain = self.build_plain(0)
        self.kernel_sizes = models.kernel_sizes(plain)
        self.rates = pruning.layer_rates(models.layer_kinds(plain), recipe.pruning.rates)
        if not self.rates:
            raise RecipeError(
                f"recipe key 'pruning.rates': no layer of {recipe.model.name} has a kind in "
                f"{sorted(recipe.pruning.rates)}; its layers are {sorted(set(models.layer_kinds(plain).values()))}"
            )
        with self.strategy.scope():
            self.model = masking.wrap(plain, self.rates)
            regularization.add_weight_decay(self.model, recipe.training.weight_decay)
            training.compile_model(self.model, recipe.training)
        batch = recipe.training.eval_batch_size
        self.val_data = data.eval_dataset(splits.x_val, splits.y_val, batch)
        self.test_data = data.eval_dataset(splits.x_test, splits.y_test, batch)

    def build_plain(self, seed):
        return models.build(self.recipe.model, self.splits.input_shape, self.splits.num_classes, seed)

    def initial_weights(self, seed):
        return masking.get_weights(self.build_plain(seed))

    # ---- weights and masks of each variant -------------------------------------------

    def theta0(self, trial):
        path = storage.trial_dir(self.run_dir, trial) / "init.npz"
        if path.is_file():
            return storage.load_arrays(path)
        weights = self.initial_weights(derive_seed(self.recipe.seed, trial, "init"))
        storage.save_arrays(path, weights)
        return weights

    def ticket_masks(self, trial, round_index):
        """The magnitude mask of ``round_index`` (computed once, then read from disk)."""
        path = storage.variant_dir(self.run_dir, trial, round_index, "ticket") / "mask.npz"
        if path.is_file():
            return storage.load_arrays(path)
        if round_index == 0:
            masks = masking.dense_masks(self.model)
        else:
            source = round_index - 1 if self.recipe.pruning.method == "iterative" else 0
            trained = storage.load_arrays(storage.variant_dir(self.run_dir, trial, source, "ticket") / "final.npz")
            previous = self.ticket_masks(trial, source)
            kernels = {name: trained[f"{name}/kernel"] for name in self.rates}
            masks = pruning.magnitude_masks(kernels, previous, self.rates, round_index, self.recipe.pruning.scope)
        storage.save_arrays(path, masks)
        return masks

    def variant_masks(self, trial, round_index, variant):
        masks = self.ticket_masks(trial, round_index)
        if variant == "random_prune":
            return pruning.random_masks(masks, derive_seed(self.recipe.seed, trial, round_index, "random_prune"))
        return masks

    def start_weights(self, trial, round_index, variant):
        return start_weights(self.run_dir, self.recipe, trial, round_index, variant, self.initial_weights)

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
                for variant in recipe.variants if round_index else ("ticket",):
                    if storage.is_finished(self.run_dir, trial, round_index, variant):
                        continue
                    self.train_variant(trial, round_index, variant)
                self.write_results()
        return results.collect(self.run_dir, recipe)

    def train_variant(self, trial, round_index, variant):
        recipe, config = self.recipe, self.recipe.training
        out = storage.variant_dir(self.run_dir, trial, round_index, variant)
        masks = self.variant_masks(trial, round_index, variant)
        remaining = pruning.weights_remaining(masks, self.kernel_sizes)
        start_iteration = recipe.rewind.iteration if round_index else 0
        keras.utils.set_random_seed(derive_seed(recipe.seed, trial, round_index, variant, "train"))
        training.reset_optimizer(self.model, start_iteration)
        rewind = Rewind(
            save_at=recipe.rewind.iteration if round_index == 0 else None,
            weights=self.start_weights(trial, round_index, variant),
            masks=masks,
        )
        several_workers = distribute.task(self.strategy)[0] is not None
        resume = checkpoints.MidRound(out, config, self.model, rewind, self.log, same_cadence_everywhere=several_workers)
        round_start, start_iteration = start_iteration, resume.restore(start_iteration)
        stream = data.train_stream(
            self.splits.x_train, self.splits.y_train, config.batch_size,
            seed=derive_seed(recipe.seed, trial, "data"), start_step=start_iteration,
            augment=augment.flip_and_crop if recipe.dataset.augment else None,
        )
        label = f"trial {trial} round {round_index}/{recipe.pruning.rounds - 1} {variant}"
        self.log(f"{label}: training {remaining:.1f}% of weights for {config.iterations - round_start} iterations")
        if resume.resumed_at is not None:
            self.log(f"{label}: resumed from iteration {resume.resumed_at} (mid-round checkpoint)")
        timer = training.Timer()
        every = max(1, (config.iterations // config.eval_every) // 10)

        def progress(row):
            resume.record(row)
            if (row["iteration"] // config.eval_every) % every == 0:
                self.log(
                    f"  {label} iteration {row['iteration']}/{config.iterations}: "
                    f"val loss {row['val_loss']:.4f} val acc {row['val_accuracy']:.4f} "
                    f"test acc {row['test_accuracy']:.4f} ({timer():.0f}s)"
                )

        try:
            training.train(
                self.model, stream, self.val_data, self.test_data, config,
                start_iteration=start_iteration, callbacks=[rewind], progress=progress, late_callbacks=[resume],
            )
        except training.DivergedError as err:
            return self.fail(out, label, trial, round_index, variant, remaining, resume, err)
        curve = resume.curve  # includes evaluations made before a resume
        masking.apply_masks(self.model)
        storage.save_arrays(out / "mask.npz", masks)
        storage.save_arrays(out / "final.npz", masking.get_weights(self.model))
        storage.write_csv(out / "curve.csv", curve, results.CURVE_COLUMNS)
        if round_index == 0 and variant == "ticket":
            storage.save_arrays(storage.trial_dir(self.run_dir, trial) / "rewind.npz", rewind.saved)
        summary = results.summarize(trial, round_index, variant, remaining, curve)
        summary["seconds"] = round(resume.seconds(), 2)
        summaries.write_curve(self.run_dir, trial, round_index, variant, curve)
        if variant == "ticket":
            summaries.write_sparsity(self.run_dir, trial, round_index, pruning.layer_sparsity(masks), remaining)
        storage.write_json(out / "summary.json", summary)
        checkpoints.clear(out)
        self.log(
            f"{label}: {remaining:.1f}% weights, early stop at iteration {summary['early_stop_iteration']} "
            f"with test accuracy {summary['early_stop_test_accuracy']:.4f} ({summary['seconds']:.0f}s)"
        )

    def fail(self, out, label, trial, round_index, variant, remaining, resume, error):
        """Record a diverged variant as failed (see :mod:`failures`); the run goes on."""
        storage.write_csv(out / "curve.csv", resume.curve, results.CURVE_COLUMNS)
        summary = failures.failed_summary(trial, round_index, variant, remaining, resume.curve, error)
        summary["seconds"] = round(resume.seconds(), 2)
        storage.write_json(out / "summary.json", summary)
        checkpoints.clear(out)
        self.log(f"{label}: FAILED, training diverged: {error}")

    def write_results(self):
        rows = results.collect(self.run_dir, self.recipe)
        results.write(self.run_dir, rows)
        summaries.write_rounds(self.run_dir, [row for row in rows if failures.status(row) == failures.OK])


def run(recipe, out=None, log=print):
    """Run ``recipe``: load data, claim the run directory, train every round; return rows."""
    strategy = distribute.create(recipe.distribute)  # first: multi-worker needs it before any TF op
    log(distribute.describe(strategy, recipe.distribute, recipe.training.batch_size))
    tf.config.experimental.enable_op_determinism()
    splits = data.load(recipe.dataset)
    run_dir = distribute.work_dir(run_dir_for(recipe, out), strategy)  # non-chief workers: scratch
    experiment = Experiment(recipe, run_dir, splits, log, strategy)  # refuses a model it cannot prune
    claim_run_dir(recipe, run_dir)
    with locking.hold(run_dir):  # refuses a second process at once
        storage.write_json(run_dir / "recipe.json", recipe.to_dict())
        storage.write_json(run_dir / "model.json", {
            "input_shape": list(splits.input_shape), "num_classes": splits.num_classes,
        })
        log(f"run directory: {run_dir}")
        integrity.repair(run_dir, recipe, log)  # damaged files are redone, never read as finished
        distribute.check_same_progress(strategy, results.collect(run_dir, recipe))  # multi-worker resume
        rows = experiment.run()
    return run_dir, rows
