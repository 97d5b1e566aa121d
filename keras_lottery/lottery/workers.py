"""Workers: processes that claim the ready trainings of a run directory and train them.

A :class:`Worker` walks the experiment's graph (:mod:`.graph`): it claims the first
ready training (:mod:`keras_lottery.rundir.claims`), trains it (resuming from its
newest mid-round checkpoint, which the training's previous owner may have left),
releases the claim and rewrites the shared results files under the short shared lock.
It stops when nothing is left to train; what it waits for while other workers train
the tickets that the next trainings need depends on how it was started:

- ``keras-lottery run`` with one worker (the default) trains in its own process, in the
  sequential order keras-lottery always had;
- ``keras-lottery run --workers N`` (:func:`run_pool`) starts N worker processes
  (``keras-lottery worker RUN --relay``), shows their progress and waits for them; they
  work until the whole experiment is finished, taking over the training of a worker that
  died;
- ``keras-lottery worker RUN_DIR`` (:func:`join`) joins a run directory (on this machine
  or on a shared filesystem) and works until no training is left that it could claim:
  it exits 0 when the experiment is finished, and early when every unfinished training
  is claimed by a live worker and nothing waits for them.

Every seed derives from (trial, round, variant), so results do not depend on how many
workers trained them or in which order.
"""

import os
import pickle
import queue
import subprocess
import sys
import threading
import time

from keras_lottery.errors import UsageError
from keras_lottery.lottery import graph, session
from keras_lottery.reporting import progress as displays
from keras_lottery.rundir import claims, layout

POLL_SECONDS = 0.5


class WorkerError(UsageError):
    """A worker cannot join this run directory."""


def busy_trials(run_dir):
    """The trials in which a live worker holds a claim."""
    found = set()
    folder = layout.claims_dir(run_dir)
    if not folder.is_dir():
        return found
    for path in folder.iterdir():
        key = layout.claim_key(path)
        if key is not None and claims.holder(path) is not None:
            found.add(key[0])
    return found


class Worker:
    """Trains the ready trainings of ``experiment``'s run directory, one at a time.

    ``until_finished``: wait while other workers hold claims (a worker of ``run``);
    otherwise stop once nothing is left that this worker could claim (``worker``).
    """

    def __init__(self, experiment, name=None, until_finished=True, poll=POLL_SECONDS):
        self.experiment, self.until_finished, self.poll = experiment, until_finished, poll
        self.me = claims.owner(name)
        self.trained = 0

    def _claim(self, node):
        return claims.try_claim(layout.claim_file(self.experiment.run_dir, node.trial, node.round, node.variant),
                                self.me)

    def run(self):
        experiment = self.experiment
        run_dir, recipe = experiment.run_dir, experiment.recipe
        while True:
            node, remaining = graph.next_ready(run_dir, recipe, self._claim)
            if node is None:
                if not remaining or not (self.until_finished or self._something_waits()):
                    return self.trained
                time.sleep(self.poll)
                continue
            path = layout.claim_file(run_dir, node.trial, node.round, node.variant)
            with claims.Held(path, self.me) as held:
                with claims.shared_lock(run_dir, self.me):
                    experiment.theta0(node.trial)
                try:
                    experiment.train_variant(node.trial, node.round, node.variant, claim=held)
                except session.ClaimLost:
                    experiment.log(f"{node.label(recipe)}: taken over by another worker (this one was cut off); "
                                   "left to it")
                    continue
            self.trained += 1
            with claims.shared_lock(run_dir, self.me):
                experiment.write_results()
            experiment.progress.tally(*graph.tally(run_dir, recipe))

    def _something_waits(self):
        """Whether some unfinished training waits for another (so it may become ready for us)."""
        experiment = self.experiment
        for node in graph.nodes(experiment.recipe, layout.trials_present(experiment.run_dir, experiment.recipe.trials)):
            if graph.state(experiment.run_dir, experiment.recipe, node) == graph.WAITING:
                return True
        return False


# ---- several workers on this machine ----------------------------------------------------------


THREADS_VARIABLE = "KERAS_LOTTERY_WORKER_THREADS"


