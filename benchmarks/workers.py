"""Wall time of whole runs with 1 and with N workers, side by side, and their results compared.

    python benchmarks/workers.py                  # the quick start and a shortened Lenet, 1 vs 2 workers
    python benchmarks/workers.py --workers 3 --skip-lenet

Each case runs ``keras-lottery run`` as a user would (a fresh process, a fresh run
directory in a temporary folder), first with one worker, then with N, and repeats the
pair ``--repeats`` times (arms interleaved). It prints the median wall time of each arm,
their ratio (the target is at least 1.5x with 2 workers on 2 cores) and whether
results.csv is the same in every column but ``seconds`` (the target: it is). The
shortened Lenet (2 trials, 5 rounds, 2,000 iterations; real MNIST from
``../shared/data/mnist.npz`` or ``KERAS_LOTTERY_MNIST``) is skipped when MNIST is absent.
"""

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MNIST, ROOT, load_average, table

CASES = {
    "quick start (digits, 10 rounds, 19 trainings)": ["quickstart_digits"],
    "Lenet-300-100, MNIST, 2 trials x 5 rounds, 2,000 iterations (26 trainings)": [
        "lenet300_mnist", "--trials", "2", "--rounds", "5", "--set", "training.iterations=2000",
        "--set", "training.eval_every=200", "--data", str(MNIST)],
}


def run(args, workers, folder):
    """Seconds of ``keras-lottery run ARGS --workers N`` and its results rows (no seconds column)."""
    out = Path(folder) / f"run-{workers}-{time.monotonic_ns()}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "keras_lottery", "run", *args, "--out", str(out), "--plain",
                           "--workers", str(workers)], env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"keras-lottery run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    with open(out / "results.csv", newline="") as handle:
        rows = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]
    return seconds, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-lenet", action="store_true")
    options = parser.parse_args()
    print(load_average())
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        for name, args in CASES.items():
            if "lenet" in args[0] and (options.skip_lenet or not MNIST.is_file()):
                print(f"skipped: {name}" + ("" if options.skip_lenet else f" (no MNIST at {MNIST})"))
                continue
            times, results = {1: [], options.workers: []}, {}
            for repeat in range(options.repeats):
                for count in times:
                    seconds, rows = run(args, count, folder)
                    times[count].append(seconds)
                    results.setdefault(count, rows)
                    same = rows == results[1] if 1 in results else None
                    print(f"  {name}: {count} worker(s), repeat {repeat + 1}: {seconds:.1f}s"
                          + ("" if same is None else f", results.csv {'same' if same else 'DIFFERENT'}"), flush=True)
            one, many = statistics.median(times[1]), statistics.median(times[options.workers])
            same = results[options.workers] == results[1]
            lines.append([name, f"{one:.1f}", f"{many:.1f}", f"{one / many:.2f}x", "yes" if same else "NO"])
    print()
    print(table(["run", "1 worker (s)", f"{options.workers} workers (s)", "speed-up", "same results.csv"], lines))
    print(load_average())


if __name__ == "__main__":
    main()
