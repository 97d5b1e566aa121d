"""Masked training of one round: optimizer, schedule, evaluation cadence, early stopping."""

from keras_lottery.training.loop import (  # noqa: F401
    DivergedError, Evaluate, LearningRate, compile_model, current_learning_rate, early_stop, hold_learning_rate,
    learning_rate, make_optimizer, reset_optimizer, steps_per_execution, train,
)
