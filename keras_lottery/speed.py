"""Training speed on this machine and the projected wall time of each recipe.

``python -m keras_lottery.speed recipes/*.json`` builds each recipe's masked model on
random data of the dataset's shape, times ``--steps`` training steps at the recipe's
batch size (after untimed steps that trace the graph) and the evaluation of a
validation + test pass, and projects the recipe's wall time:

    steps = trials x (iterations + (rounds - 1) x variants x (iterations - rewind))
    time  = steps / (steps per second) + evaluations x (seconds per evaluation)

Dataset loading, pruning between rounds and file writes are not counted.

``--workers 1,2,8,32`` also projects the wall time with that many workers
(``keras-lottery run --workers N`` or ``keras-lottery worker``): the experiment's graph
(:mod:`keras_lottery.lottery.graph`) is walked as the workers walk it, each training
taking the time measured here, so each worker is assumed as fast as this machine's one
(a GPU each, or a machine each). Beside it: the total work and the critical path (the
chain of tickets each trial must train one after another), the bounds no number of
workers beats.

The Keras measured is the recipes' ``keras`` field (``--keras`` overrides it), on the
backend ``KERAS_BACKEND`` names for Keras 3, as ``keras-lottery run`` would train them.
"""

import time

import click
import numpy as np

from keras_lottery import flavours
from keras_lottery.config import catalog, recipe as recipes
from keras_lottery.errors import UsageError

TEST_SIZE = {"mnist": 10000, "cifar10": 10000, "digits": 360}


def _masked_model(r):
    from keras_lottery import masking, models, training
    from keras_lottery.training import regularization

    known = catalog.dataset_shape(r.dataset)
    if known is None:
        raise UsageError(f"{r.name}: the shape of dataset {r.dataset.name}'s inputs is not known without its data; "
                         "measure a recipe of mnist, cifar10, digits or a shipped text dataset")
    shape, classes = known
    plain = models.build(r.model, shape, classes, seed=0)
    rates = models.rates_by_layer(plain, r.pruning)
    model = masking.wrap(plain, rates)
    regularization.add_weight_decay(model, r.training.weight_decay)
    training.compile_model(model, r.training)
    return model, shape, classes


