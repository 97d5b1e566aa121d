"""Tests that hold on every Keras keras-lottery runs: tf_keras (tfmot's wrapper) and Keras 3
(its own masked wrapper) on the TensorFlow and the JAX backend.

They are written against :mod:`keras_lottery.backend` and the package's API only, so one
file serves every Keras. The normal test run collects them in its own process (tf_keras);
``tests/test_keras3.py`` runs them again in processes started with
``KERAS_LOTTERY_KERAS=keras3`` and ``KERAS_BACKEND=tensorflow`` / ``jax`` (a process runs
one Keras). To run them on one Keras by hand::

    KERAS_LOTTERY_KERAS=keras3 KERAS_BACKEND=jax python -m pytest tests/flavoured -q
"""
