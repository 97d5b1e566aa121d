"""Smaller and faster: Lenet-300-100 tickets exported to LiteRT, unstructured vs 4x1 blocks vs dense.

Trains two shortened runs on MNIST with ``keras-lottery run`` (the ticket and the random
reinitialization control): ``lenet300_mnist`` (unstructured) and ``lenet300_mnist_blocks``
(``pruning.structure [4, 1]``). Then, for each run and each of ``--at`` rounds, float32
and int8, it converts the dense round 0 and the ticket as ``keras-lottery export --format
tflite --benchmark`` does (:func:`keras_lottery.export_tflite.benchmark`) and prints:

- file and gzip size, batch-1 and batch-32 latency (1 thread, median of ``--calls`` warm
  calls; dense and ticket measured in alternation) and the ratios dense / ticket;
- the test accuracy of each ``.tflite``, of the Keras ticket, and the share of test
  examples on which the ticket's ``.tflite`` and Keras predictions agree;
- the ticket's early-stop test accuracy next to random reinitialization at the same mask
  (does the lottery ticket effect survive 4x1 blocks?).

Latency depends on the machine's load: the load average is printed; the ratios measured
side by side are what counts.

Example (the table in docs/deploying.md)::

    python benchmarks/export_tflite.py --iterations 2000 --at 10,14,16 --out /tmp/tflite-bench
"""

import argparse
import json
import os
import subprocess
import sys

import common  # noqa: F401  (puts this checkout first on sys.path)
from keras_lottery import export_tflite
from keras_lottery.rundir import storage, layout

RECIPES = ("lenet300_mnist", "lenet300_mnist_blocks")


def train(recipe, out, args):
    """Run (or resume) ``recipe`` shortened; return its run directory."""
    run_dir = os.path.join(out, recipe)
    command = [
        sys.executable, "-m", "keras_lottery.cli", "run", recipe, "--out", run_dir, "--data", str(args.data),
        "--rounds", str(max(args.at) + 1), "--trials", "1",
        "--set", f"training.iterations={args.iterations}", "--set", f"training.eval_every={args.eval_every}",
        "--set", 'controls=["random_reinit"]',
    ]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return run_dir


def accuracy(run_dir, round_index, variant):
    rows = storage.read_json(layout.results_json(run_dir))
    found = [r for r in rows if r["round"] == round_index and r["variant"] == variant and r["trial"] == 0]
    return found[0]["early_stop_test_accuracy"] if found else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(common.MNIST))
    parser.add_argument("--out", required=True, help="folder for the two run directories and the scratch files")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--at", default="10,14,16", help="rounds to export (0.8^r of hidden weights remain)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--formats", default="float32,int8")
    args = parser.parse_args()
    args.at = [int(r) for r in args.at.split(",")]
    scratch = os.path.join(args.out, "scratch")
    os.makedirs(scratch, exist_ok=True)
    entries = []
    for recipe in RECIPES:
        run_dir = train(recipe, args.out, args)
        for round_index in args.at:
            for fmt in args.formats.split(","):
                entry = export_tflite.benchmark(run_dir, round_index, quantize=None if fmt == "float32" else fmt,
                                                calls=args.calls, scratch=scratch)
                entry["recipe"] = recipe
                entry["keras_early_stop"] = {v: accuracy(run_dir, round_index, v) for v in ("ticket", "random_reinit")}
                entries.append(entry)
                print(f"{recipe} round {round_index} {fmt}:", *export_tflite.describe_benchmark(entry), sep="\n  ",
                      flush=True)
    print()
    print(f"Lenet-300-100 on MNIST, {args.iterations} iterations per round; 1 thread; median of {args.calls} calls; "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    print()
    print("\n".join(markdown(entries)))
    with open(os.path.join(args.out, "export_tflite.json"), "w") as f:
        json.dump(entries, f, indent=1)


def markdown(entries):
    """The side-by-side table of benchmark ``entries`` (the dense model once per format)."""
    lines = [
        "| structure | round | % weights | format | file | gzip | size ratio | batch-1 µs | speed-up b1 | batch-32 µs "
        "| speed-up b32 | kernels run sparse (runtime) | tflite acc | Keras acc | agree | ticket ES acc "
        "| random reinit ES acc |",
        "|:--|---:|---:|:--|---:|---:|---:|---:|---:|---:|---:|:--|---:|---:|---:|---:|---:|",
    ]
    dense_done = set()
    for e in entries:
        d, t, r = e["dense"], e["pruned"], e["ratios"]
        if e["format"] not in dense_done:
            dense_done.add(e["format"])
            lines.append(
                f"| dense | 0 | 100.0 | {e['format']} | {d['bytes'] / 1e3:,.0f} kB | {d['gzip_bytes'] / 1e3:,.0f} kB | "
                f"1.0x | {d['latency_batch1_us']:.1f} | 1.0x | {d['latency_batch32_us']:.1f} | 1.0x | "
                f"{d['sparse_kernels']}/{d['kernels']} ({d['delegate']}) | {100 * d['tflite_accuracy']:.2f}% | "
                f"{100 * d['keras_accuracy']:.2f}% | {100 * d['agreement']:.2f}% | | |")
        lines.append(
            f"| {e['structure']} | {e['round']} | {e['weights_remaining']:.1f} | {e['format']} | "
            f"{t['bytes'] / 1e3:,.0f} kB | {t['gzip_bytes'] / 1e3:,.0f} kB | {r['size']:.1f}x | "
            f"{t['latency_batch1_us']:.1f} | {r['speed_batch1']:.2f}x | {t['latency_batch32_us']:.1f} | "
            f"{r['speed_batch32']:.2f}x | {t['sparse_kernels']}/{t['kernels']} ({t['delegate']}) | "
            f"{100 * t['tflite_accuracy']:.2f}% | {100 * t['keras_accuracy']:.2f}% | {100 * t['agreement']:.2f}% | "
            f"{100 * e['keras_early_stop']['ticket']:.2f}% | {100 * e['keras_early_stop']['random_reinit']:.2f}% |")
    return lines


if __name__ == "__main__":
    main()
