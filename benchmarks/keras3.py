"""Speed of a masked round on tf_keras+tfmot, Keras 3/TensorFlow and Keras 3/JAX, side by side.

Command (the table in README):  python benchmarks/keras3.py

Every path runs in its own process (a process runs one Keras: ``KERAS_LOTTERY_KERAS`` =
tf_keras or keras3, ``KERAS_BACKEND`` = tensorflow or jax); Keras 3/JAX is skipped with a
note when jax is not installed. Each process trains Lenet-300-100 with Adam at batch 60
(``steps_per_execution`` 20, as recipes/lenet300_mnist.json) on the same data, two arms:

- ``masked round``: a real keras-lottery round, ``lottery.Experiment.train_variant`` of the
  round 1 ticket (masks from pruning the dense round: 80% of hidden and 90% of output
  weights left), evaluating the 5,000 validation and 10,000 test examples every 100
  iterations (the paper's cadence);
- ``plain``: the same network unwrapped (no masks), compiled with the same settings
  (``training.compile_model``), trained by ``model.fit`` on the same seeded stream with the
  same evaluation every 100 iterations: the evaluator a round uses
  (``training.evaluation``), called from a callback at each epoch end as a round does.

Both throughputs are training iterations per second of ``model.fit`` at that cadence,
evaluation included (what a 50K-iteration round is made of); a round's fixed cost
(restoring weights, the start evaluation, saving weights, curve and summaries) is shown
apart, in seconds per round. Arms are timed interleaved across processes (tf_keras masked,
tf_keras plain, Keras 3/TF masked, ..., the masked/plain order alternating between
repeats), one process working at a time, so load affects every arm alike; each figure is
the median over repeats, each ratio the median of the paired ratios of one repeat.

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

HERE = Path(__file__).resolve().parent

PATHS = {  # name: (KERAS_LOTTERY_KERAS, KERAS_BACKEND)
    "tf_keras+tfmot": ("tf_keras", None),
    "Keras 3/TensorFlow": ("keras3", "tensorflow"),
    "Keras 3/JAX": ("keras3", "jax"),
}
REFERENCE = "tf_keras+tfmot"


# ---- the worker: one path, in its own process ------------------------------------------------


class Clock:
    """Seconds spent inside wrapped calls, accumulated until read."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed

    def read(self):
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def worker(args):
    """Build both arms, warm them up, then time one arm per command read from stdin."""
    # Protocol lines go to the original stdout; anything else printed (Keras, TensorFlow) to stderr.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.path.insert(0, str(HERE))
    import common
    from keras_lottery import data, lottery, masking, models, training
    from keras_lottery.backend import BACKEND, FLAVOUR, keras
    from keras_lottery.training import evaluation

    splits, description = common.load_splits("lenet", args.val_size, args.test_size)
    recipe = common.make_recipe("lenet", args.iterations, args.eval_every, args.eval_batch_size,
                                args.steps_per_execution, args.jit, validation_size=len(splits.x_val))
    config = recipe.training

    # Masked arm: a real round, with clocks on model.fit and on the evaluation callback.
    evaluation_clock = Clock()
    training.Evaluate.on_epoch_end = evaluation_clock.wrap(training.Evaluate.on_epoch_end)
    run_dir = tempfile.mkdtemp(prefix="keras3-bench-")
    experiment = lottery.Experiment(recipe, run_dir, splits, log=lambda *a: None)
    fit_clock = Clock()
    experiment.model.fit = fit_clock.wrap(experiment.model.fit)
    experiment.theta0(0)
    experiment.train_variant(0, 0, "ticket")  # the dense round: gives round 1 its masks
    experiment.train_variant(0, 1, "ticket")  # traces everything round 1 uses
    density = {k: round(float(v.mean()), 3) for k, v in masking.get_masks(experiment.model).items()}

    # Plain arm: the unwrapped network, the same compile settings, data stream and evaluator.
    plain = models.build(recipe.model, splits.input_shape, splits.num_classes, seed=0)
    training.compile_model(plain, config)
    val_data = data.eval_dataset(splits.x_val, splits.y_val, config.eval_batch_size)
    test_data = data.eval_dataset(splits.x_test, splits.y_test, config.eval_batch_size)

    class PlainEvaluation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            evaluated = evaluation.evaluator(self.model, val_data, test_data)()
            self.rows.append((evaluated["val"]["loss"], evaluated["test"]["accuracy"]))

    def plain_round(seed):
        stream = data.train_stream(splits.x_train, splits.y_train, config.batch_size, seed=seed)
        callback = PlainEvaluation()
        callback.rows = []
        start = time.perf_counter()
        plain.fit(stream, steps_per_epoch=config.eval_every, epochs=config.iterations // config.eval_every,
                  callbacks=[callback], shuffle=False, verbose=0)
        seconds = time.perf_counter() - start
        if len(callback.rows) != config.iterations // config.eval_every:
            raise RuntimeError(f"plain training evaluated {len(callback.rows)} times")
        return {"fit": seconds}

    def masked_round():
        fit_clock.read(), evaluation_clock.read()
        start = time.perf_counter()
        experiment.train_variant(0, 1, "ticket")
        total = time.perf_counter() - start
        return {"fit": fit_clock.read(), "evaluation": evaluation_clock.read(), "total": total}

    plain_round(0)  # traces plain training and its evaluator
    info = {"flavour": FLAVOUR, "backend": BACKEND, "data": description, "density": density}
    protocol.write("ready " + json.dumps(info) + "\n")
    protocol.flush()
    repeat = 0
    for line in sys.stdin:
        command = line.strip()
        repeat += 1
        result = masked_round() if command == "masked" else plain_round(repeat)
        protocol.write(json.dumps(result) + "\n")
        protocol.flush()


