"""Training features of the CIFAR recipes: schedules, augmentation, weight decay."""

import math

import numpy as np
import pytest

from keras_lottery.data import augment
from keras_lottery import data, lottery, masking, models, training
from keras_lottery.config import recipe
from keras_lottery.training import regularization
from keras_lottery.backend import keras, tf, tfmot
from keras_lottery.config.recipe import ModelConfig, TrainingConfig


@pytest.mark.parametrize("config, expected", [
    # Resnet-18 with warmup: 0.03, linear warmup over 20K, x0.1 at 20K and 25K.
    (dict(learning_rate=0.03, warmup_iterations=20000, lr_drops=(20000, 25000)),
     {0: 0.0, 1000: 0.0015, 10000: 0.015, 19999: 0.03 * 19999 / 20000, 20000: 0.003, 24999: 0.003,
      25000: 0.0003, 29999: 0.0003}),
    # VGG-19 without warmup: 0.1, x0.1 at epochs 80 and 120 of 703 iterations.
    (dict(learning_rate=0.1, lr_drops=(56240, 84360)),
     {0: 0.1, 56239: 0.1, 56240: 0.01, 84359: 0.01, 84360: 0.001, 112479: 0.001}),
])
def test_learning_rate_at_chosen_iterations(config, expected):
    schedule = training.learning_rate(TrainingConfig(optimizer="sgd", iterations=112480, eval_every=703, **config))
    for step, rate in expected.items():
        assert float(schedule(step)) == pytest.approx(rate, rel=1e-5), step


@pytest.mark.parametrize("start, rate", [(0, 0.1), (19500, 0.1), (20000, 0.01), (25000, 0.001)])
def test_a_round_started_late_steps_at_the_schedules_rate(start, rate):
    """After reset_optimizer(model, k), the first SGD step uses the schedule's rate at k."""
    config = TrainingConfig(optimizer="sgd", momentum=0.9, learning_rate=0.1, iterations=30000, eval_every=500,
                            lr_drops=(20000, 25000))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_initializer="zeros")])
    training.compile_model(model, config)
    training.reset_optimizer(model, start)
    # Zero logits and label 0: the gradient of row 0 of the kernel is (-0.5, 0.5).
    model.fit(np.array([[1.0, 0.0, 0.0]], np.float32), np.array([0], np.int32), batch_size=1, epochs=1, verbose=0)
    np.testing.assert_allclose(model.layers[0].kernel.numpy()[0], [0.5 * rate, -0.5 * rate], rtol=1e-5)
    assert int(model.optimizer.iterations.numpy()) == start + 1


def _find_shift(source, image, pad=augment.PAD):
    """(flipped, row, column) offsets that turn ``source`` into ``image``, if any."""
    height, width = source.shape[:2]
    found = []
    for flipped in (False, True):
        padded = np.pad(source[:, ::-1] if flipped else source, ((pad, pad), (pad, pad), (0, 0)))
        for row in range(2 * pad + 1):
            for col in range(2 * pad + 1):
                if np.array_equal(padded[row:row + height, col:col + width], image):
                    found.append((flipped, row, col))
    return found


def test_flip_and_crop_keeps_shapes_and_labels_and_only_moves_pixels():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(32, 8, 8, 3)).astype(np.float32)
    labels = np.arange(32, dtype=np.int32)
    out_images, out_labels = augment.flip_and_crop(tf.constant(images), tf.constant(labels))
    assert out_images.shape == images.shape and out_images.dtype == tf.float32
    np.testing.assert_array_equal(out_labels.numpy(), labels)
    shifts = [_find_shift(x, y) for x, y in zip(images, out_images.numpy())]
    assert all(shifts)  # every output is its own input, flipped and/or shifted by <= 4 pixels
    assert len({s[0] for s in shifts}) > 8  # and the shifts differ across the batch
    assert {s[0][0] for s in shifts} == {False, True}


