"""Several training steps per call into TensorFlow or XLA (``training.steps_per_execution``)
train what one step per call trains, bit for bit, on every Keras; on JAX through
keras-lottery's scanning train function (:mod:`keras_lottery.training.jax_steps`)."""

import numpy as np

from conftest import TINY, merge
from keras_lottery import backend, data, masking, models, training
from keras_lottery.config import recipe as recipes
from keras_lottery.lottery.callbacks import Rewind


def masked_round(steps_per_execution):
    """A masked round of the tiny recipe (60 iterations, evaluated every 20) capturing the
    weights at iteration 20 as late rewinding does; returns what it produced."""
    recipe = recipes.parse(merge(TINY, {"keras": backend.FLAVOUR, "training": {"steps_per_execution": steps_per_execution}}))
    config = recipe.training
    splits = data.load(recipe.dataset)
    plain = models.build(recipe.model, splits.input_shape, splits.num_classes, seed=0)
    model = masking.wrap(plain, models.rates_by_layer(plain, recipe.pruning))
    training.compile_model(model, config)
    rng = np.random.default_rng(0)
    masks = {name: (rng.random(ones.shape) < 0.7).astype(np.float32) for name, ones in masking.dense_masks(model).items()}
    rewind = Rewind(save_at=20, weights=masking.get_weights(model), masks=masks)
    curve = training.train(
        model, data.train_stream(splits.x_train, splits.y_train, config.batch_size, seed=1),
        data.eval_dataset(splits.x_val, splits.y_val, config.eval_batch_size),
        data.eval_dataset(splits.x_test, splits.y_test, config.eval_batch_size), config, callbacks=[rewind],
    )
    optimizer = [np.asarray(v.numpy()) for v in model.optimizer.variables]
    return curve, masking.get_weights(model), rewind.saved, optimizer, masks, model


def test_several_steps_per_call_train_the_same_weights_bit_for_bit():
    one = masked_round(1)
    five = masked_round(5)
    if backend.BACKEND == "jax":  # the scanning train function ran, not Keras's loop of calls
        assert five[5].train_function.__qualname__.startswith("_scanning_train_function")
        assert not one[5].train_function.__qualname__.startswith("_scanning_train_function")
    curve, weights, saved, optimizer, masks, _ = five
    assert [row["iteration"] for row in curve] == [20, 40, 60]
    assert curve == one[0]  # train loss and accuracy included: the logs of each call's last step
    for name in weights:
        assert np.array_equal(weights[name], one[1][name]), name
        assert np.array_equal(saved[name], one[2][name]), name
    assert len(optimizer) == len(one[3]) and all(np.array_equal(a, b) for a, b in zip(optimizer, one[3]))
    for layer, mask in masks.items():
        assert np.all(weights[f"{layer}/kernel"][mask == 0] == 0.0), layer
        assert np.all(weights[f"{layer}/kernel"][mask == 1] != 0.0), layer
