"""Masked training of one round: optimizer, schedule, evaluation cadence, early stopping."""

from keras_lottery.training.loop import (  # noqa: F401
    DivergedError, Evaluate, LearningRate, Timer, compile_model, early_stop, learning_rate, make_optimizer,
    reset_optimizer, steps_per_execution, train,
)