def test_augmented_stream_is_reproducible_resumable_and_keeps_labels():
    x = np.random.default_rng(1).normal(size=(40, 8, 8, 3)).astype(np.float32)
    y = np.arange(40, dtype=np.int32)

    def batches(fn, start=0, seed=3):
        stream = data.train_stream(x, y, 8, seed=seed, start_step=start, augment=fn)
        return [(a.numpy(), b.numpy()) for a, b in stream.take(6 - start)]

    plain, first, again = batches(None), batches(augment.flip_and_crop), batches(augment.flip_and_crop)
    assert all(np.array_equal(p[1], f[1]) for p, f in zip(plain, first))  # same examples, same order
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again))  # same augmentations
    resumed = batches(augment.flip_and_crop, start=4)  # a late-rewound round starts at step 4
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first[4:], resumed))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(plain, first))
    # Epoch 2 (steps 5, 6) revisits the same examples in a new order, with new augmentations.
    for image, label in zip(*first[5]):
        assert not any(np.array_equal(image, other) for other in first[0][0])
    assert _find_shift(x[first[5][1][0]], first[5][0][0])


def test_weight_decay_reaches_only_surviving_weights():
    """Keras L2 l*sum(w^2) with l = λ/2; pruned entries are zero when the loss is computed."""
    assert regularization.l2_factor(1e-4) == 5e-5
    plain = models.build(ModelConfig(name="mlp", hidden=(6,)), (2, 2, 1), 3, seed=0)
    model = masking.wrap(plain, ["fc1"])
    regularization.add_weight_decay(model, 1e-4)
    assert len(model.losses) == 2  # fc1 and output kernels
    training.compile_model(model, TrainingConfig(optimizer="sgd", learning_rate=0.5, iterations=1, eval_every=1))
    mask = np.zeros((4, 6), np.float32)
    mask[:, :3] = 1.0
    masking.set_masks(model, {"fc1": mask})
    fc1 = masking.wrappers(model)["fc1"].layer
    fc1.kernel.assign(np.full((4, 6), 2.0, np.float32))  # pruned entries non-zero before the step
    output = model.get_layer("output").kernel.numpy()
    zeros = np.zeros((5, 2, 2, 1), np.float32)  # zero inputs: only the decay moves the kernels
    history = model.fit(zeros, np.zeros(5, np.int32), batch_size=5, epochs=1, verbose=0,
                        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    survivors_decay = 5e-5 * (12 * 2.0 ** 2 + np.sum(output ** 2))  # 12 survivors of value 2
    assert history.history["loss"][0] == pytest.approx(math.log(3) + survivors_decay, rel=1e-5)
    masking.apply_masks(model)
    kernel = fc1.kernel.numpy()
    np.testing.assert_allclose(kernel[:, :3], 2.0 * (1 - 0.5 * 1e-4), rtol=1e-6)  # w -= lr * λ * w
    assert np.all(kernel[:, 3:] == 0)


def test_experiment_wires_weight_decay_and_augmentation(tiny_recipe, monkeypatch, tmp_path):
    calls, original = [], augment.flip_and_crop

    def spy(images, labels):
        calls.append(tuple(images.shape))
        return original(images, labels)

    monkeypatch.setattr(augment, "flip_and_crop", spy)
    r = recipe.parse(tiny_recipe(dataset={"augment": True}, training={"weight_decay": 1e-4},
                                 pruning={"rounds": 1}, controls=[]))
    splits = data.load(r.dataset)
    experiment = lottery.Experiment(r, tmp_path / "run", splits, log=lambda message: None)
    assert len(experiment.model.losses) == 3  # fc1, fc2, output
    experiment.theta0(0)
    experiment.train_variant(0, 0, "ticket")
    assert calls and calls[0][1:] == (8, 8, 1)  # the training stream was augmented
    plain = recipe.parse(tiny_recipe(pruning={"rounds": 1}, controls=[]))
    calls.clear()
    experiment = lottery.Experiment(plain, tmp_path / "plain", splits, log=lambda message: None)
    assert experiment.model.losses == []
    experiment.theta0(0)
    experiment.train_variant(0, 0, "ticket")
    assert calls == []
