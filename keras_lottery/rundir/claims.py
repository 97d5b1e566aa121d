"""Claims: which worker trains which training, on one machine or on many.

A worker that is about to train a node of the experiment's graph (a trial's round's
variant, :mod:`keras_lottery.lottery.graph`) first creates its claim file in
``<run>/.claims/`` with ``O_CREAT | O_EXCL``: of several workers trying at once,
exactly one succeeds, on a local disk and on a shared filesystem that creates files
atomically (NFSv3 and later, Lustre, GPFS, CephFS; see the docs, "Running on many
machines"). The file holds the owner's host, process id and start time, and a
heartbeat that a thread of the owner rewrites every :data:`HEARTBEAT_SECONDS`.

A claim is *stale*, and so may be taken over, when its owner is gone:

- on the same host, when its process no longer runs (its pid is gone, is a zombie, or
  is another process that started later): a SIGKILLed worker's training is taken over
  at once;
- on another host, when its heartbeat is older than :data:`STALE_SECONDS`.

Taking over renames the stale file aside (a rename succeeds for one taker only),
removes it and creates a new claim with ``O_EXCL``. The new owner resumes the training
from its newest mid-round checkpoint. An owner whose claim was taken over (a host that
was cut off longer than :data:`STALE_SECONDS`) notices at its next heartbeat and stops
that training without writing its results.

:func:`shared_lock` is the short lock held while a worker rewrites the files every
worker shares (``results.csv``, ``results.json``, TensorBoard round summaries): the
same ``O_EXCL`` file, waited for, taken over when stale.
"""

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

from keras_lottery.rundir import layout

HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0  # a claim of another host without a heartbeat for this long is taken over
HOST = socket.gethostname()


def _started(pid):
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else int(fields[19])  # a zombie has ended


def _alive(pid, started):
    """Whether process ``pid`` of this host (started at ``started``, if known) still runs."""
    if Path("/proc/self/stat").exists():
        now = _started(pid)
        return now is not None and (started is None or now == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner(name=None):
    """This process, as a claim records it."""
    return {"host": HOST, "pid": os.getpid(), "started": _started(os.getpid()), "worker": name or f"{HOST}:{os.getpid()}"}


def read(path):
    """The claim in ``path``, or None when there is none. A claim being rewritten
    (half written) reads as fresh, with its file's modification time as heartbeat."""
    try:
        text = Path(path).read_text()
        mtime = Path(path).stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        claim = json.loads(text)
        if not isinstance(claim, dict):
            raise ValueError
    except ValueError:
        claim = {}
    claim.setdefault("heartbeat", mtime)
    return claim


def is_stale(claim, now=None):
    """Whether ``claim``'s owner is gone (see the module's docstring)."""
    if claim.get("host") == HOST and isinstance(claim.get("pid"), int):
        return not _alive(claim["pid"], claim.get("started"))
    heartbeat = claim.get("heartbeat")
    if not isinstance(heartbeat, (int, float)):
        return True
    return (time.time() if now is None else now) - heartbeat > STALE_SECONDS


def _create(path, me):
    """Create the claim ``path`` for ``me`` if nobody holds it; True if created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps({**me, "claimed": time.time(), "heartbeat": time.time()}))
    return True


def _take_over(path):
    """Remove the stale claim ``path``; True if this process was the one to remove it."""
    aside = path.with_name(f"{path.name}.{HOST}.{os.getpid()}.stale")
    try:
        os.rename(path, aside)  # of several takers, one renames; the others find nothing
    except FileNotFoundError:
        return False
    claim = read(aside)
    if claim is not None and not is_stale(claim):  # renewed between our look and the rename: give it back
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        os.unlink(aside)
        return False
    os.unlink(aside)
    return True


def try_claim(path, me):
    """Claim ``path`` for ``me`` (see :func:`owner`): True if it is now ours. A stale
    claim is taken over."""
    path = Path(path)
    if _create(path, me):
        return True
    claim = read(path)
    if claim is None:
        return _create(path, me)
    if is_stale(claim) and _take_over(path):
        return _create(path, me)
    return False


def clear_stale(run_dir):
    """Remove the claims whose owners are gone (a worker killed between finishing a training
    and releasing its claim leaves one); return how many."""
    folder = layout.claims_dir(run_dir)
    removed = 0
    for path in folder.glob("*.json") if folder.is_dir() else ():
        claim = read(path)
        if claim is not None and is_stale(claim) and _take_over(path):
            removed += 1
    return removed


def holder(path):
    """The live owner of the claim ``path`` (its record), or None when it is free or stale."""
    claim = read(path)
    return None if claim is None or is_stale(claim) else claim


def is_mine(path, me):
    claim = read(path)
    return claim is not None and claim.get("host") == me["host"] and claim.get("pid") == me["pid"]


def release(path, me):
    """Remove the claim ``path`` if it is still ``me``'s."""
    if is_mine(path, me):
        Path(path).unlink(missing_ok=True)


def beat(path, me):
    """Rewrite the heartbeat of ``me``'s claim; False if the claim is no longer ours."""
    path = Path(path)
    claim = read(path)
    if claim is None or claim.get("pid") != me["pid"] or claim.get("host") != me["host"]:
        return False
    claim["heartbeat"] = time.time()
    try:
        with open(path, "r+") as handle:  # never creates: a claim taken away stays away
            handle.write(json.dumps(claim))
            handle.truncate()
    except FileNotFoundError:
        return False
    return True


class Held:
    """A claim held for a ``with`` block, its heartbeat rewritten by a thread.

    :attr:`lost` turns true if another worker took the claim over (this host was cut
    off for longer than :data:`STALE_SECONDS`); the owner then stops its work without
    writing its results.
    """

    def __init__(self, path, me, every=HEARTBEAT_SECONDS):
        self.path, self.me, self.every = Path(path), me, every
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat {self.path.name}", daemon=True)

    def _run(self):
        while not self._stop.wait(self.every):
            if not beat(self.path, self.me):
                self.lost = True
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        release(self.path, self.me)
        return False

    def still_mine(self):
        return not self.lost and is_mine(self.path, self.me)


class SharedLockTimeout(OSError):
    """The shared-files lock stayed held by a live worker for too long."""


@contextlib.contextmanager
def shared_lock(run_dir, me=None, timeout=300.0, poll=0.05):
    """Hold the short lock for the files every worker rewrites (see the module docstring)."""
    me = me or owner()
    path = layout.shared_lock_file(run_dir)
    deadline = time.monotonic() + timeout
    while not try_claim(path, me):
        if time.monotonic() > deadline:
            raise SharedLockTimeout(f"{path} stayed held by {read(path)} for {timeout:.0f}s; if that worker is gone, "
                                    "remove the file and rerun")
        time.sleep(poll)
    try:
        yield
    finally:
        release(path, me)
