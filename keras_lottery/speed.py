"""Training speed on this machine and the projected wall time of each recipe.

``python -m keras_lottery.speed recipes/*.json`` builds each recipe's masked model on
random data of the dataset's shape, times ``--steps`` training steps at the recipe's
batch size (after untimed steps that trace the graph) and the evaluation of a
validation + test pass, and projects the recipe's wall time:

    steps = trials x (iterations + (rounds - 1) x variants x (iterations - rewind))
    time  = steps / (steps per second) + evaluations x (seconds per evaluation)

Dataset loading, pruning between rounds and file writes are not counted.
"""

import time

import click
import numpy as np

from keras_lottery.data import augment
from keras_lottery.config import catalog, recipe as recipes
from keras_lottery import data, masking, models, training
from keras_lottery.training import regularization
from keras_lottery.backend import keras, tf, tfmot

TEST_SIZE = {"mnist": 10000, "cifar10": 10000, "digits": 360}


def _masked_model(r):
    shape, classes = catalog.DATASET_SHAPES[r.dataset.name]
    plain = models.build(r.model, shape, classes, seed=0)
    rates = models.rates_by_layer(plain, r.pruning)
    model = masking.wrap(plain, rates)
    regularization.add_weight_decay(model, r.training.weight_decay)
    training.compile_model(model, r.training)
    return model, shape, classes


def measure(r, steps=20, warmup=3, eval_examples=2000):
    """``(training steps per second, evaluation examples per second)`` for recipe ``r``."""
    keras.utils.set_random_seed(0)  # dropout needs a seed under op determinism
    model, shape, classes = _masked_model(r)
    rng = np.random.default_rng(0)
    n = max(r.training.batch_size * 4, eval_examples)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    y = rng.integers(0, classes, n).astype(np.int32)
    stream = data.train_stream(x, y, r.training.batch_size, seed=0,
                               augment=augment.flip_and_crop if r.dataset.augment else None)
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    model.fit(stream, steps_per_epoch=warmup, epochs=1, verbose=0, callbacks=callbacks)
    start = time.perf_counter()
    model.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=callbacks)
    step_rate = steps / (time.perf_counter() - start)
    evaluation = data.eval_dataset(x[:eval_examples], y[:eval_examples], r.training.eval_batch_size)
    model.evaluate(evaluation, verbose=0)  # trace and fill the cache
    start = time.perf_counter()
    model.evaluate(evaluation, verbose=0)
    eval_rate = eval_examples / (time.perf_counter() - start)
    return step_rate, eval_rate


def training_steps(r):
    """Optimizer steps of the whole recipe (every trial, round and variant)."""
    pruned_rounds = r.pruning.rounds - 1
    per_trial = r.training.iterations + pruned_rounds * len(r.variants) * (r.training.iterations - r.rewind.iteration)
    return r.trials * per_trial


def evaluations(r):
    """Validation + test passes of the whole recipe."""
    every = r.training.eval_every
    per_trial = r.training.iterations // every + (r.pruning.rounds - 1) * len(r.variants) * (
        (r.training.iterations - r.rewind.iteration) // every)
    return r.trials * per_trial


def projected_seconds(r, step_rate, eval_rate):
    eval_size = r.dataset.validation_size + TEST_SIZE.get(r.dataset.name, 10000)
    return training_steps(r) / step_rate + evaluations(r) * eval_size / eval_rate


def _duration(seconds):
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.0f} s"


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="RECIPE...")
@click.option("--steps", default=20, show_default=True, help="Timed training steps per model.")
def main(paths, steps):
    """Measure steps/s of each RECIPE's model and project the recipe's wall time."""
    tf.config.experimental.enable_op_determinism()  # as keras-lottery run does
    measured = {}
    click.echo("| recipe | batch | steps/s | eval img/s | training steps | evaluations | projected time |")
    click.echo("|---|---:|---:|---:|---:|---:|---:|")
    for path in paths:
        r = recipes.load(path)
        key = (r.model, r.training.batch_size, r.dataset.name, r.dataset.augment, r.training.optimizer,
               r.training.weight_decay > 0, r.training.eval_batch_size)
        if key not in measured:
            measured[key] = measure(r, steps=steps)
        step_rate, eval_rate = measured[key]
        click.echo(
            f"| {r.name} | {r.training.batch_size} | {step_rate:.2f} | {eval_rate:,.0f} | {training_steps(r):,} | "
            f"{evaluations(r):,} | {_duration(projected_seconds(r, step_rate, eval_rate))} |"
        )


if __name__ == "__main__":
    main()