# ---- the driver ------------------------------------------------------------------------------


class Worker:
    """One path's worker process; ``run(arm)`` times one arm there."""

    def __init__(self, name, args, log_dir):
        flavour, backend = PATHS[name]
        env = dict(os.environ, KERAS_LOTTERY_KERAS=flavour, TF_CPP_MIN_LOG_LEVEL="3")
        if backend:
            env["KERAS_BACKEND"] = backend
        self.name = name
        self.log = Path(log_dir) / (name.replace("/", "-").replace("+", "-") + ".log")
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
    parser.add_argument("--iterations", type=int, default=1000, help="training iterations per timed round")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats of every arm")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-batch-size", type=int, default=1000)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--steps-per-execution", type=int, default=20)
    parser.add_argument("--jit", action="store_true",
                        help="XLA (jit_compile) on tf_keras and Keras 3/TensorFlow too (always on for JAX)")
    parser.add_argument("--paths", default=",".join(PATHS),
                        help=f"comma-separated, of: {', '.join(PATHS)}")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    names = [n.strip() for n in args.paths.split(",") if n.strip()]
    unknown = [n for n in names if n not in PATHS]
    if unknown:
        parser.error(f"unknown path {unknown[0]!r}; choose from {', '.join(PATHS)}")
    notes = []
    if "Keras 3/JAX" in names and importlib.util.find_spec("jax") is None:
        names.remove("Keras 3/JAX")
        notes.append("Keras 3/JAX skipped: jax is not installed (pip install \"jax[cpu]\")")
        log(notes[-1])
    log(f"start: {load_average()}")
    workers = {}
    times = {(n, arm): [] for n in names for arm in ("masked", "plain")}
    parts = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="keras3-bench-logs-") as log_dir:
        try:
            for name in names:  # one at a time: warm-ups (tracing) do not compete for the cores
                log(f"starting {name} (loading data, dense round, warm-up round and plain warm-up)")
                workers[name] = Worker(name, args, log_dir)
                info = workers[name].ready()
                log(f"  {name}: {info['flavour']}/{info['backend']}, {info['data']}; round 1 density {info['density']}")
            for repeat in range(args.repeats):
                arms = ("masked", "plain") if repeat % 2 == 0 else ("plain", "masked")
                line = []
                for name in names:
                    for arm in arms:
                        result = workers[name].run(arm)
                        times[(name, arm)].append(result["fit"])
                        if arm == "masked":
                            parts[name].append(result)
                        line.append(f"{name} {arm} {args.iterations / result['fit']:.0f}/s")
                log(f"  repeat {repeat + 1}/{args.repeats}: " + ", ".join(line))
        finally:
            for worker_ in workers.values():
                worker_.close()
    log(f"end: {load_average()}")

    def paired(numerator, denominator):
        """Median over repeats of time[denominator] / time[numerator] (throughput ratio)."""
        return statistics.median(d / n for n, d in zip(times[numerator], times[denominator]))

    rows, summary = [], {}
    for name in names:
        masked = args.iterations / statistics.median(times[(name, "masked")])
        plain = args.iterations / statistics.median(times[(name, "plain")])
        ratio = paired((name, "masked"), (name, "plain"))
        versus = paired((name, "masked"), (REFERENCE, "masked")) if REFERENCE in names else None
        share = statistics.median(p["evaluation"] / p["fit"] for p in parts[name])
        fixed = statistics.median(p["total"] - p["fit"] for p in parts[name])
        summary[name] = {"masked": masked, "plain": plain, "masked/plain": ratio, "vs reference": versus}
        rows.append([name, f"{masked:.0f}", f"{plain:.0f}", f"{ratio:.2f}",
                     "-" if versus is None else f"{versus:.2f}", f"{100 * share:.0f}%", f"{fixed:.2f}"])
    print()
    print(f"Lenet-300-100, batch 60, steps_per_execution {args.steps_per_execution}, jit_compile "
          f"{'on' if args.jit else 'off (on for JAX)'}, {args.iterations} iterations per timed round, evaluation "
          f"every {args.eval_every} iterations ({args.val_size} validation + {args.test_size} test, batch "
          f"{args.eval_batch_size}); medians of {args.repeats} interleaved repeats")
    print(table(["path", "masked round steps/s", "plain steps/s", "masked/plain (>= 0.9)",
                 f"masked vs {REFERENCE} round (>= 1.5)", "evaluation share", "fixed s/round"], rows))
    print(f"- data: {workers[names[0]].info['data']}" if names else "")
    for note in notes:
        print(f"- {note}")
    if REFERENCE in names and len(names) > 1:
        fastest = max((n for n in names if n != REFERENCE), key=lambda n: summary[n]["vs reference"])
        print(f"- fastest masked path: {fastest}, {summary[fastest]['vs reference']:.2f}x the {REFERENCE} round "
              f"(target >= 1.5)")
    for name in names:
        print(f"- {name}: masked round {summary[name]['masked/plain']:.2f}x plain training (target >= 0.9)")


if __name__ == "__main__":
    main()
