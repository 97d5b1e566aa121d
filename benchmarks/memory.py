"""Memory of Lenet-300-100 rounds: peak RSS, and RSS growth from round 1 to round N.

Runs the Lenet-300-100 recipe (ticket and random reinit, real MNIST when present) for
``--rounds`` pruning rounds of ``--iterations`` iterations, evaluating every 100, and
prints the process's resident memory after every trained variant. A leak of graphs or
models per round shows as growth between round 1 and the last round.

Example (the table in README):  python benchmarks/memory.py
"""

import argparse
import resource
import tempfile

import psutil

import common
from keras_lottery import data, lottery
from keras_lottery.config import recipe as recipes
from keras_lottery.backend import tf

MB = 2**20


def rss():
    return psutil.Process().memory_info().rss


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


class MeasuredExperiment(lottery.Experiment):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.samples = []

    def train_variant(self, trial, round_index, variant):
        super().train_variant(trial, round_index, variant)
        self.samples.append((round_index, variant, rss(), peak_rss()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="pruning rounds after the dense round 0")
    parser.add_argument("--iterations", type=int, default=500, help="iterations per round")
    parser.add_argument("--steps-per-execution", type=int, help="override training.steps_per_execution")
    args = parser.parse_args(argv)
    overrides = [f"training.iterations={args.iterations}", 'controls=["random_reinit"]']
    if args.steps_per_execution:
        overrides.append(f"training.steps_per_execution={args.steps_per_execution}")
    if common.MNIST.is_file():
        recipe = recipes.load(common.ROOT / "recipes" / "lenet300_mnist.json", overrides, data_path=common.MNIST,
                              rounds=args.rounds + 1, trials=1)
        splits = data.load(recipe.dataset)
        source = f"MNIST ({common.MNIST.name})"
    else:
        recipe = recipes.load(common.ROOT / "recipes" / "lenet300_mnist.json", overrides, rounds=args.rounds + 1,
                              trials=1)
        splits, source = common.load_splits("lenet", recipe.dataset.validation_size, 10000)
    print(f"start: {common.load_average()}; data {source}; RSS {rss() / MB:.0f} MB", flush=True)
    tf.config.experimental.enable_op_determinism()
    with tempfile.TemporaryDirectory() as run_dir:
        experiment = MeasuredExperiment(recipe, run_dir, splits, log=lambda *a: None)
        lottery.claim_run_dir(recipe, run_dir, experiment.identity())
        experiment.run()
    samples = experiment.samples
    print(f"end: {common.load_average()}\n")
    print(f"Lenet-300-100, {args.iterations} iterations per round, evaluation every "
          f"{recipe.training.eval_every}, steps_per_execution={recipe.training.steps_per_execution}")
    print(common.table(["round", "variant", "RSS MB", "peak RSS MB"],
                       [[r, v, f"{now / MB:.0f}", f"{peak / MB:.0f}"] for r, v, now, peak in samples]))
    after = {r: now for r, _, now, _ in samples}  # RSS after the last variant of each round
    first, last = min(r for r in after if r >= 1), max(after)
    growth = (after[last] - after[first]) / MB
    peak = max(p for *_, p in samples) / MB
    print(f"\npeak RSS {peak:.0f} MB (target < 1536 MB); RSS growth from round {first} to round {last}: "
          f"{growth:+.0f} MB ({growth / (last - first):+.1f} MB per round)")


if __name__ == "__main__":
    main()
