"""The core properties on Keras 3, with each installed backend.

A process runs one Keras, and this one runs tf_keras (which runs ``tests/flavoured``
here, collected as usual). Keras 3 gets its own processes: ``tests/flavoured`` again under
``KERAS_LOTTERY_KERAS=keras3`` with ``KERAS_BACKEND=tensorflow`` and ``KERAS_BACKEND=jax``,
both started at once (one per core); each backend's test asserts that every test there
passed and none was skipped, and shows the end of the output otherwise. JAX is skipped
where it is not installed (``pip install "jax[cpu]"``).

The torch backend (``KERAS_BACKEND=torch``) runs the same suite in one slow test
(``pytest -m slow``): torch runs every step eagerly, so it takes several minutes.
"""

import importlib.util
import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import ROOT

BACKENDS = ("tensorflow", "jax")
TIMEOUT = 1200


def missing(backend):
    """Why ``backend`` cannot run here, or None."""
    if backend == "jax" and importlib.util.find_spec("jax") is None:
        return 'jax is not installed (pip install "jax[cpu]"): the JAX backend is not tested'
    if backend == "torch" and importlib.util.find_spec("torch") is None:
        return 'torch is not installed (pip install "keras-lottery[torch]"): the torch backend is not tested'
    return None


def start(backend, folder):
    """``(process, log path, log)``: tests/flavoured on Keras 3 with ``backend``, in ``folder``."""
    env = dict(os.environ, KERAS_LOTTERY_KERAS="keras3", KERAS_BACKEND=backend, PYTHONPATH=str(ROOT),
               TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTEST_ADDOPTS", None)
    args = [sys.executable, "-m", "pytest", "tests/flavoured", "-q", "-p", "no:cacheprovider",
            f"--basetemp={folder / 'tmp'}"]
    log = open(folder / "pytest.log", "w")
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)  # its own process group: stopped with its children
    return process, folder / "pytest.log", log


@pytest.fixture(scope="module")
def keras3_runs(tmp_path_factory):
    """``{backend: (process, log path)}``: tests/flavoured running on Keras 3 with each backend."""
    runs, logs = {}, []
    for backend in BACKENDS:
        if missing(backend):
            continue
        process, log_path, log = start(backend, tmp_path_factory.mktemp(f"keras3_{backend}"))
        logs.append(log)
        runs[backend] = (process, log_path)
    yield runs
    for process, _ in runs.values():
        stop(process)
    for log in logs:
        log.close()


def stop(process):
    """Kill ``process`` and the processes it started (its process group), if it still runs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def tail(text, lines=60):
    kept = [line for line in text.splitlines() if not re.match(r"^(WARNING: All log|I0000|E0000|W0000)", line)]
    return "\n".join(kept[-lines:])


@pytest.mark.parametrize("backend", [
    pytest.param(name, marks=pytest.mark.skipif(missing(name) is not None, reason=str(missing(name))))
    for name in BACKENDS
])
def test_the_core_properties_hold_on_keras_3(backend, keras3_runs):
    check_finished(backend, *keras3_runs[backend])


@pytest.mark.slow
@pytest.mark.skipif(missing("torch") is not None, reason=str(missing("torch")))
def test_the_core_properties_hold_on_keras_3_with_torch(tmp_path):
    process, log_path, log = start("torch", tmp_path)
    try:
        check_finished("torch", process, log_path, timeout=2 * TIMEOUT)
    finally:
        stop(process)
        log.close()


def check_finished(backend, process, log_path, timeout=TIMEOUT):
    """Wait for ``process`` (tests/flavoured on Keras 3 with ``backend``); fail unless every test passed."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        pytest.fail(f"tests/flavoured on Keras 3/{backend} did not finish in {timeout}s:\n{tail(log_path.read_text())}")
    text = log_path.read_text()
    where = f"KERAS_LOTTERY_KERAS=keras3 KERAS_BACKEND={backend} python -m pytest tests/flavoured"
    assert process.returncode == 0, f"{where} failed (exit {process.returncode}):\n{tail(text)}"
    summary = text.strip().splitlines()[-1]
    assert re.search(r"\b\d+ passed\b", summary) and "skipped" not in summary, f"{where}: {summary}\n{tail(text)}"