def measure(r, steps=20, warmup=3, eval_examples=2000):
    """``(training steps per second, evaluation examples per second)`` for recipe ``r``."""
    from keras_lottery import data, masking
    from keras_lottery.backend import keras
    from keras_lottery.data import augment

    keras.utils.set_random_seed(0)  # dropout needs a seed under op determinism
    model, shape, classes = _masked_model(r)
    rng = np.random.default_rng(0)
    n = max(r.training.batch_size * 4, eval_examples)
    if r.model.vocabulary_size:  # a text model: token ids
        x = rng.integers(0, r.model.vocabulary_size, size=(n, *shape)).astype(np.int32)
    else:
        x = rng.normal(size=(n, *shape)).astype(np.float32)
    y = rng.integers(0, classes, n).astype(np.int32)
    stream = data.train_stream(x, y, r.training.batch_size, seed=0,
                               augment=augment.flip_and_crop if r.dataset.augment else None)
    callbacks = masking.callbacks()
    model.fit(stream, steps_per_epoch=warmup, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
    start = time.perf_counter()
    model.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
    step_rate = steps / (time.perf_counter() - start)
    evaluation = data.eval_dataset(x[:eval_examples], y[:eval_examples], r.training.eval_batch_size)
    model.evaluate(evaluation, verbose=0)  # trace and fill the cache
    start = time.perf_counter()
    model.evaluate(evaluation, verbose=0)
    eval_rate = eval_examples / (time.perf_counter() - start)
    return step_rate, eval_rate


def training_steps(r):
    """Optimizer steps of the whole recipe (every trial, round and variant), as the graph counts them."""
    from keras_lottery.lottery import graph

    return r.trials * sum(graph.work(r, node) for node in graph.nodes(r, [0]))


def evaluations(r):
    """Validation + test passes of the whole recipe."""
    every = r.training.eval_every
    per_trial = r.training.iterations // every + (r.pruning.rounds - 1) * len(r.variants) * (
        (r.training.iterations - r.rewind.iteration) // every)
    return r.trials * per_trial


def projected_seconds(r, step_rate, eval_rate):
    eval_size = r.dataset.validation_size + TEST_SIZE.get(r.dataset.name, 10000)
    return training_steps(r) / step_rate + evaluations(r) * eval_size / eval_rate


def _measure_key(r):
    """Recipes alike in what their speed depends on are measured once."""
    return (repr(r.model), r.training.batch_size, r.dataset.name, r.dataset.augment, r.training.optimizer,
            r.training.weight_decay > 0, r.training.eval_batch_size)


def node_seconds(r, step_rate, eval_rate):
    """The seconds of each training of recipe ``r``, a function of its graph node."""
    from keras_lottery.lottery import graph

    eval_size = r.dataset.validation_size + TEST_SIZE.get(r.dataset.name, 10000)

    def seconds(node):
        steps = graph.work(r, node)
        return steps / step_rate + (steps // r.training.eval_every) * eval_size / eval_rate

    return seconds


def projection_row(r, step_rate, eval_rate, counts):
    """A markdown row: the recipe, its total work, critical path and wall time for each worker count."""
    from keras_lottery.lottery import graph

    seconds = node_seconds(r, step_rate, eval_rate)
    cells = []
    for count in counts:
        wall, total, critical = graph.project(r, seconds, count)
        cells.append(_duration(wall))
    return f"| {r.name} | {_duration(total)} | {_duration(critical)} | " + " | ".join(cells) + " |"


def _worker_counts(text):
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(not 1 <= count <= 4096 for count in counts):
        raise UsageError(f"--workers takes worker counts from 1 to 4096 separated by commas, e.g. 1,2,8,32; got {text!r}")
    return counts


def _duration(seconds):
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.0f} s"


def choose_keras(loaded, given=None):
    """Run the Keras ``given`` names, else the one the recipes ``loaded`` name (they must agree:
    a process runs one Keras)."""
    names = sorted({r.keras for r in loaded})
    if given is None and len(names) > 1:
        raise UsageError(
            f"the recipes name several Keras ({', '.join(names)}), and a process runs one; "
            "measure them in separate commands, or pass --keras"
        )
    return flavours.choose(given or names[0], why="--keras" if given else "the recipes' keras")


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="RECIPE...")
@click.option("--steps", default=20, show_default=True, help="Timed training steps per model.")
@click.option("--keras", "keras_flavour", type=click.Choice(flavours.NAMES),
              help="Keras to measure on (default: the recipes' keras; Keras 3's backend from KERAS_BACKEND).")
@click.option("--workers", "worker_counts", metavar="N,N,...",
              help="Also project the wall time with these numbers of workers (e.g. 1,2,8,32).")
def main(paths, steps, keras_flavour, worker_counts):
    """Measure steps/s of each RECIPE's model and project the recipe's wall time."""
    try:
        counts = _worker_counts(worker_counts) if worker_counts else None
        loaded = [recipes.load(catalog.find(path)) for path in paths]
        choose_keras(loaded, keras_flavour)
    except UsageError as err:
        raise click.UsageError(str(err)) from None
    from keras_lottery import backend
    from keras_lottery.backend import tf

    tf.config.experimental.enable_op_determinism()  # as keras-lottery run does
    click.echo(flavours.describe())
    click.echo(backend.describe_devices())
    measured = {}
    click.echo("| recipe | batch | steps/s | eval img/s | training steps | evaluations | projected time |")
    click.echo("|---|---:|---:|---:|---:|---:|---:|")
    for r in loaded:
        key = _measure_key(r)
        if key not in measured:
            measured[key] = measure(r, steps=steps)
        step_rate, eval_rate = measured[key]
        click.echo(
            f"| {r.name} | {r.training.batch_size} | {step_rate:.2f} | {eval_rate:,.0f} | {training_steps(r):,} | "
            f"{evaluations(r):,} | {_duration(projected_seconds(r, step_rate, eval_rate))} |"
        )
    if counts:
        click.echo("\nWith workers (each as fast as measured here):\n")
        click.echo("| recipe | total work | critical path | " + " | ".join(f"{n} worker{'s' * (n > 1)}" for n in counts) + " |")
        click.echo("|---|---:|---:|" + "---:|" * len(counts))
        for r in loaded:
            click.echo(projection_row(r, *measured[_measure_key(r)], counts))


if __name__ == "__main__":
    main()
