"""Speed of a masked round on tf_keras+tfmot, Keras 3/TensorFlow and Keras 3/JAX, side by side.

Command (the table in README):  python benchmarks/keras3.py

Every path runs in its own process (a process runs one Keras: ``KERAS_LOTTERY_KERAS`` =
tf_keras or keras3, ``KERAS_BACKEND`` = tensorflow or jax); Keras 3/JAX is skipped with a
note when jax is not installed. Each process trains Lenet-300-100 with Adam at batch 60
(``steps_per_execution`` 20, as recipes/lenet300_mnist.json) on the same data (MNIST from
``../shared/data/mnist.npz`` or ``KERAS_LOTTERY_MNIST`` when present, else random arrays of
its shape: the output says which), three arms:

- ``masked round``: a real keras-lottery round, ``lottery.Experiment.train_variant`` of the
  round 1 ticket (masks from pruning the dense round: 80% of hidden and 90% of output
  weights left), evaluating the 5,000 validation and 10,000 test examples every 100
  iterations (the paper's cadence). On JAX its ``fit`` runs each call's 20 steps in one
  compiled loop (``keras_lottery/training/jax_steps.py``);
- ``plain``: the same network unwrapped (no masks), compiled by ``model.compile`` with the
  settings a round uses (Adam, loss, metric, ``steps_per_execution``, ``jit_compile``) and
  trained by Keras's own ``model.fit`` on the same seeded stream, evaluated every 100
  iterations by the evaluator a round uses (``training.evaluation``, from a callback at each
  epoch end), so that the ratio measures masking and the round's machinery, not a slower
  evaluation (``model.evaluate`` pays Python overhead per batch);
- ``plain, no evaluation``: the same plain training without evaluation (what the issue's
  figures measured), to show the evaluation's share.

Throughputs are training iterations per second of ``model.fit``, at that cadence with its
evaluations included for the first two arms (what a 50K-iteration round is made of); a round's fixed cost
(restoring weights, the start evaluation, saving weights, curve and summaries) is shown
apart, in seconds per round. Arms are timed interleaved across processes (tf_keras's
three arms, then Keras 3/TensorFlow's, then Keras 3/JAX's, in each repeat; which arm goes
first rotates between repeats), one process working at a time, so load affects every arm
alike; each figure is the median over repeats, each ratio the median of the paired ratios
of one repeat. The load average is printed at the start and the end.

Options: ``--iterations`` per timed round (default 500), ``--repeats`` (default 8),
``--paths`` (a subset of tf_keras,tensorflow,jax), ``--jit`` (XLA on the TensorFlow paths
too); ``--help`` lists all. The defaults take about 5 minutes on 2 CPU cores.

Targets (issue 11): the fastest masked path at least 1.5x the tf_keras masked round, and
each masked round at least 0.9x plain training on its backend.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clock import Clock

HERE = Path(__file__).resolve().parent

PATHS = {  # --paths key: (name in the table, KERAS_LOTTERY_KERAS, KERAS_BACKEND)
    "tf_keras": ("tf_keras+tfmot", "tf_keras", None),
    "tensorflow": ("Keras 3/TensorFlow", "keras3", "tensorflow"),
    "jax": ("Keras 3/JAX", "keras3", "jax"),
}
REFERENCE = "tf_keras"


# ---- the worker: one path, in its own process ------------------------------------------------


def worker(args):
    """Build the arms, warm them up, then time one arm per command read from stdin."""
    # Protocol lines go to the original stdout; anything else printed (Keras, TensorFlow) to stderr.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.path.insert(0, str(HERE))
    import common
    from keras_lottery import data, lottery, masking, models, training
    from keras_lottery.backend import BACKEND, FLAVOUR, keras
    from keras_lottery.training import evaluation, loop

    splits, description = common.load_splits("lenet", args.val_size, args.test_size)
    recipe = common.make_recipe("lenet", args.iterations, args.eval_every, args.eval_batch_size,
                                args.steps_per_execution, args.jit, validation_size=len(splits.x_val))
    config = recipe.training

    # Masked arm: a real round, with clocks on model.fit and on the evaluation callback.
    evaluation_clock = Clock()
    training.Evaluate.on_epoch_end = evaluation_clock.wrap(training.Evaluate.on_epoch_end)
    run_dir = tempfile.TemporaryDirectory(prefix="keras3-bench-run-")
    experiment = lottery.Experiment(recipe, run_dir.name, splits, log=lambda *a: None)
    fit_clock = Clock()
    experiment.model.fit = fit_clock.wrap(experiment.model.fit)
    experiment.theta0(0)
    experiment.train_variant(0, 0, "ticket")  # the dense round: gives round 1 its masks
    experiment.train_variant(0, 1, "ticket")  # traces everything round 1 uses
    density = {k: round(float(v.mean()), 3) for k, v in masking.get_masks(experiment.model).items()}

    # Plain arm: the unwrapped network, the same compile settings, data stream and evaluator.
    plain = models.build(recipe.model, splits.input_shape, splits.num_classes, seed=0)
    plain.compile(  # Keras's own fit, with the settings training.compile_model gives the round
        optimizer=training.make_optimizer(config),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=training.steps_per_execution(config), jit_compile=loop.jit_compile(config),
    )
    val_data = data.eval_dataset(splits.x_val, splits.y_val, config.eval_batch_size)
    test_data = data.eval_dataset(splits.x_test, splits.y_test, config.eval_batch_size)

    class PlainEvaluation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            evaluated = evaluation.evaluator(self.model, val_data, test_data)()
            self.rows.append((evaluated["val"]["loss"], evaluated["test"]["accuracy"]))

    def plain_round(seed, evaluate=True):
        stream = data.train_stream(splits.x_train, splits.y_train, config.batch_size, seed=seed)
        callback = PlainEvaluation()
        callback.rows = []
        start = time.perf_counter()
        plain.fit(stream, steps_per_epoch=config.eval_every, epochs=config.iterations // config.eval_every,
                  callbacks=[callback] if evaluate else [], shuffle=False, verbose=0)
        seconds = time.perf_counter() - start
        if len(callback.rows) != (config.iterations // config.eval_every if evaluate else 0):
            raise RuntimeError(f"plain training evaluated {len(callback.rows)} times")
        return {"fit": seconds}

    def masked_round():
        fit_clock.read(), evaluation_clock.read()
        start = time.perf_counter()
        experiment.train_variant(0, 1, "ticket")
        total = time.perf_counter() - start
        return {"fit": fit_clock.read(), "evaluation": evaluation_clock.read(), "total": total}

    plain_round(0)  # traces plain training and its evaluator
    plain_round(0, evaluate=False)
    info = {"flavour": FLAVOUR, "backend": BACKEND, "data": description, "density": density}
    protocol.write("ready " + json.dumps(info) + "\n")
    protocol.flush()
    repeat = 0
    for line in sys.stdin:
        command = line.strip()
        repeat += 1
        if command == "masked":
            result = masked_round()
        elif command in ("plain", "training"):
            result = plain_round(repeat, evaluate=command == "plain")
        else:
            raise SystemExit(f"unknown command {command!r}")
        protocol.write(json.dumps(result) + "\n")
        protocol.flush()
    run_dir.cleanup()


# ---- the driver ------------------------------------------------------------------------------
# It imports neither TensorFlow nor Keras (common.py does): every Keras runs in a worker.


class Worker:
    """One path's worker process; ``run(arm)`` times one arm there."""

    def __init__(self, key, args, log_dir):
        self.name, flavour, backend = PATHS[key]
        env = dict(os.environ, KERAS_LOTTERY_KERAS=flavour, TF_CPP_MIN_LOG_LEVEL="3")
        if backend:
            env["KERAS_BACKEND"] = backend
        self.log = Path(log_dir) / f"{key}.log"
        command = [sys.executable, str(Path(__file__).resolve()), "--worker",
                   "--iterations", str(args.iterations), "--eval-every", str(args.eval_every),
                   "--eval-batch-size", str(args.eval_batch_size), "--val-size", str(args.val_size),
                   "--test-size", str(args.test_size), "--steps-per-execution", str(args.steps_per_execution)]
        if args.jit:
            command.append("--jit")
        self.stderr = open(self.log, "w")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, text=True, env=env, cwd=str(HERE.parent))

    def _answer(self):
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            tail = "".join(self.log.read_text().splitlines(keepends=True)[-15:])
            raise RuntimeError(f"the {self.name} worker stopped (exit {self.process.returncode}); "
                               f"the end of {self.log}:\n{tail}")
        return line.strip()

    def ready(self):
        answer = self._answer()
        if not answer.startswith("ready "):
            raise RuntimeError(f"the {self.name} worker did not start: {answer!r}")
        self.info = json.loads(answer[len("ready "):])
        return self.info

    def run(self, arm):
        self.process.stdin.write(arm + "\n")
        self.process.stdin.flush()
        return json.loads(self._answer())

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.stderr.close()


