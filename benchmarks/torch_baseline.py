"""A minimal masked PyTorch training loop: the baseline column of ``throughput.py``.

The same model, Adam settings, batch 60, evaluation cadence and evaluation sets as the
keras-lottery round; after every optimizer step each weight is multiplied by its mask.
torch is an optional benchmark dependency (``pip install torch``), never a package one.

``throughput.py`` runs this file as a worker process (``--worker``): it loads the data
and warms up, then trains one round for every ``run`` line on stdin and answers ``done``.
Running the frameworks in separate processes keeps their thread pools from competing.
OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``): on a shared, loaded
machine, spinning OpenMP threads made PyTorch 15x slower.
"""

import argparse
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402


def build(name, density, learning_rate, seed=0):
    import torch

    nn = torch.nn
    torch.manual_seed(seed)
    if name == "lenet":
        net = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                            nn.Linear(100, 10))
        names = ["fc1", "fc2", "output"]
    else:
        net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 16 * 16, 256), nn.ReLU(),
                            nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
        names = ["conv1", "conv2", "fc1", "fc2", "output"]
    layers = [m for m in net if isinstance(m, (nn.Linear, nn.Conv2d))]
    generator = torch.Generator().manual_seed(seed)
    masks = [(torch.rand(layer.weight.shape, generator=generator) < density.get(n, 1.0)).float()
             for layer, n in zip(layers, names)]
    with torch.no_grad():
        for layer, mask in zip(layers, masks):
            layer.weight.mul_(mask)
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    return net, layers, masks, optimizer


class MaskedLoop:
    """``round_(iterations)`` trains with masks, evaluating val and test every ``eval_every`` steps."""

    def __init__(self, name, splits, density, learning_rate, eval_every, eval_batch_size, batch_size=60):
        import torch

        self.torch = torch
        self.net, self.layers, self.masks, self.optimizer = build(name, density, learning_rate)
        self.loss = torch.nn.CrossEntropyLoss()
        self.eval_every, self.eval_batch_size, self.batch_size = eval_every, eval_batch_size, batch_size

        def images(x):  # NHWC arrays -> NCHW tensors
            return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

        def labels(y):
            return torch.from_numpy(y.astype(np.int64))

        self.x, self.y = images(splits.x_train), labels(splits.y_train)
        self.eval_sets = [(images(splits.x_val), labels(splits.y_val)), (images(splits.x_test), labels(splits.y_test))]
        self.generator = torch.Generator().manual_seed(1)
        self.order, self.position = torch.randperm(len(self.x), generator=self.generator), 0

    def evaluate(self):
        self.net.eval()
        results = []
        with self.torch.inference_mode():
            for x, y in self.eval_sets:
                loss, correct = 0.0, 0
                for i in range(0, len(x), self.eval_batch_size):
                    logits = self.net(x[i:i + self.eval_batch_size])
                    target = y[i:i + self.eval_batch_size]
                    loss += float(self.loss(logits, target)) * len(target)
                    correct += int((logits.argmax(1) == target).sum())
                results.append((loss / len(x), correct / len(x)))
        self.net.train()
        return results

    def round_(self, iterations):
        curve = []
        for iteration in range(1, iterations + 1):
            if self.position + self.batch_size > len(self.x):
                self.order, self.position = self.torch.randperm(len(self.x), generator=self.generator), 0
            index = self.order[self.position:self.position + self.batch_size]
            self.position += self.batch_size
            loss = self.loss(self.net(self.x[index]), self.y[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            with self.torch.no_grad():
                for layer, mask in zip(self.layers, self.masks):
                    layer.weight.mul_(mask)
            if iteration % self.eval_every == 0:
                curve.append((iteration, loss.item(), self.evaluate()))
        return curve


def available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def worker(args):
    import json

    import torch
    from common import MODEL_SETUPS, load_splits

    splits, _ = load_splits(args.model, args.val_size, args.test_size)
    loop = MaskedLoop(args.model, splits, json.loads(args.density), MODEL_SETUPS[args.model]["learning_rate"],
                      args.eval_every, args.eval_batch_size)
    loop.round_(args.eval_every)  # warm up
    print(f"ready torch {torch.__version__} threads {torch.get_num_threads()}", flush=True)
    if not args.worker:  # standalone: time rounds and print their throughput
        import time

        for _ in range(3):
            start = time.perf_counter()
            loop.round_(args.iterations)
            print(f"{args.iterations / (time.perf_counter() - start):.0f} steps/s", flush=True)
        return
    for line in sys.stdin:
        if line.strip() == "run":
            loop.round_(args.iterations)
            print("done", flush=True)


class Worker:
    """The PyTorch loop in its own process; calling it trains one round there."""

    def __init__(self, model, iterations, eval_every, eval_batch_size, val_size, test_size, density):
        import json
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", "--model", model, "--iterations", str(iterations),
             "--eval-every", str(eval_every), "--eval-batch-size", str(eval_batch_size), "--val-size", str(val_size),
             "--test-size", str(test_size), "--density", json.dumps(density)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.info = self.process.stdout.readline().strip()
        if not self.info.startswith("ready"):
            raise RuntimeError(f"the PyTorch worker did not start: {self.info!r}")

    def __call__(self):
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if answer != "done":
            raise RuntimeError(f"the PyTorch worker failed: {answer!r}")

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-batch-size", type=int, default=1000)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--density", default="{}", help='JSON {layer: fraction of weights kept}')
    worker(parser.parse_args())
