"""Scores at initialization on the Keras this process runs (tf_keras here; Keras 3 on
TensorFlow and JAX through tests/test_keras3.py): the loss gradient, the Hessian-gradient
product and SynFlow's gradient of a hand-built MLP equal their numpy formulas, so
gradient-based scores are the same on every flavour within float32 tolerance."""

import numpy as np
import pytest

from keras_lottery import backend, masking
from keras_lottery.backend import keras
from keras_lottery.errors import UsageError
from keras_lottery.pruning import criteria
from keras_lottery.training import saliency

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 5))
Y = np.array([0, 1, 2, 0, 1, 2])
W = {"fc1/kernel": RNG.normal(size=(5, 4)) * 0.8, "fc1/bias": RNG.normal(size=4) * 0.1,
     "out/kernel": RNG.normal(size=(4, 3)) * 0.8, "out/bias": RNG.normal(size=3) * 0.1}
KEYS = ["fc1/kernel", "out/kernel"]
RUNS = backend.BACKEND in ("tensorflow", "jax")


def model():
    inputs = keras.Input(shape=(5,), name="image")
    hidden = keras.layers.Dense(4, activation="relu", name="fc1")(inputs)
    built = keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden))
    masking.set_weights(built, {k: v.astype(np.float32) for k, v in W.items()})
    return built


def numpy_gradient(w, temperature=1.0, x=X, y=Y):
    """∂L/∂θ of the mean cross-entropy of logits / T, by hand."""
    z1 = x @ w["fc1/kernel"] + w["fc1/bias"]
    h = np.maximum(z1, 0)
    logits = (h @ w["out/kernel"] + w["out/bias"]) / temperature
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d_logits = (p - np.eye(3)[y]) / len(y) / temperature
    d_hidden = d_logits @ w["out/kernel"].T * (z1 > 0)
    return {"fc1/kernel": x.T @ d_hidden, "out/kernel": h.T @ d_logits}


def numpy_hessian_gradient(w, temperature):
    """Hg by a central difference of the hand-made gradient along g (float64)."""
    g = numpy_gradient(w, temperature)
    eps = 1e-5

    def shifted(sign):
        return numpy_gradient({k: v + sign * eps * g.get(k, 0) for k, v in w.items()}, temperature)

    up, down = shifted(1), shifted(-1)
    return {k: (up[k] - down[k]) / (2 * eps) for k in KEYS}


def close(found, wanted):
    for key in KEYS:
        scale = np.abs(wanted[key]).max()
        assert np.allclose(found[key], wanted[key], rtol=1e-3, atol=1e-4 * scale), key


@pytest.mark.skipif(not RUNS, reason="no at-init autodiff on this backend")
def test_loss_gradient_and_snip_scores_equal_the_numpy_formula():
    found = saliency.loss_gradient(model(), W, KEYS, X.astype(np.float32), Y)
    close(found, numpy_gradient(W))
    scores = criteria.snip(W["fc1/kernel"], found["fc1/kernel"])
    assert np.allclose(scores, np.abs(W["fc1/kernel"] * numpy_gradient(W)["fc1/kernel"]), rtol=1e-3, atol=1e-6)


@pytest.mark.skipif(not RUNS, reason="no at-init autodiff on this backend")
def test_hessian_gradient_and_grasp_scores_equal_the_numpy_formula():
    t = criteria.GRASP_TEMPERATURE
    found = saliency.hessian_gradient(model(), W, KEYS, X.astype(np.float32), Y, t)
    wanted = numpy_hessian_gradient(W, t)
    close(found, wanted)
    grasp = criteria.grasp(W["out/kernel"], found["out/kernel"])
    # the weights GraSP removes first are those with the highest S = −θ ⊙ Hg
    removed_first = np.argmax(-W["out/kernel"] * wanted["out/kernel"])
    assert np.argmin(grasp) == removed_first


@pytest.mark.skipif(not RUNS, reason="no at-init autodiff on this backend")
def test_synflow_gradient_equals_the_formula_of_the_absolute_network_on_ones():
    found = saliency.synflow_gradient(model(), W, KEYS)
    a = {k: np.abs(v) for k, v in W.items()}
    hidden = np.ones(5) @ a["fc1/kernel"] + a["fc1/bias"]  # all positive: ReLU passes it
    close(found, {"fc1/kernel": np.outer(np.ones(5), a["out/kernel"].sum(1)),
                  "out/kernel": np.outer(hidden, np.ones(3))})


@pytest.mark.skipif(RUNS, reason="this backend has the at-init autodiff")
def test_a_backend_without_the_autodiff_is_refused_in_one_line():
    with pytest.raises(UsageError, match="KERAS_BACKEND=tensorflow or jax"):
        saliency.loss_gradient(model(), W, KEYS, X.astype(np.float32), Y)
