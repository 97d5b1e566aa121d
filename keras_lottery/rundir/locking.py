"""Run-directory lock: one process at a time trains in a run directory.

The lock is ``fcntl.flock`` on ``<run>/.lock``. The kernel releases it when the holding
process exits for any reason, SIGKILL included, so a killed run never leaves the
directory locked: the file stays, the lock does not. The file records the holder's
process id and start time for the refusal message. (Where ``fcntl`` is missing, as on
Windows, runs are not locked.)
"""

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from keras_lottery.rundir import layout, safety
from keras_lottery.errors import UsageError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None



class RunLockedError(UsageError):
    """Another process is running in this run directory."""


def _holder(path):
    try:
        info = json.loads(Path(path).read_text() or "{}")
        return f"process {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def hold(run_dir):
    """Hold the lock of ``run_dir`` for the ``with`` block; refuse at once if it is taken."""
    if fcntl is None:
        yield
        return
    path = layout.lock_file(run_dir)
    safety.check(run_dir)
    try:  # never through a link: its target would be overwritten
        handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666), "a+")
    except OSError:
        if path.is_symlink():
            raise safety.UnsafeRunDirError(
                f"{path} is a symbolic link; keras-lottery never writes through a link in a run directory: remove it"
            ) from None
        raise
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"run directory {run_dir} is in use by {_holder(path)}; wait for it to finish, "
                "stop it, or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }))
        handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the lock
