"""Run-directory lock: the workers training in a run directory share it; an analysis
holds it alone.

Workers (``keras-lottery run``, its worker processes, ``keras-lottery worker`` on this
machine) hold it shared: they coordinate through claims (:mod:`.claims`). An analysis,
which reads the finished results and trains copies of the network, holds it
exclusively, so it never runs while a worker on this machine changes the run.

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


def _workers(run_dir):
    """How many live workers hold a claim in ``run_dir``."""
    from keras_lottery.rundir import claims

    folder = layout.claims_dir(run_dir)
    if not folder.is_dir():
        return 0
    owners = {(c["host"], c["pid"]) for c in map(claims.holder, folder.glob("*.json")) if c and "pid" in c}
    return len(owners)


@contextlib.contextmanager
def hold(run_dir, shared=False, what="keras-lottery analyze"):
    """Hold the lock of ``run_dir`` for the ``with`` block (``shared`` among workers, else
    alone); refuse at once if it is taken the other way. ``what`` names the command
    that asks, for its refusal."""
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
            fcntl.flock(handle.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            if shared:
                raise RunLockedError(
                    f"run directory {run_dir} is in use by {_holder(path)}, which keeps workers out while it "
                    "runs; wait for it to finish or stop it, then rerun"
                ) from None
            training = _workers(run_dir)
            by = f"{training} worker(s) training there" if training else _holder(path)
            raise RunLockedError(
                f"run directory {run_dir} is in use by {by}; {what} waits until no other process works there: "
                "wait for it to finish or stop it, then rerun"
            ) from None
        if not shared:  # the holder's name, for the refusal above
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
