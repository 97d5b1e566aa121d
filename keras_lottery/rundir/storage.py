"""Atomic files: JSON, CSV and npz arrays.

Every file is written to a temporary name in the same folder and renamed into place,
so a reader sees either the old file or the complete new one. File names are
:mod:`keras_lottery.rundir.layout`'s.
"""

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path, data: bytes):
    """Write ``data`` to ``path`` atomically. An OSError (a full disk, a read-only folder)
    names ``path`` and leaves the file as it was."""
    path = Path(path)
    try:
        _atomic_write_bytes(path, data)
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None


def _atomic_write_bytes(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for everyone to read
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text: str):
    atomic_write_bytes(path, text.encode())


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def write_csv(path, rows, columns):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def save_arrays(path, arrays: dict):
    """Save ``{name: array}`` as an npz (names may contain '/')."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_arrays(path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