def threads_per_worker(count):
    """The CPU threads of each of ``count`` workers on one machine: ``KERAS_LOTTERY_WORKER_THREADS``
    if set, else an equal share of the cores."""
    given = os.environ.get(THREADS_VARIABLE, "")
    return int(given) if given.isdigit() and int(given) > 0 else max(1, (os.cpu_count() or 1) // count)


def share_cores(count):
    """Give this process (one of ``count`` workers) its share of the CPU cores, where
    TensorFlow has not started yet. The results do not depend on it (op determinism)."""
    from keras_lottery.backend import BACKEND, tf

    if BACKEND != "tensorflow":
        return
    threads = threads_per_worker(count)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already started in this process: its threads stay
        pass


def _environment(count, devices, index):
    """The environment of worker ``index`` of ``count``: this process's import path (a model
    function's module imports there as here), and its device or its share of the CPU cores."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(entry for entry in [os.getcwd(), *sys.path] if entry and os.path.isdir(entry))
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = str(devices[index % len(devices)])
        return env
    threads = threads_per_worker(count)
    env.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
    env.setdefault("TF_NUM_INTEROP_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", str(threads))
    if threads == 1 and "--xla_cpu_multi_thread_eigen" not in env.get("XLA_FLAGS", ""):
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1").strip()
    return env


def payload(recipe, model=None, data=None):
    """What a worker process needs to rebuild the experiment, as bytes: the recipe, and a
    model function or data given from Python (by value: ``cloudpickle``)."""
    import cloudpickle  # a model function defined in a script (__main__) travels by value

    try:
        return cloudpickle.dumps({"recipe": recipe.to_dict(), "model": model, "data": data})
    except Exception as err:  # e.g. a tf.data dataset, a function holding a lock
        raise WorkerError(
            f"the model function or data given from Python cannot be sent to worker processes "
            f"({type(err).__name__}: {str(err)[:120]}); pass numpy arrays and a plain function, or run with "
            "workers=1") from None


def worker_names(count):
    return [f"w{index + 1}" for index in range(count)]


class Pool:
    """``count`` worker processes beside this one (``with Pool(...) as pool``), their
    progress shown on ``display``. They start at once and build the experiment from
    ``payload`` (bytes, from :func:`payload`) while this process sets the run directory up;
    :meth:`start` then tells them where it is, and they train. On leaving the block the
    pool waits for them to end (a worker that ended with an error says so; the others, this
    process's among them, take its training over); if the block ends with an error, the
    workers are stopped. Names are ``w2``, ``w3``, ...: ``w1`` is this process's own worker."""

    def __init__(self, recipe, count, display, payload, devices=None):
        self.recipe, self.count, self.display = recipe, count, display
        self.payload, self.devices = payload, devices
        self.run_dir = None
        self.stopping = False  # this process stopped: the workers' last words are not shown
        self.lock = threading.RLock()
        self.children, self.feeders = {}, {}
        self.lines = queue.Queue()

    def own(self, name="w1"):
        """The display of this process's own worker: its lines carry ``name``, drawn in turn with the others'."""
        return displays.Shared(self.display, name, self.lock)

    def __enter__(self):
        for index, name in enumerate(worker_names(self.count + 1)[1:]):
            command = [sys.executable, "-m", "keras_lottery.cli", "worker", "--relay", "--name", name]
            child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=_environment(self.count + 1, self.devices, index + 1))
            self.children[name] = child
            self.feeders[name] = threading.Thread(target=_send, args=(child, self.payload), daemon=True)
            self.feeders[name].start()
            for stream, kind in ((child.stdout, "out"), (child.stderr, "err")):
                threading.Thread(target=_read, args=(stream, name, kind, self.lines), daemon=True).start()
        self.pump = threading.Thread(target=self._show, daemon=True)
        self.pump.start()
        return self

    def start(self, run_dir):
        """The run directory is set up: the workers may train in it."""
        self.run_dir = run_dir
        blob = pickle.dumps(str(run_dir))
        for name, child in self.children.items():  # after the payload, never inside it
            threading.Thread(target=_send, args=(child, blob, True, self.feeders[name]), daemon=True).start()

    def _show(self):
        open_streams = 2 * len(self.children)
        while open_streams:
            name, kind, text = self.lines.get()
            if text is None:
                open_streams -= 1
                continue
            with self.lock:
                if self.stopping:
                    continue
                if kind == "err":
                    self.display.line(text.rstrip(), name)
                    continue
                displays.replay(text, self.display, name)
                if self.run_dir is not None and text.startswith(displays.RELAY_PREFIX) and \
                        '"call": "finished"' in text:
                    self.display.tally(*graph.tally(self.run_dir, self.recipe))

    def __exit__(self, kind, error, trace):
        if kind is not None or self.run_dir is None:  # stopped before or while working: stop the others
            with self.lock:
                self.stopping = True  # this process says why in one line
            for child in self.children.values():
                if child.poll() is None:
                    child.terminate()
        for name, child in self.children.items():
            try:
                code = child.wait(timeout=None if kind is None else 30)
            except subprocess.TimeoutExpired:
                child.kill()
                code = child.wait()
            if code != 0 and kind is None:
                with self.lock:
                    self.display.line(f"worker {name} ended with exit code {code}", name)
        self.pump.join(timeout=5)
        return False


def _send(child, blob, last=False, after=None):
    """Write ``blob`` to a worker's standard input once the thread ``after`` wrote what came
    before (then close it, if ``last``)."""
    if after is not None:
        after.join()
    try:
        child.stdin.write(blob)
        child.stdin.flush()
        if last:
            child.stdin.close()
    except (BrokenPipeError, OSError, ValueError):  # the worker ended (it says why on stderr)
        pass


def _read(stream, name, kind, lines):
    for raw in iter(stream.readline, b""):
        lines.put((name, kind, raw.decode(errors="replace")))
    lines.put((name, kind, None))


NOTHING = object()


def read_payload(stream, default=NOTHING):
    """The next thing a :class:`Pool` sent a worker it started: the payload, then (once it
    is set up) the run directory; ``default`` if the pool closed the stream first."""
    try:
        return pickle.load(stream)
    except EOFError:
        if default is NOTHING:
            raise
        return default
