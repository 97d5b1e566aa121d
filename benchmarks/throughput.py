"""Throughput of a keras-lottery round against the same training in plain tf_keras and PyTorch.

Every arm trains the same model (Lenet-300-100 or Conv-2) with Adam at batch 60 for the
same number of iterations, evaluating validation and test sets of the same sizes every
``--eval-every`` iterations (the paper: 100). Arms are timed interleaved, ``--repeats``
times; each ratio is the median over repeats of the paired ratio of the two arms.

Arms:
- ``keras-lottery``: a real round, ``lottery.Experiment.train_variant`` (round 1 ticket,
  masks on: restoring θ0, training, evaluating, writing curve, weights and summaries).
  Clocks on ``model.fit`` and on the evaluation callback split its time into training
  with evaluation (the throughput column, what a 50K-iteration round is made of), the
  evaluation share of that, and the fixed per-round cost (restore, save, summaries);
- ``plain tf_keras``: an unwrapped model, ``fit(validation_data=...)`` and a callback
  calling ``evaluate`` on the test set, with the same compile settings;
- ``PyTorch`` (``torch_baseline.py``, in its own process): a minimal loop multiplying
  each weight by its mask after every step; skipped when torch is not installed.

Example (the table in README):  python benchmarks/throughput.py
"""

import argparse
import statistics
import tempfile
import time

import common
from clock import Clock
import torch_baseline
from keras_lottery import lottery, masking, models, training
from keras_lottery.backend import keras, tf


EVALUATION_CLOCK = Clock()  # time in the evaluation callback (evaluation, curve row, progress log)
training.Evaluate.on_epoch_end = EVALUATION_CLOCK.wrap(training.Evaluate.on_epoch_end)


def keras_lottery_arm(name, splits, args, run_dir):
    """A real round (round 1 ticket), with clocks on ``model.fit`` and on the evaluation callback."""
    recipe = common.make_recipe(name, args.iterations, args.eval_every, args.eval_batch_size,
                                args.steps_per_execution, args.jit, validation_size=len(splits.x_val))
    experiment = lottery.Experiment(recipe, run_dir, splits, log=lambda *a: None)
    fit_clock, eval_clock = Clock(), EVALUATION_CLOCK
    experiment.model.fit = fit_clock.wrap(experiment.model.fit)
    experiment.theta0(0)
    experiment.train_variant(0, 0, "ticket")  # the dense round: builds masks for round 1, traces everything
    experiment.train_variant(0, 1, "ticket")
    parts = {"fit": [], "evaluation": []}

    def round_():
        fit_clock.read(), eval_clock.read()
        experiment.train_variant(0, 1, "ticket")
        parts["fit"].append(fit_clock.read())
        parts["evaluation"].append(eval_clock.read())

    density = {k: float(v.mean()) for k, v in masking.get_masks(experiment.model).items()}
    return round_, parts, density


