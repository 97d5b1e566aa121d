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

from keras_lottery import results
from keras_lottery.lottery import rounds, variants
from keras_lottery.rundir import layout, safety, storage
from keras_lottery.errors import UsageError

DAMAGE = (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile, RecursionError)


class DamagedFileError(UsageError):
    """A file of a run directory that ``export``, ``report`` or ``analyze`` cannot use."""


class OtherDataError(UsageError):
    """The data a command needs is not the data the run trained on, or cannot be loaded."""


def run_data(run_dir, dataset, data_path=None):
    """The run's data (its recipe's ``dataset``; ``data_path``: where its file is now),
    refused unless its content has the fingerprint the run saved in ``identity.json``."""
    import dataclasses

    from keras_lottery import data

    if dataset.name == data.PYTHON:
        raise OtherDataError(
            "the run's data was passed to keras_lottery.run from Python and cannot be reloaded here; "
            "train the run on a file (--data) or a named dataset"
        )
    if data_path:
        dataset = dataclasses.replace(dataset, path=str(Path(data_path).resolve()))
    if dataset.path is not None and not Path(dataset.path).is_file():
        raise OtherDataError(f"the run's data file {dataset.path} is missing; pass --data PATH to the file it moved to")
    try:
        splits = data.load(dataset)
    except data.DataError as err:
        raise OtherDataError(f"cannot load the run's data ({err})") from None
    try:
        saved = storage.read_json(layout.identity_file(run_dir))["identity"]["data"]
    except (OSError, ValueError, KeyError, TypeError):
        saved = None
    if saved is not None and splits.fingerprint != saved:
        raise OtherDataError(
            f"the data {splits.source} is not the run's (fingerprint {splits.fingerprint[:12]}, "
            f"the run's {str(saved)[:12]}); pass --data PATH to the run's data file"
        )
    return splits


def _damaged(path, problem):
    return DamagedFileError(
        f"{path} is damaged: {problem}; rerun keras-lottery run with the run's recipe to redo it "
        "(a run repairs damaged files), or restore the file"
    )


def read_json(path):
    """The JSON in ``path`` of a run directory, or a one-line :class:`DamagedFileError`."""
    try:
        return storage.read_json(path)
    except FileNotFoundError:
        raise
    except (DAMAGE + (json.JSONDecodeError, UnicodeDecodeError)) as err:
        raise _damaged(path, f"unreadable ({type(err).__name__})") from None


def read_arrays(path):
    """The arrays of the npz ``path`` of a run directory, or a one-line :class:`DamagedFileError`."""
    problem = arrays_problem(Path(path))
    if problem:
        raise _damaged(path, problem)
    return storage.load_arrays(path)


def check_variant(run_dir, trial, round_index, variant):
    """Refuse a finished variant whose files are damaged (the check ``run`` repairs by)."""
    problem = variant_problem(run_dir, trial, round_index, variant)
    if problem:
        raise _damaged(layout.variant_dir(run_dir, trial, round_index, variant), problem)


def check_summaries(run_dir, recipe):
    """Refuse a run whose finished variants' ``summary.json`` files do not parse as results rows."""
    for trial in layout.trials_present(run_dir, recipe.trials):
        for round_index in range(recipe.pruning.rounds):
            for variant in rounds.variants_of_round(recipe, round_index):
                path = layout.summary(run_dir, trial, round_index, variant)
                problem = summary_problem(path) if path.is_file() else None
                if problem:
                    raise _damaged(path, problem)


def check_curve(path):
    """Refuse a damaged curve.csv."""
    problem = curve_problem(Path(path))
    if problem:
        raise _damaged(path, problem)
    rows = storage.read_csv(path)
    try:
        for row in rows:
            int(row["iteration"]), float(row["test_accuracy"])
    except (KeyError, TypeError, ValueError) as err:
        raise _damaged(path, f"a value is not a number ({type(err).__name__})") from None
    return rows


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
        return f"{path.name} is unreadable ({type(err).__name__})"
    try:
        results.typed(summary)
    except results.RowError as err:
        return f"{path.name} is not a results row ({err})"
    return None


def curve_problem(path):
    try:
        rows = storage.read_csv(path)
        if not rows or any(None in row.values() or not row.get("iteration") for row in rows):
            return f"{path.name} is incomplete"
    except (DAMAGE + (UnicodeDecodeError,)) as err:
        return f"{path.name} is unreadable ({type(err).__name__})"
    return None


def variant_problem(run_dir, trial, round_index, variant):
    """Why a variant that looks finished must be trained again, or None."""
    summary = layout.summary(run_dir, trial, round_index, variant)
    problem = summary_problem(summary)
    if problem:
        return problem
    if results.status(storage.read_json(summary)) == results.FAILED:
        return None
    for path in (layout.mask(run_dir, trial, round_index, variant), layout.final(run_dir, trial, round_index, variant)):
        if not path.is_file():
            return f"{path.name} is missing"
        problem = arrays_problem(path)
        if problem:
            return problem
    curve = layout.curve(run_dir, trial, round_index, variant)
    if curve.is_file():
        return curve_problem(curve)
    return f"{curve.name} is missing"


def repair(run_dir, recipe, log=print, skip_trials=()):
    """Unmark every damaged variant of ``run_dir`` so it is trained again; return how many.
    ``skip_trials`` are left alone: a live worker trains in them (its files in the making
    are not leftovers)."""
    from keras_lottery.lottery import checkpoints

    redo = 0
    safety.check(run_dir)  # a link leading outside would make the deletions below reach there
    trials = [trial for trial in layout.trials_present(run_dir, recipe.trials) if trial not in set(skip_trials)]
    for trial in trials:
        for leftover in layout.trial_dir(run_dir, trial).glob(f"**/{layout.TEMPORARY_GLOB}"):
            if safety.inside(run_dir, leftover.parent) and not leftover.is_symlink():
                leftover.unlink()
    for trial in trials:
        for path in (layout.init_weights(run_dir, trial), layout.rewind_weights(run_dir, trial)):
            problem = arrays_problem(path) if path.is_file() else None
            if problem:
                log(f"warning: {path} is damaged: {problem}; it will be made again")
                path.unlink()
        dense = layout.summary(run_dir, trial, 0, variants.TICKET)
        rewind = layout.rewind_weights(run_dir, trial)
        if dense.is_file() and not rewind.is_file() and results.status(storage.read_json(dense)) != results.FAILED:
            log(f"warning: {rewind} is missing; training trial {trial} round 0 again to recapture it")
            dense.unlink()
        for round_index in range(recipe.pruning.rounds):
            for variant in rounds.variants_of_round(recipe, round_index):
                folder = layout.variant_dir(run_dir, trial, round_index, variant)
                mask = layout.mask(run_dir, trial, round_index, variant)
                if not layout.is_finished(run_dir, trial, round_index, variant):
                    if mask.is_file() and arrays_problem(mask):  # a ticket's mask is reused when present
                        log(f"warning: {mask} is damaged; it will be computed again")
                        mask.unlink()
                    continue
                problem = variant_problem(run_dir, trial, round_index, variant)
                checkpoints.clear(folder)  # a finished variant needs none
                if problem:
                    log(f"warning: trial {trial} round {round_index} {variant}: {problem}; training it again")
                    layout.summary(run_dir, trial, round_index, variant).unlink()
                    for path in (mask, layout.final(run_dir, trial, round_index, variant)):
                        if path.is_file() and arrays_problem(path):
                            path.unlink()
                    redo += 1
    return redo
