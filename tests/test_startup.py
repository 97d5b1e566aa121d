"""A quiet start: no TensorFlow, absl, oneDNN or CUDA-stub lines unless --verbose asks."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import ROOT
from keras_lottery import startup
from keras_lottery.cli import main

# What TensorFlow's C++ runtime writes at start-up on a machine without a GPU (TF 2.16-2.21).
CPP_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1796398151.325117    4093 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n",
    "I0000 00:00:1796398151.325484    4093 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
    "not be used.\n",
    "E0000 00:00:1796398156.481884    4093 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed "
    "call to cuInit: UNKNOWN ERROR (303)\n",
    "W1203 14:02:11.123456  77 gpu_device.cc:2344] Cannot dlopen some GPU libraries.\n",
]
FOREIGN_WORDS = ("absl", "oneDNN", "cuda", "cuInit", "TF_ENABLE_ONEDNN_OPTS", "tensorflow/core", "cpu_feature_guard")


def foreign(text):
    """The lines of ``text`` keras-lottery did not write: TensorFlow's C++ and absl logging."""
    return [line for line in text.splitlines()
            if startup.is_foreign(line) or any(word in line for word in FOREIGN_WORDS)]


def environment(**changes):
    """This process's environment without the log settings the tests set, plus ``changes``."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("TF_CPP_MIN_LOG_LEVEL", startup.ENVIRONMENT)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**env, **changes}


def test_cpp_log_lines_are_dropped_and_every_other_line_kept():
    python = ["Traceback (most recent call last):\n", "  File \"x.py\", line 1\n", "UserWarning: I0000 is fine here\n",
              "I0000 looks like a log line but is not one\n"]
    assert startup.keep("".join(CPP_LINES + python)) == "".join(python)
    assert all(startup.is_foreign(line) for line in CPP_LINES)


def test_the_start_filters_fd_2_and_passes_python_output_on(capfd):
    with startup.tensorflow_start():
        os.write(2, "".join(CPP_LINES[:3]).encode())  # as C++ writes: straight to the descriptor
        sys.stderr.write("a Python warning\n")
        os.write(2, CPP_LINES[3].encode())
    sys.stderr.write("after\n")
    assert capfd.readouterr().err == "a Python warning\nafter\n"


def test_an_error_inside_the_start_still_shows_and_stderr_is_restored(capfd):
    with pytest.raises(ImportError, match="no module"):
        with startup.tensorflow_start():
            os.write(2, (CPP_LINES[0] + "the line before the error\n").encode())
            raise ImportError("no module named tensorflow")
    os.write(2, b"fd 2 is back\n")
    assert capfd.readouterr().err == "the line before the error\nfd 2 is back\n"


def test_verbose_filters_nothing(capfd, monkeypatch):
    monkeypatch.setenv(startup.ENVIRONMENT, "1")
    with startup.tensorflow_start():
        os.write(2, CPP_LINES[1].encode())
    assert capfd.readouterr().err == CPP_LINES[1]


def test_the_verbose_option_reaches_tensorflow_and_child_processes(monkeypatch):
    monkeypatch.setenv(startup.ENVIRONMENT, "0")  # restored after the test
    assert not startup.verbose()
    result = CliRunner().invoke(main, ["--verbose", "recipes", "show", "quickstart_digits"])
    assert result.exit_code == 0, result.output
    assert startup.verbose() and os.environ[startup.ENVIRONMENT] == "1"
    assert "--verbose" in CliRunner().invoke(main, ["--help"]).output


def test_importing_tensorflow_is_quiet_unless_verbose(tmp_path):
    """The real TensorFlow: whatever it writes at start-up shows with verbose only."""
    code = "import keras_lottery.backend as b; print(b.describe_devices())"
    runs = {verbose: subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                                    env=environment(**({startup.ENVIRONMENT: "1"} if verbose else {})), timeout=300)
            for verbose in (False, True)}
    for result in runs.values():
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.startswith("device: ")
    assert runs[False].stderr == ""
    if not foreign(runs[True].stderr):
        pytest.skip("TensorFlow wrote no start-up lines on this machine, so there is nothing for --verbose to show")


def test_the_quick_start_prints_no_line_keras_lottery_did_not_write(tmp_path):
    result = subprocess.run(
        ["keras-lottery", "run", "recipes/quickstart_digits.json", "--set", "training.iterations=100",
         "--rounds", "2", "--out", str(tmp_path / "run")],
        cwd=ROOT, env=environment(PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert foreign(result.stdout) == [] and foreign(result.stderr) == []
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("keras: ") and lines[1].startswith("device: ")  # one line: what it trains on
    assert any("start acc" in line for line in lines)  # the end-of-run table
