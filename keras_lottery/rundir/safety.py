"""Nothing the package writes, repairs or deletes leaves the run directory.

A run directory may come from someone else (a tarball, a shared disk), so it may hold
symbolic links. A link whose target lies outside the run directory would make a write
(the ``.lock``, a result file, TensorBoard events) or a deletion (the repair of
leftover temporary files, old checkpoints) reach a folder the user never chose. Every
command that writes into a run directory first calls :func:`check`, which refuses such
a directory with one line naming the link; deletions additionally go through
:func:`inside`, and the lock file is opened without following links.
Links that stay inside the run directory are harmless and allowed.
"""

import os
from pathlib import Path

from keras_lottery.errors import UsageError


class UnsafeRunDirError(UsageError):
    """A run directory holding a link that leads outside it."""


def root(run_dir):
    """The run directory with its own links resolved (the user chose it, links and all)."""
    return Path(os.path.realpath(run_dir))


def inside(run_dir, path):
    """Whether ``path``, with every link resolved, lies inside ``run_dir``."""
    base = root(run_dir)
    target = Path(os.path.realpath(path))
    return target == base or base in target.parents


def outside_links(run_dir):
    """``(link, target)`` of every symbolic link under ``run_dir`` that leads outside it
    (or nowhere resolvable inside it). Linked folders are not entered."""
    base = root(run_dir)
    if not base.is_dir():
        return
    for folder, dirs, files in os.walk(base, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink() and not inside(base, path):
                yield path, os.readlink(path)


def check(run_dir):
    """Refuse ``run_dir`` if a link in it leads outside it."""
    for link, target in outside_links(run_dir):
        raise UnsafeRunDirError(
            f"{link} is a symbolic link to {target}, outside the run directory {run_dir}; keras-lottery never "
            "writes or deletes outside a run directory: remove the link (or copy the run without links)"
        )
