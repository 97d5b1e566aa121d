"""Shared pieces of the benchmarks: data, the paper's models and recipes, timing, tables.

Run the benchmarks from the repository root (``python benchmarks/throughput.py``) so
that this checkout of keras_lottery is imported.
"""

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keras_lottery import data  # noqa: E402
from keras_lottery.config import recipe as recipes

MNIST = Path(os.environ.get("KERAS_LOTTERY_MNIST", ROOT.parent / "shared" / "data" / "mnist.npz"))


# Batch 60 and the optimizers of the paper (Figure 2); pruning rates of its Figure 2.
MODEL_SETUPS = {
    "lenet": {"model": {"name": "lenet_300_100"}, "learning_rate": 0.0012,
              "rates": {"dense": 0.2, "output": 0.1}},
    "conv2": {"model": {"name": "conv2"}, "learning_rate": 0.0002,
              "rates": {"conv": 0.1, "dense": 0.2, "output": 0.1}},
}


def synthetic_splits(shape, train, val, test, seed=0):
    """Random images (already normalized) and labels of a dataset's shape."""
    rng = np.random.default_rng(seed)

    def part(n):
        return rng.standard_normal((n, *shape), dtype=np.float32), rng.integers(0, 10, n).astype(np.int32)

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = part(train), part(val), part(test)
    return data.Splits(x_train, y_train, x_val, y_val, x_test, y_test, num_classes=10)


def load_splits(name, val_size, test_size, train_size=None):
    """Real MNIST (``data.load_npz`` path) for Lenet when present, else synthetic arrays.

    Returns ``(splits, description)``.
    """
    if name == "lenet" and MNIST.is_file():
        config = recipes.DatasetConfig(name="mnist", path=str(MNIST), validation_size=val_size)
        splits = data.load(config)
        splits.x_test, splits.y_test = splits.x_test[:test_size], splits.y_test[:test_size]
        return splits, f"MNIST ({MNIST.name}): {len(splits.x_train)} train, {val_size} val, {test_size} test"
    shape = (28, 28, 1) if name == "lenet" else (32, 32, 3)
    train = train_size or (55000 if name == "lenet" else 10000)
    splits = synthetic_splits(shape, train, val_size, test_size)
    return splits, f"synthetic {'x'.join(map(str, shape))}: {train} train, {val_size} val, {test_size} test"


def make_recipe(name, iterations, eval_every=100, eval_batch_size=1000, steps_per_execution=1, jit=False,
                validation_size=5000):
    setup = MODEL_SETUPS[name]
    return recipes.parse({
        "name": f"bench-{name}",
        "dataset": {"name": "mnist" if name == "lenet" else "cifar10", "validation_size": validation_size},
        "model": setup["model"],
        "training": {"optimizer": "adam", "learning_rate": setup["learning_rate"], "batch_size": 60,
                     "iterations": iterations, "eval_every": eval_every, "eval_batch_size": eval_batch_size,
                     "steps_per_execution": steps_per_execution, "jit_compile": jit},
        "pruning": {"rates": setup["rates"], "rounds": 2},
        "controls": ["random_reinit"],
        "trials": 1,
        "seed": 0,
    })


def interleave(arms, repeats, log=print):
    """Time every arm ``repeats`` times, arms interleaved; returns ``{arm: [seconds, ...]}``."""
    times = {name: [] for name in arms}
    for repeat in range(repeats):
        for name, arm in arms.items():
            start = time.perf_counter()
            arm()
            times[name].append(time.perf_counter() - start)
        log(f"  repeat {repeat + 1}/{repeats}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in arms))
    return times


def paired_ratio(times, numerator, denominator):
    """Median over repeats of time[denominator]/time[numerator]: throughput of numerator relative to denominator."""
    return statistics.median(d / n for n, d in zip(times[numerator], times[denominator]))


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def load_average():
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"
