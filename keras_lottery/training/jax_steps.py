"""Keras 3 on JAX: a call into XLA runs all ``steps_per_execution`` training steps.

Keras's JAX ``fit`` honours ``steps_per_execution`` with a Python loop: one compiled call
per step, each fed its batch from Python, and a step of a small network spends much of
its time there (Lenet-300-100 at batch 60 on 2 CPU cores: half as long in Python as in
XLA). :func:`install` gives a compiled model a train function that stacks the call's
batches and runs Keras's own ``train_step`` over them with ``jax.lax.scan`` in one
``jax.jit`` call (state donated, as Keras does). Every step computes what it computed
before, in the same order, so weights, optimizer state and metrics are the same bit for
bit (tests/flavoured/test_steps_per_execution.py); ``fit`` sees the logs of the call's
last step, as with Keras's loop.

Keras's own train function stays in use when a call runs one step, under a
``keras.distribution`` (which shards each batch on its first axis), on Flax NNX, and when
the model runs eagerly or uncompiled.
"""

import numpy as np

from keras_lottery.backend import BACKEND, keras


def install(model):
    """After ``model.compile``: on JAX, make ``model`` build the scanning train function
    (see the module's docstring) whenever Keras asks for its train function."""
    if BACKEND != "jax" or getattr(model, "_keras_lottery_scan", False):
        return
    keras_make = model.make_train_function

    def make_train_function(force=False):
        if model.train_function is not None and not force:
            return model.train_function
        if (model.steps_per_execution <= 1 or model.run_eagerly or not model.jit_compile
                or keras.distribution.distribution() is not None or _nnx()):
            return keras_make(force=force)
        model.train_function = _scanning_train_function(model)
        return model.train_function

    model.make_train_function = make_train_function
    model._keras_lottery_scan = True


def _nnx():
    """True when Keras runs on Flax NNX (it then compiles with ``nnx.jit``)."""
    enabled = getattr(keras.config, "is_nnx_enabled", None)
    return bool(enabled and enabled())


def _scanning_train_function(model):
    import jax

    def steps(state, batches):
        structure = jax.tree.structure(state)

        def step(state, batch):
            logs, state = model.train_step(state, batch)
            return jax.tree.unflatten(structure, jax.tree.leaves(state)), logs

        state, logs = jax.lax.scan(step, state, batches)
        return jax.tree.map(lambda values: values[-1], logs), state  # the last step's logs

    compiled = jax.jit(steps, donate_argnums=0)
    count = model.steps_per_execution

    def train_function(state, iterator):
        batches = []
        for _ in range(count):
            try:
                batches.append(next(iterator))
            except StopIteration:  # a finite dataset's last call runs the steps left
                break
        if not batches:
            raise StopIteration
        stack = jax.numpy.stack if any(isinstance(a, jax.Array) for a in jax.tree.leaves(batches)) else np.stack
        return compiled(state, jax.tree.map(lambda *parts: stack(parts), *batches))

    return train_function
