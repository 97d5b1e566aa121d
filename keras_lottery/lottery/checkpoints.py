"""Mid-round checkpoints: a killed run resumes inside the round it was training.

After an evaluation, every ``training.checkpoint_every`` iterations (default: about
once a minute of training), the variant being trained saves
``<variant>/checkpoints/it_<iteration>/``:

- ``model.*``: a ``tf.train.Checkpoint`` of the wrapped model (weights and masks) and
  the optimizer (slots and iteration count, which also drives the learning rate); on
  Keras 3 (whose JAX backend has no ``tf.train.Checkpoint``) the same variables as
  arrays in ``variables.npz`` (:func:`save_variables`);
- ``state.json``: the iteration, the evaluation curve so far, seconds trained, and the
  start accuracy (the network's test loss and accuracy before its first update);
- ``rewind.npz``: θk, when the dense round has already captured it;
- ``predictions.npz``: the test predictions of the evaluation with the lowest validation
  loss so far (and its iteration), so that a resumed round still stores the predictions
  at its early-stop iteration (a checkpoint made before 0.2 lacks it: see
  :meth:`MidRound.best_predictions`).

The data position needs no saving: ``data.train_stream(start_step=iteration)`` is a
pure function of (seed, step), so the batch order continues exactly. A checkpoint
folder is written under a temporary name and renamed into place, so a folder with its
final name is complete; older checkpoints are deleted after the rename. A checkpoint
that cannot be read is reported and skipped (the next older one, or the start of the
round, is used instead).
"""

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from keras_lottery.rundir import layout, storage
from keras_lottery import training
from keras_lottery.backend import LEGACY, keras, tf

AUTO_SECONDS = 60.0
# With several workers every process must checkpoint at the same iterations (a time-based
# cadence would differ between workers), so the default becomes every 10 evaluations.
MULTI_WORKER_EVALUATIONS = 10
PREFIX = "it_"


def folder(variant_dir):
    return layout.checkpoints(variant_dir)


def saved(variant_dir):
    """Complete checkpoint folders of a variant, newest first."""
    root = folder(variant_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]), reverse=True)


def clear(variant_dir):
    """Remove a variant's checkpoints (once its summary is written)."""
    shutil.rmtree(folder(variant_dir), ignore_errors=True)


