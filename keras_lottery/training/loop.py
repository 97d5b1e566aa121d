"""Masked training of one round: optimizer, learning-rate schedule, evaluation cadence.

A round trains for ``training.iterations`` optimizer steps (from ``start_iteration``
when rewinding late), evaluating validation and test sets every ``eval_every`` steps.
The curve holds one row per evaluation; the early-stopping iteration is the row with
the lowest validation loss.
"""

import gc
import math
import time

import numpy as np

from keras_lottery import masking
from keras_lottery.results import early_stop  # noqa: F401  (re-exported)
from keras_lottery.training import evaluation, jax_steps
from keras_lottery.backend import BACKEND, LEGACY, keras, tf

ops = tf if LEGACY else keras.ops  # the schedule runs inside the compiled step of either Keras


class DivergedError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class LearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 over ``warmup`` steps, then ×``factor`` at each of ``drops``.

    :meth:`hold` fixes the rate at one value for a whole round (fine-tuning at the final
    learning rate); ``hold(None)`` lets the schedule run again. On tf_keras the held rate
    is a variable the compiled step reads; on Keras 3 (whose JAX step reads only the
    model's and optimizer's variables) it is a constant of the step, and :func:`hold_learning_rate`
    has the step traced again when it changes."""

    def __init__(self, base, warmup=0, drops=(), factor=0.1):
        self.base, self.warmup, self.drops, self.factor = float(base), int(warmup), tuple(drops), float(factor)
        if LEGACY:
            self.held = tf.Variable(-1.0, trainable=False, dtype=tf.float32, name="held_learning_rate")
        else:
            self.held = None

    def scheduled(self, step):
        step = ops.cast(step, "float32")
        rate = ops.convert_to_tensor(self.base, "float32")
        for drop in self.drops:
            rate = ops.where(step >= drop, rate * self.factor, rate)
        if self.warmup:
            rate = rate * ops.minimum(1.0, step / self.warmup)
        return rate

    def __call__(self, step):
        if not LEGACY:
            return self.scheduled(step) if self.held is None else ops.convert_to_tensor(self.held, "float32")
        held = tf.identity(self.held)
        return tf.where(held >= 0.0, held, self.scheduled(step))

    def hold(self, iteration=None):
        """Hold the rate the schedule has at ``iteration`` (None: the schedule runs); True if it changed."""
        value = None if iteration is None else float(self.scheduled(iteration))
        if LEGACY:
            self.held.assign(-1.0 if value is None else value)
            return False
        changed, self.held = value != self.held, value
        return changed

    def get_config(self):
        return {"base": self.base, "warmup": self.warmup, "drops": self.drops, "factor": self.factor}


def learning_rate(config):
    if not config.warmup_iterations and not config.lr_drops:
        return config.learning_rate
    return LearningRate(config.learning_rate, config.warmup_iterations, config.lr_drops, config.lr_drop_factor)


def make_optimizer(config):
    rate = learning_rate(config)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    return keras.optimizers.SGD(rate, momentum=config.momentum)


def steps_per_execution(config):
    """Optimizer steps per call into TensorFlow: ``training.steps_per_execution``, reduced to
    divide ``eval_every`` (gcd), so every evaluation, checkpoint and rewind point (all
    multiples of ``eval_every``) falls between calls. Results do not depend on it. On the
    torch backend, whose steps run eagerly one by one, it is 1."""
    if BACKEND == "torch":
        return 1
    return math.gcd(config.steps_per_execution, config.eval_every)


def jit_compile(config):
    """Whether the training step is compiled with XLA: as the recipe says, except on JAX,
    where Keras runs an uncompiled step op by op (always compiled there), and on torch,
    where Keras would compile with ``torch.compile`` rather than XLA (never compiled there)."""
    if BACKEND == "torch":
        return False
    return True if BACKEND == "jax" else config.jit_compile


def compile_model(model, config):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        optimizer=make_optimizer(config),
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution(config),
        jit_compile=jit_compile(config),
    )
    jax_steps.install(model)  # JAX: a call runs its steps_per_execution steps in one compiled loop
    # The evaluator (evaluation.py) computes this loss as fit does, a mean per batch. Under a
    # tf.distribute strategy Keras allows that mean only for a compiled loss, and marks it so
    # when fit first builds the loss; mark it now, so that a round can be evaluated before
    # its first step (the start accuracy).
    loss._allow_sum_over_batch_size = True


def _slots(optimizer):
    """The optimizer's per-weight state (momentum, Adam's moments): its variables but the
    step count and (Keras 3) the learning rate."""
    kept = [optimizer.iterations] + ([] if LEGACY else [getattr(optimizer, "_learning_rate", None)])
    return [v for v in optimizer.variables if not any(v is k for k in kept)]


def reset_optimizer(model, start_iteration=0):
    """Fresh optimizer state for a new round (slots zeroed), with the step at ``start_iteration``."""
    optimizer = model.optimizer
    for variable in _slots(optimizer):
        variable.assign(tf.zeros_like(variable) if LEGACY else keras.ops.zeros(variable.shape, variable.dtype))
    optimizer.iterations.assign(start_iteration)


def hold_learning_rate(model, iteration=None):
    """Hold the learning rate the schedule has at ``iteration`` for the coming round (None:
    the schedule runs). A constant learning rate has no schedule: nothing to hold."""
    schedule = getattr(model.optimizer, "_learning_rate", None)
    if isinstance(schedule, LearningRate) and schedule.hold(iteration):
        model.make_train_function(force=True)  # Keras 3: the held rate is a constant of the step


def current_learning_rate(model):
    """The learning rate the optimizer applies at its current iteration."""
    optimizer = model.optimizer
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, LearningRate):
        return float(schedule(optimizer.iterations))
    return float(np.asarray(optimizer.learning_rate))


class Evaluate(keras.callbacks.Callback):
    """Every ``eval_every`` steps: record train loss, validation and test metrics.

    Validation and test run in one compiled pass (:mod:`keras_lottery.evaluation`);
    their metrics are added to ``logs`` as ``val_*`` and ``test_*``. A non-finite loss
    stops training with :class:`DivergedError`.
    """

    def __init__(self, val_data, test_data, eval_every, progress=None, predictions=None):
        super().__init__()
        self.val_data = val_data
        self.test_data = test_data
        self.eval_every = eval_every
        self.progress = progress
        self.predictions = predictions
        self.curve = []

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        evaluated = evaluation.evaluator(self.model, self.val_data, self.test_data)()
        predicted = evaluated["test"].pop("predictions", None)
        for split, prefix in (("val", "val_"), ("test", "test_")):
            logs.update({prefix + k: v for k, v in evaluated[split].items()})
        if not all(math.isfinite(logs[k]) for k in ("loss", "val_loss")):
            self.model.stop_training = True
            raise DivergedError(
                f"loss became {logs['loss']} at iteration {(epoch + 1) * self.eval_every}; "
                "lower training.learning_rate or add warmup"
            )
        row = {"iteration": (epoch + 1) * self.eval_every}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"):
            row[key if "_" in key else f"train_{key}"] = float(logs[key])
        self.curve.append(row)
        if self.predictions and predicted is not None:
            self.predictions(row, predicted)
        if self.progress:
            self.progress(row)


def train(model, train_data, val_data, test_data, config, start_iteration=0, callbacks=(), progress=None,
          late_callbacks=(), predictions=None):
    """Train ``model`` (compiled, masks set) from ``start_iteration`` to ``config.iterations``.

    ``late_callbacks`` run after each evaluation (e.g. checkpoints that save the curve).
    ``predictions(row, predicted)``, if given, receives each evaluation's curve row and the
    predicted class of every test example (before ``progress`` sees the row).
    Returns the curve: one dict per evaluation.
    """
    if start_iteration % config.eval_every:
        raise ValueError("the start iteration must be a multiple of training.eval_every")
    evaluate = Evaluate(val_data, test_data, config.eval_every, progress, predictions)
    model.fit(
        train_data,
        steps_per_epoch=config.eval_every,
        initial_epoch=start_iteration // config.eval_every,
        epochs=config.iterations // config.eval_every,
        callbacks=[*masking.callbacks(), *callbacks, evaluate, *late_callbacks],
        shuffle=False,  # the stream is shuffled by seed (data.train_stream)
        verbose=0,
    )
    gc.collect()  # free this round's stream and callbacks (reference cycles) now, not rounds later
    return evaluate.curve
