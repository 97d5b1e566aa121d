"""Integrity of a run directory before resuming it.

Files are written atomically, so a kill leaves each file old or complete. A file can
still be damaged afterwards (a full disk, a copy cut short, a hand edit). Before a run
resumes, every file it would trust is read back; a variant whose ``summary.json``,
``mask.npz``, ``final.npz`` or ``curve.csv`` does not parse is reported with a warning
and trained again (its summary is removed, so it is never read as complete). A damaged
``init.npz`` is regenerated from the seed; a damaged ``rewind.npz`` is recaptured by
training the dense round again. Training is deterministic, so redone variants give the
same results.
"""

import json
import zipfile
from pathlib import Path

from keras_lottery.lottery import checkpoints, failures
from keras_lottery.rundir import storage
from keras_lottery.results import COLUMNS

DAMAGE = (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile)


def arrays_problem(path):
    """Why the npz at ``path`` cannot be used, or None."""
    try:
        arrays = storage.load_arrays(path)
    except DAMAGE as err:
        return f"{path.name} is unreadable ({type(err).__name__})"
    if not arrays:
        return f"{path.name} holds no arrays"
    return None


def summary_problem(path):
    try:
        summary = storage.read_json(path)
    except (DAMAGE + (json.JSONDecodeError, UnicodeDecodeError)) as err:
        return f"summary.json is unreadable ({type(err).__name__})"
    if not isinstance(summary, dict) or any(key not in summary for key in COLUMNS if key != "status"):
        return "summary.json lacks result fields"
    return None


def curve_problem(path):
    try:
        rows = storage.read_csv(path)
        if not rows or any(None in row.values() or not row.get("iteration") for row in rows):
            return "curve.csv is incomplete"
    except (DAMAGE + (UnicodeDecodeError,)) as err:
        return f"curve.csv is unreadable ({type(err).__name__})"
    return None


def variant_problem(folder, variant):
    """Why a variant that looks finished must be trained again, or None."""
    summary = folder / "summary.json"
    problem = summary_problem(summary)
    if problem:
        return problem
    if failures.status(storage.read_json(summary)) == failures.FAILED:
        return None
    for name in ("mask.npz", "final.npz"):
        if not (folder / name).is_file():
            return f"{name} is missing"
        problem = arrays_problem(folder / name)
        if problem:
            return problem
    if (folder / "curve.csv").is_file():
        return curve_problem(folder / "curve.csv")
    return "curve.csv is missing"


def repair(run_dir, recipe, log=print):
    """Unmark every damaged variant of ``run_dir`` so it is trained again; return how many."""
    redo = 0
    for leftover in Path(run_dir).glob("trial_*/**/.*.tmp"):  # a write cut short before its rename
        leftover.unlink()
    for trial in range(recipe.trials):
        folder = storage.trial_dir(run_dir, trial)
        for name in ("init.npz", "rewind.npz"):
            path = folder / name
            problem = arrays_problem(path) if path.is_file() else None
            if problem:
                log(f"warning: {path} is damaged: {problem}; it will be made again")
                path.unlink()
        dense = storage.variant_dir(run_dir, trial, 0, "ticket")
        if (dense / "summary.json").is_file() and not (folder / "rewind.npz").is_file() and \
                not failures.is_failed(run_dir, trial, 0, "ticket"):
            log(f"warning: {folder / 'rewind.npz'} is missing; training trial {trial} round 0 again to recapture it")
            (dense / "summary.json").unlink()
        for round_index in range(recipe.pruning.rounds):
            for variant in recipe.variants if round_index else ("ticket",):
                variant_dir = storage.variant_dir(run_dir, trial, round_index, variant)
                mask = variant_dir / "mask.npz"
                if not (variant_dir / "summary.json").is_file():
                    if mask.is_file() and arrays_problem(mask):  # a ticket's mask is reused when present
                        log(f"warning: {mask} is damaged; it will be computed again")
                        mask.unlink()
                    continue
                problem = variant_problem(variant_dir, variant)
                checkpoints.clear(variant_dir)  # a finished variant needs none
                if problem:
                    log(f"warning: trial {trial} round {round_index} {variant}: {problem}; training it again")
                    (variant_dir / "summary.json").unlink()
                    for name in ("mask.npz", "final.npz"):
                        if (variant_dir / name).is_file() and arrays_problem(variant_dir / name):
                            (variant_dir / name).unlink()
                    redo += 1
    return redo