def load_average():
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=500, help="training iterations per timed round")
    parser.add_argument("--repeats", type=int, default=8, help="interleaved repeats of every arm")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-batch-size", type=int, default=1000)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--steps-per-execution", type=int, default=20)
    parser.add_argument("--jit", action="store_true",
                        help="XLA (jit_compile) on tf_keras and Keras 3/TensorFlow too (always on for JAX)")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of: {', '.join(PATHS)}")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.iterations % args.eval_every:
        parser.error("--iterations must be a multiple of --eval-every")
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    keys = [k.strip() for k in args.paths.split(",") if k.strip()]
    unknown = [k for k in keys if k not in PATHS]
    if unknown:
        parser.error(f"unknown path {unknown[0]!r}; choose from {', '.join(PATHS)}")
    notes = []
    if "jax" in keys and importlib.util.find_spec("jax") is None:
        keys.remove("jax")
        notes.append('Keras 3/JAX skipped: jax is not installed (pip install "jax[cpu]")')
        log(notes[-1])
    if not keys:
        parser.error("no path to time")
    name = {key: PATHS[key][0] for key in keys}
    log("command: python benchmarks/keras3.py " + " ".join(sys.argv[1:] if argv is None else argv))
    log(f"start: {load_average()}")
    workers = {}
    arms = ("masked", "plain", "training")
    times = {(key, arm): [] for key in keys for arm in arms}
    parts = {key: [] for key in keys}
    with tempfile.TemporaryDirectory(prefix="keras3-bench-logs-") as log_dir:
        try:
            for key in keys:  # one at a time: warm-ups (tracing) do not compete for the cores
                log(f"starting {name[key]} (loading data, dense round, warm-up round and plain warm-up)")
                workers[key] = Worker(key, args, log_dir)
                info = workers[key].ready()
                log(f"  {name[key]}: {info['flavour']}/{info['backend']}, {info['data']}; "
                    f"round 1 density {info['density']}")
            for repeat in range(args.repeats):
                order = arms[repeat % len(arms):] + arms[:repeat % len(arms)]  # each arm first in turn
                line = []
                for key in keys:
                    done = []
                    for arm in order:
                        result = workers[key].run(arm)
                        times[(key, arm)].append(result["fit"])
                        if arm == "masked":
                            parts[key].append(result)
                        done.append(f"{arm} {args.iterations / result['fit']:.0f}/s")
                    line.append(f"{name[key]}: " + ", ".join(done))
                log(f"  repeat {repeat + 1}/{args.repeats}: " + "; ".join(line))
        finally:
            for worker_ in workers.values():
                worker_.close()
    log(f"end: {load_average()}")

    def paired(numerator, denominator):
        """Median over repeats of time[denominator] / time[numerator] (throughput ratio)."""
        return statistics.median(d / n for n, d in zip(times[numerator], times[denominator]))

    rows, summary = [], {}
    for key in keys:
        masked = args.iterations / statistics.median(times[(key, "masked")])
        plain = args.iterations / statistics.median(times[(key, "plain")])
        training_only = args.iterations / statistics.median(times[(key, "training")])
        ratio = paired((key, "masked"), (key, "plain"))
        versus = paired((key, "masked"), (REFERENCE, "masked")) if REFERENCE in keys else None
        share = statistics.median(p["evaluation"] / p["fit"] for p in parts[key])
        fixed = statistics.median(p["total"] - p["fit"] for p in parts[key])
        summary[key] = {"masked/plain": ratio, "vs reference": versus}
        rows.append([name[key], f"{masked:.0f}", f"{plain:.0f}", f"{ratio:.2f}",
                     "-" if versus is None else f"{versus:.2f}", f"{training_only:.0f}",
                     f"{100 * share:.0f}%", f"{fixed:.2f}"])
    print()
    print(f"Lenet-300-100, batch 60, steps_per_execution {args.steps_per_execution}, jit_compile "
          f"{'on' if args.jit else 'off (on for JAX)'}, {args.iterations} iterations per timed round, evaluation "
          f"every {args.eval_every} iterations ({args.val_size} validation + {args.test_size} test, batch "
          f"{args.eval_batch_size}); medians of {args.repeats} interleaved repeats")
    print(table(["path", "masked round steps/s", "plain steps/s", "masked/plain (>= 0.9)",
                 f"masked vs {PATHS[REFERENCE][0]} round (>= 1.5)", "plain, no evaluation steps/s",
                 "evaluation share of the round", "fixed s/round"], rows))
    print(f"- data: {workers[keys[0]].info['data']}")
    for note in notes:
        print(f"- {note}")
    others = [key for key in keys if key != REFERENCE]
    if REFERENCE in keys and others:
        fastest = max(others, key=lambda key: summary[key]["vs reference"])
        print(f"- fastest masked path: {name[fastest]}, {summary[fastest]['vs reference']:.2f}x the "
              f"{PATHS[REFERENCE][0]} round (target >= 1.5)")
    for key in keys:
        print(f"- {name[key]}: masked round {summary[key]['masked/plain']:.2f}x plain training (target >= 0.9)")


if __name__ == "__main__":
    main()