class MidRound(keras.callbacks.Callback):
    """Saves checkpoints during :func:`training.train` and restores the newest one.

    Runs after the evaluation callback each epoch (``late_callbacks``), so the curve it
    saves includes the evaluation just made. Feed it every curve row with :meth:`record`.
    """

    def __init__(self, variant_dir, config, model, rewind, log=print, same_cadence_everywhere=False):
        super().__init__()
        self.variant_dir = Path(variant_dir)
        self.every = config.checkpoint_every
        if self.every is None and same_cadence_everywhere:
            self.every = MULTI_WORKER_EVALUATIONS * config.eval_every
        self.end = config.iterations
        self.eval_every = config.eval_every
        self.wrapped = model
        self.rewind = rewind
        self.log = log
        self.curve = []  # every evaluation row of the round, including those before a resume
        self.start = None  # test loss and accuracy before the round's first update
        self.seconds_before = 0.0  # training time spent by earlier processes
        self.resumed_at = None
        self.best = None  # (val_loss, iteration, predictions) of the best evaluation seen with predictions
        self._started = self._last_save = time.perf_counter()

    def record(self, row):
        self.curve.append(row)

    def record_predictions(self, row, predicted):
        """Keep ``predicted`` if ``row`` is the early-stop point so far (lowest validation loss,
        the earliest of ties, as :func:`keras_lottery.results.early_stop`)."""
        if self.best is None or row["val_loss"] < self.best[0]:
            self.best = (row["val_loss"], row["iteration"], np.asarray(predicted))

    def best_predictions(self):
        """``(iteration, predictions)`` at the round's early-stop iteration, or None when they
        are not known (the early stop fell before a resume from a checkpoint that lacked them)."""
        if self.best is None or not self.curve:
            return None
        from keras_lottery.results import early_stop

        if early_stop(self.curve)["iteration"] != self.best[1]:
            return None
        return self.best[1], self.best[2]

    def seconds(self):
        return self.seconds_before + time.perf_counter() - self._started

    # ---- saving ---------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._started = self._last_save = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.wrapped = self.model  # Keras 3 on JAX: reading the callback's model syncs its variables
        iteration = int(self.wrapped.optimizer.iterations.numpy())
        if iteration >= self.end:
            return  # the round is finishing: its results are written next
        if self.every:
            due = iteration % self.every == 0
        else:
            due = time.perf_counter() - self._last_save >= AUTO_SECONDS
        if due:
            self.save(iteration)

    def _checkpoint(self):
        return tf.train.Checkpoint(model=self.wrapped, optimizer=self.wrapped.optimizer)

    def save(self, iteration):
        root = folder(self.variant_dir)
        final = root / f"{PREFIX}{iteration:09d}"
        tmp = root / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            if LEGACY:
                self._checkpoint().write(str(tmp / layout.CHECKPOINT_MODEL))
            else:
                save_variables(tmp / layout.CHECKPOINT_ARRAYS, self.wrapped)
        except tf.errors.OpError as err:  # a full disk, a read-only folder: the older checkpoint stays
            shutil.rmtree(tmp, ignore_errors=True)
            raise OSError(None, f"the checkpoint could not be written ({err.message.splitlines()[0]})", str(tmp)) from None
        if self.rewind.saved is not None:
            storage.save_arrays(tmp / layout.REWIND, self.rewind.saved)
        if self.best is not None:
            storage.save_arrays(tmp / layout.PREDICTIONS, {
                "val_loss": np.float64(self.best[0]), "iteration": np.int64(self.best[1]), "predictions": self.best[2],
            })
        storage.write_json(tmp / layout.CHECKPOINT_STATE, {
            "iteration": iteration, "seconds": round(self.seconds(), 3), "curve": self.curve, "start": self.start,
        })
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for older in saved(self.variant_dir):
            if older != final:
                shutil.rmtree(older, ignore_errors=True)
        for stale in root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self._last_save = time.perf_counter()

    # ---- restoring ------------------------------------------------------------------

    def restore(self, start_iteration):
        """Load the newest readable checkpoint; return the iteration to train from.

        Without one, returns ``start_iteration`` and leaves the model untouched.
        """
        for path in saved(self.variant_dir):
            try:
                iteration = self._load(path)
            except Exception as err:  # corrupt or half-written by another tool
                self.log(f"warning: checkpoint {path} is unreadable ({type(err).__name__}: {err}); ignoring it")
                training.reset_optimizer(self.wrapped, start_iteration)
                continue
            self.resumed_at = iteration
            return iteration
        return start_iteration

    def _load(self, path):
        state = json.loads((path / layout.CHECKPOINT_STATE).read_text())
        iteration, curve = int(state["iteration"]), list(state["curve"])
        if iteration % self.eval_every or not 0 < iteration < self.end:
            raise ValueError(f"iteration {iteration} does not fit training.iterations {self.end}")
        rewind_path = path / layout.REWIND
        rewind_saved = storage.load_arrays(rewind_path) if rewind_path.is_file() else None
        predictions_path = path / layout.PREDICTIONS
        best = None
        if predictions_path.is_file():  # checkpoints made before 0.2 lack it
            saved = storage.load_arrays(predictions_path)
            best = (float(saved["val_loss"]), int(saved["iteration"]), saved["predictions"])
        optimizer = self.wrapped.optimizer
        optimizer.build(self.wrapped.trainable_variables)
        if LEGACY:
            self._checkpoint().read(str(path / layout.CHECKPOINT_MODEL)).assert_existing_objects_matched()
        else:
            load_variables(path / layout.CHECKPOINT_ARRAYS, self.wrapped)
        if int(optimizer.iterations.numpy()) != iteration:
            raise ValueError(f"optimizer is at iteration {int(optimizer.iterations.numpy())}, state says {iteration}")
        self.curve = curve
        self.best = best
        if state.get("start") is not None:  # checkpoints made before start accuracy was recorded lack it
            self.start = state["start"]
        self.seconds_before = float(state.get("seconds", 0.0))
        self.rewind.weights = None  # the checkpoint already holds the weights and masks
        if rewind_saved is not None:
            self.rewind.saved = rewind_saved
        return iteration


# ---- Keras 3: variables as arrays ----------------------------------------------------


def _variables(model):
    """``{key: variable}``: the model's variables (weights and masks) and the optimizer's, in order."""
    found = {f"model/{i:05d}": v for i, v in enumerate(model.variables)}
    found.update({f"optimizer/{i:05d}": v for i, v in enumerate(model.optimizer.variables)})
    return found


def save_variables(path, model):
    """Write every variable of ``model`` and its optimizer to ``path`` (an ``.npz``)."""
    storage.save_arrays(path, {key: np.asarray(v.numpy()) for key, v in _variables(model).items()})


def load_variables(path, model):
    """Assign the variables :func:`save_variables` wrote; ValueError if they do not fit the model."""
    saved = storage.load_arrays(path)
    variables = _variables(model)
    if set(saved) != set(variables):
        raise ValueError(f"the saved variables ({len(saved)}) are not the model's and optimizer's ({len(variables)})")
    for key, variable in variables.items():
        if tuple(saved[key].shape) != tuple(variable.shape):
            raise ValueError(f"variable {key} is saved with shape {saved[key].shape}, the model has {tuple(variable.shape)}")
    for key, variable in variables.items():
        variable.assign(saved[key])
