"""What the criteria that score a network at initialization need, by the backend's autodiff.

The criteria themselves (:mod:`keras_lottery.pruning.criteria`) are numpy functions of a
layer's weights and one of these, for the weights keyed ``keys`` (``layer/weight``) of a
plain (unwrapped) Keras ``model`` given all its ``weights``:

- :func:`loss_gradient`: g = ∂L/∂θ, L the mean cross-entropy of the logits (divided by a
  ``temperature``) on a scoring batch ``(x, y)``;
- :func:`hessian_gradient`: Hg, the Hessian of L times g (GraSP), as the gradient of
  z = Σ stop_gradient(g) · g (TensorFlow's nested tapes) or a forward-over-reverse
  product (JAX's ``jvp`` of ``grad``, the Hessian being symmetric);
- :func:`synflow_gradient`: ∂R/∂θ at |θ| for every weight, R the sum of the outputs on an
  all-ones input (SynFlow); no data is read.

The model runs in inference mode (``training=False``): dropout off, batch normalization
on its moving statistics. Keras 3 on torch is refused (:func:`check_backend`).
Runs tf_keras and Keras 3 on TensorFlow and on JAX (:mod:`keras_lottery.backend`).
"""

import numpy as np

from keras_lottery import masking
from keras_lottery.backend import BACKEND, tf
from keras_lottery.errors import UsageError


def check_backend():
    """Refuse a backend without the autodiff here (Keras 3 on torch), in one line."""
    if BACKEND not in ("tensorflow", "jax"):
        raise UsageError(f"criteria that score the model at initialization run on TensorFlow or JAX, not on Keras 3 "
                         f"/ {BACKEND}; set KERAS_BACKEND=tensorflow or jax, or use --keras tf_keras")


def _cross_entropy(y, logits, temperature):
    """Mean cross-entropy of ``logits / temperature`` against the integer labels ``y``."""
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        log_p = jax.nn.log_softmax(logits / temperature, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, jnp.asarray(y, jnp.int32)[:, None], axis=-1))
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(y, tf.int32), logits=logits / temperature))


def _set(model, weights):
    masking.set_weights(model, weights)
    variables = masking.named_variables(model)
    return variables


def loss_gradient(model, weights, keys, x, y, temperature=1.0):
    """``{key: g}``: the loss gradient of the weights ``keys`` on the batch ``(x, y)``."""
    check_backend()
    variables = _set(model, weights)
    if BACKEND == "jax":
        loss, targets = _jax_loss(model, variables, keys, x, y, temperature)
        import jax

        grads = jax.grad(loss)(targets)
    else:
        targets = [variables[key] for key in keys]
        with tf.GradientTape() as tape:
            loss = _cross_entropy(y, model(tf.constant(x), training=False), temperature)
        grads = tape.gradient(loss, targets)
    return {key: np.asarray(grad, np.float64) for key, grad in zip(keys, grads)}


def hessian_gradient(model, weights, keys, x, y, temperature=1.0):
    """``{key: Hg}``: the Hessian of the loss on ``(x, y)`` (logits divided by
    ``temperature``) with respect to the weights ``keys``, times their gradient g."""
    check_backend()
    variables = _set(model, weights)
    if BACKEND == "jax":
        import jax

        loss, targets = _jax_loss(model, variables, keys, x, y, temperature)
        grad = jax.grad(loss)
        g = grad(targets)
        _, hg = jax.jvp(grad, (targets,), (g,))
    else:
        targets = [variables[key] for key in keys]
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = _cross_entropy(y, model(tf.constant(x), training=False), temperature)
            grads = inner.gradient(loss, targets)
            z = tf.add_n([tf.reduce_sum(tf.stop_gradient(g) * g) for g in grads])
        hg = outer.gradient(z, targets)
    return {key: np.asarray(value, np.float64) for key, value in zip(keys, hg)}


def synflow_gradient(model, weights, keys):
    """``{key: ∂R/∂θ}`` of the weights ``keys`` with every weight of the model replaced by
    its absolute value, R the sum of the outputs for one all-ones input."""
    check_backend()
    variables = _set(model, {key: np.abs(value) for key, value in weights.items()})
    ones = np.ones((1,) + tuple(model.input_shape[1:]), np.float32)
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        call, targets = _jax_call(model, variables, keys)
        grads = jax.grad(lambda chosen: jnp.sum(call(chosen, ones)))(targets)
    else:
        targets = [variables[key] for key in keys]
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(model(tf.constant(ones), training=False))
        grads = tape.gradient(total, targets)
    return {key: np.asarray(grad, np.float64) for key, grad in zip(keys, grads)}


# ---- JAX: the model as a pure function of the chosen weights -------------------------------


def _jax_call(model, variables, keys):
    """``(call, targets)``: ``call(chosen, x)``, the model's outputs on ``x`` with the
    weights ``keys`` set to ``chosen`` (a list, in the order of ``keys``) and every other
    weight as it is, and the current values of those weights."""
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    position = {id(v): i for i, v in enumerate(model.trainable_variables)}
    slots = [position[id(variables[key])] for key in keys]

    def call(chosen, x):
        values = list(trainable)
        for slot, value in zip(slots, chosen):
            values[slot] = value
        outputs, _ = model.stateless_call(values, non_trainable, x, training=False)
        return outputs

    return call, [trainable[slot] for slot in slots]


def _jax_loss(model, variables, keys, x, y, temperature):
    call, targets = _jax_call(model, variables, keys)
    return (lambda chosen: _cross_entropy(y, call(chosen, x), temperature)), targets
