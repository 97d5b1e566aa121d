"""A quiet start: no TensorFlow, absl, oneDNN or CUDA-stub lines unless asked for.

TensorFlow's C++ runtime writes its start-up notices straight to file descriptor 2 before
absl's logging is initialized, so ``TF_CPP_MIN_LOG_LEVEL`` cannot silence all of them
("All log messages before absl::InitializeLog() ...", the oneDNN notice, "Could not find
cuda drivers", "failed call to cuInit"). :func:`tensorflow_start` therefore points fd 2 at
an unnamed temporary file while TensorFlow is imported and its devices are probed, then
writes back every line that is not such a C++ log line: Python warnings and errors still
show, in order. :mod:`keras_lottery.backend`, the one module that imports TensorFlow, runs
its import inside it, so every command (and every process started with ``python -m
keras_lottery...``) starts quietly.

``--verbose`` (or ``KERAS_LOTTERY_VERBOSE=1``, which child processes inherit) shows
TensorFlow's own logging again: nothing is filtered and the log levels stay TensorFlow's.
This module is TensorFlow-free.
"""

import contextlib
import os
import re
import sys
import tempfile

ENVIRONMENT = "KERAS_LOTTERY_VERBOSE"

# absl / glog lines written by C++: "I0000 00:00:1796398151.325117    4093 port.cc:153] ..."
_CPP_LOG = re.compile(r"^[IWEF]\d{4} \d{2}:\d{2}:\d+\.\d+\s+\d+ [^\s\]]+:\d+\] ")
_ABSL_PRE_INIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def verbose():
    """True when TensorFlow's own logging is wanted (``--verbose``, ``KERAS_LOTTERY_VERBOSE=1``)."""
    return os.environ.get(ENVIRONMENT, "").strip().lower() in ("1", "true", "yes", "on")


def set_verbose(on=True):
    """Ask for TensorFlow's logging in this process and in the processes it starts; before
    TensorFlow is imported (the command line does so for ``--verbose``)."""
    if on:
        os.environ[ENVIRONMENT] = "1"


def prepare_environment():
    """Set TensorFlow's log level before it is imported (a value the user set is kept)."""
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def is_foreign(line):
    """True for a line TensorFlow's C++ runtime (absl logging) wrote, which a quiet start drops."""
    line = line.rstrip("\r\n")
    return line == _ABSL_PRE_INIT or bool(_CPP_LOG.match(line))


def keep(text):
    """``text`` without the C++ log lines (:func:`is_foreign`); every other line is kept."""
    return "".join(line for line in text.splitlines(keepends=True) if not is_foreign(line))


@contextlib.contextmanager
def tensorflow_start():
    """Run the body (importing TensorFlow, probing devices) with fd 2 filtered by :func:`keep`.

    Whatever else was written to fd 2 (Python warnings, a traceback's lines written before an
    exception leaves the body) is written back to the real fd 2 when the body ends, normally or
    not; an exception itself propagates and is printed after fd 2 is restored. Verbose: nothing
    is touched."""
    if verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 (e.g. a closed stderr): nothing to filter
        yield
        return
    try:
        capture = tempfile.TemporaryFile()  # unnamed on Linux: nothing is left behind
    except OSError:
        os.close(saved)
        yield
        return
    try:
        os.dup2(capture.fileno(), 2)
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        rest = keep(capture.read().decode("utf-8", "replace"))
        capture.close()
        data = rest.encode("utf-8", "replace")
        while data:
            data = data[os.write(2, data):]


def silence_python_logging(tf):
    """TensorFlow's and absl's Python loggers report errors only (unless verbose)."""
    if verbose():
        return
    tf.get_logger().setLevel("ERROR")
    try:
        from absl import logging as absl_logging
    except ImportError:  # absl comes with TensorFlow; nothing to do without it
        return
    absl_logging.set_verbosity(absl_logging.ERROR)