def plain_keras_arm(name, splits, args):
    setup = common.MODEL_SETUPS[name]
    recipe = common.make_recipe(name, args.iterations)
    model = models.build(recipe.model, splits.input_shape, splits.num_classes, seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(setup["learning_rate"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=args.steps_per_execution, jit_compile=args.jit,
    )
    train = (tf.data.Dataset.from_tensor_slices((splits.x_train, splits.y_train))
             .shuffle(len(splits.x_train), seed=0).repeat().batch(60, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    val = tf.data.Dataset.from_tensor_slices((splits.x_val, splits.y_val)).batch(args.eval_batch_size).cache()
    test = tf.data.Dataset.from_tensor_slices((splits.x_test, splits.y_test)).batch(args.eval_batch_size).cache()
    curve = []

    class TestEvaluation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            curve.append((logs["val_loss"], self.model.evaluate(test, verbose=0)))

    def round_():
        model.fit(train, steps_per_epoch=args.eval_every, epochs=args.iterations // args.eval_every,
                  validation_data=val, callbacks=[TestEvaluation()], verbose=0)

    round_()
    return round_


def benchmark(name, args, log):
    val_size = args.val_size if args.val_size is not None else (5000 if name == "lenet" else 1000)
    test_size = args.test_size if args.test_size is not None else (10000 if name == "lenet" else 1000)
    splits, description = common.load_splits(name, val_size, test_size)
    log(f"{name}: {description}, {args.iterations} iterations per round")
    worker = None
    with tempfile.TemporaryDirectory() as run_dir:
        keras_lottery, parts, density = keras_lottery_arm(name, splits, args, run_dir)
        arms = {"keras-lottery": keras_lottery, "plain tf_keras": plain_keras_arm(name, splits, args)}
        if not args.no_torch and torch_baseline.available():
            worker = torch_baseline.Worker(name, args.iterations, args.eval_every, args.eval_batch_size,
                                           val_size, test_size, density)
            arms["PyTorch"] = worker
            log(f"  PyTorch worker: {worker.info}")
        else:
            log("  PyTorch column skipped (torch not installed, or --no-torch)")
        try:
            times = common.interleave(arms, args.repeats, log)
        finally:
            if worker:
                worker.close()
    fit = parts["fit"]
    result = {
        "model": name,
        "data": f"{description}; {args.iterations} iterations per timed round",
        # Throughput of training with evaluation at the cadence (model.fit), as in a 50K-iteration round.
        "keras-lottery": args.iterations / statistics.median(fit),
        "plain tf_keras": args.iterations / statistics.median(times["plain tf_keras"]),
        "vs plain tf_keras": statistics.median(p / f for f, p in zip(fit, times["plain tf_keras"])),
        "evaluation share": statistics.median(e / f for e, f in zip(parts["evaluation"], fit)),
        "fixed seconds": statistics.median(r - f for r, f in zip(times["keras-lottery"], fit)),
        "fit seconds": statistics.median(fit),
    }
    if "PyTorch" in times:
        result["PyTorch"] = args.iterations / statistics.median(times["PyTorch"])
        result["vs PyTorch"] = statistics.median(t / f for f, t in zip(fit, times["PyTorch"]))
    return result


def lenet_projection(seconds_per_iteration, fixed_seconds, iterations=50000):
    """Minutes for the Lenet-300-100 protocol: rounds until < 2% remain, ticket + random reinit, 1 trial."""
    recipe = common.recipes.load(common.ROOT / "recipes" / "lenet300_mnist.json")
    sizes = {"fc1": 784 * 300, "fc2": 300 * 100, "output": 100 * 10}
    kinds = {"fc1": "dense", "fc2": "dense", "output": "output"}
    total = sum(sizes.values())
    rounds = 0
    while sum(sizes[k] * (1 - recipe.pruning.rates[kinds[k]]) ** rounds for k in sizes) / total >= 0.02:
        rounds += 1
    runs = 1 + 2 * rounds  # dense round 0, then ticket and random reinit in rounds 1..rounds
    return rounds, runs, runs * (fixed_seconds + iterations * seconds_per_iteration) / 60


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lenet,conv2", help="comma-separated: lenet, conv2")
    parser.add_argument("--iterations", type=int, default=1000, help="iterations per timed round (Lenet)")
    parser.add_argument("--conv-iterations", type=int, default=200, help="iterations per timed round (Conv-2)")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-batch-size", type=int, default=1000)
    parser.add_argument("--val-size", type=int, help="validation examples (default 5000 Lenet, 1000 Conv-2)")
    parser.add_argument("--test-size", type=int, help="test examples (default 10000 Lenet, 1000 Conv-2)")
    parser.add_argument("--steps-per-execution", type=int, default=20,
                        help="for keras-lottery and plain tf_keras (recipes/lenet300_mnist.json uses 20)")
    parser.add_argument("--jit", action="store_true", help="XLA (jit_compile) for keras-lottery and plain tf_keras")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    args = parser.parse_args(argv)
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    log(f"start: {common.load_average()}")
    results = []
    for name in args.models.split(","):
        model_args = argparse.Namespace(**vars(args))
        if name == "conv2":
            model_args.iterations = args.conv_iterations
        results.append(benchmark(name, model_args, log))
    log(f"end: {common.load_average()}")
    has_torch = any("vs PyTorch" in r for r in results)
    header = ["model", "keras-lottery steps/s", "plain tf_keras steps/s", "ratio (>= 0.97)"]
    if has_torch:
        header += ["PyTorch steps/s", "ratio (>= 1.2)"]
    header += ["evaluation share (<= 10%)", "fixed s/round"]
    rows = []
    for r in results:
        row = [r["model"], f"{r['keras-lottery']:.0f}", f"{r['plain tf_keras']:.0f}", f"{r['vs plain tf_keras']:.2f}"]
        if has_torch:
            row += [f"{r['PyTorch']:.0f}", f"{r['vs PyTorch']:.2f}"] if "vs PyTorch" in r else ["-", "-"]
        row += [f"{100 * r['evaluation share']:.0f}%", f"{r['fixed seconds']:.2f}"]
        rows.append(row)
    print()
    print(f"steps_per_execution={args.steps_per_execution} jit_compile={args.jit}, evaluation every "
          f"{args.eval_every} iterations (eval batch {args.eval_batch_size}), medians of {args.repeats} "
          "interleaved repeats")
    print(common.table(header, rows))
    for r in results:
        print(f"- {r['model']}: {r['data']}")
    lenet = [r for r in results if r["model"] == "lenet"]
    if lenet:
        per_iteration = lenet[0]["fit seconds"] / args.iterations
        rounds, runs, minutes = lenet_projection(per_iteration, lenet[0]["fixed seconds"])
        print(f"\nLenet-300-100 paper protocol (rounds 0..{rounds} to < 2% remaining, ticket + random reinit = "
              f"{runs} runs x 50K iterations, 1 trial), projected from the measured round: "
              f"{minutes:.0f} minutes (target <= 60)")


if __name__ == "__main__":
    main()
