"""Training speed settings and the one-pass evaluation: same results, masks kept."""

import numpy as np
import pytest

from keras_lottery import data, lottery, masking, models, training
from keras_lottery.training import evaluation
from keras_lottery.rundir import storage
from keras_lottery.backend import keras
from keras_lottery.config.recipe import RecipeError, parse


def small_model(recipe):
    splits = data.load(recipe.dataset)
    plain = models.build(recipe.model, splits.input_shape, splits.num_classes, seed=1)
    model = masking.wrap(plain, ["fc1", "fc2", "output"])
    training.compile_model(model, recipe.training)
    return model, splits


def test_one_pass_evaluation_matches_model_evaluate(tiny_recipe):
    recipe = parse(tiny_recipe())
    model, splits = small_model(recipe)
    masks = masking.dense_masks(model)
    masks["fc1"][::2] = 0.0
    masking.set_masks(model, masks)
    # 200 validation examples in batches of 64: three full batches and a last one of 8.
    val = data.eval_dataset(splits.x_val, splits.y_val, 64)
    test = data.eval_dataset(splits.x_test, splits.y_test, 64)
    result = evaluation.Evaluator(model, {"val": val, "test": test})()
    for name, dataset in (("val", val), ("test", test)):
        expected = model.evaluate(dataset, verbose=0, return_dict=True)
        assert result[name]["loss"] == pytest.approx(expected["loss"], rel=1e-6)
        assert result[name]["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-7)


def test_evaluator_is_built_once_per_model_and_datasets(tiny_recipe):
    recipe = parse(tiny_recipe())
    model, splits = small_model(recipe)
    val = data.eval_dataset(splits.x_val, splits.y_val, 100)
    test = data.eval_dataset(splits.x_test, splits.y_test, 100)
    first = evaluation.evaluator(model, val, test)
    assert evaluation.evaluator(model, val, test) is first
    assert evaluation.evaluator(model, test, val) is not first


def test_curve_rows_keep_their_columns(tiny_recipe):
    recipe = parse(tiny_recipe(training={"eval_batch_size": 64}))
    model, splits = small_model(recipe)
    stream = data.train_stream(splits.x_train, splits.y_train, 32, seed=0)
    val = data.eval_dataset(splits.x_val, splits.y_val, 64)
    test = data.eval_dataset(splits.x_test, splits.y_test, 64)
    curve = training.train(model, stream, val, test, recipe.training)
    assert [row["iteration"] for row in curve] == [20, 40, 60]
    assert list(curve[0]) == ["iteration", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                              "test_loss", "test_accuracy"]
    final = model.evaluate(test, verbose=0, return_dict=True)
    assert curve[-1]["test_accuracy"] == pytest.approx(final["accuracy"], abs=1e-7)


def run_rounds(tmp_path, name, recipe_dict):
    recipe = parse(recipe_dict)
    run_dir, rows = lottery.run(recipe, tmp_path / name, log=lambda *args: None)
    return run_dir, [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_steps_per_execution_gives_identical_masks_weights_and_curves(tmp_path, tiny_recipe):
    base = tiny_recipe(pruning={"rounds": 2}, controls=["random_reinit"], rewind={"iteration": 20})
    fast = tiny_recipe(pruning={"rounds": 2}, controls=["random_reinit"], rewind={"iteration": 20},
                       training={"steps_per_execution": 10})
    dir_a, rows_a = run_rounds(tmp_path, "a", base)
    dir_b, rows_b = run_rounds(tmp_path, "b", fast)
    assert rows_a == rows_b
    for part in ("rewind.npz", "round_01/ticket/mask.npz", "round_01/ticket/final.npz",
                 "round_01/random_reinit/final.npz"):
        a = storage.load_arrays(dir_a / "trial_0" / part)
        b = storage.load_arrays(dir_b / "trial_0" / part)
        assert set(a) == set(b)
        assert all(np.array_equal(a[k], b[k]) for k in a), part
    for variant in ("ticket", "random_reinit"):
        curve_a = (dir_a / "trial_0" / "round_01" / variant / "curve.csv").read_text()
        assert curve_a == (dir_b / "trial_0" / "round_01" / variant / "curve.csv").read_text()
    # Masked weights stay exactly zero after training with several steps per call.
    final = storage.load_arrays(dir_b / "trial_0" / "round_01" / "ticket" / "final.npz")
    mask = storage.load_arrays(dir_b / "trial_0" / "round_01" / "ticket" / "mask.npz")
    for layer, m in mask.items():
        assert m.min() == 0.0
        assert np.all(final[f"{layer}/kernel"][m == 0] == 0.0)


def test_xla_round_is_deterministic_and_keeps_masked_weights_zero(tmp_path, tiny_recipe):
    recipe = tiny_recipe(pruning={"rounds": 2}, controls=[], training={"jit_compile": True, "steps_per_execution": 5})
    dir_a, rows_a = run_rounds(tmp_path, "a", recipe)
    dir_b, rows_b = run_rounds(tmp_path, "b", recipe)
    assert rows_a == rows_b
    final = storage.load_arrays(dir_a / "trial_0" / "round_01" / "ticket" / "final.npz")
    mask = storage.load_arrays(dir_a / "trial_0" / "round_01" / "ticket" / "mask.npz")
    assert set(mask) == {"fc1", "fc2", "output"}
    for layer, m in mask.items():
        assert m.min() == 0.0
        assert np.all(final[f"{layer}/kernel"][m == 0] == 0.0)


def test_speed_settings_do_not_change_the_run_directory(tiny_recipe):
    plain = parse(tiny_recipe())
    assert parse(tiny_recipe(training={"steps_per_execution": 4})).short_hash() == plain.short_hash()
    assert parse(tiny_recipe(training={"jit_compile": True})).short_hash() != plain.short_hash()


@pytest.mark.parametrize("training, rewind, message", [
    ({"steps_per_execution": 0}, 0, "training.steps_per_execution': must be an integer >= 1"),
    ({"jit_compile": "yes"}, 0, "training.jit_compile': must be true or false"),
])
def test_bad_speed_settings_are_refused(tiny_recipe, training, rewind, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(tiny_recipe(training=training, rewind={"iteration": rewind}))


@pytest.mark.parametrize("asked, used", [(1, 1), (10, 10), (20, 20), (8, 4), (7, 1), (100, 20)])
def test_steps_per_execution_is_reduced_to_divide_eval_every(tiny_recipe, asked, used):
    recipe = parse(tiny_recipe(training={"steps_per_execution": asked}))  # eval_every 20
    assert training.steps_per_execution(recipe.training) == used


def test_compile_model_passes_speed_settings(tiny_recipe):
    recipe = parse(tiny_recipe(training={"steps_per_execution": 4, "jit_compile": True}))
    model, _ = small_model(recipe)
    assert int(model._steps_per_execution.numpy()) == 4
    assert model._jit_compile is True
    assert isinstance(model, keras.Model)


def test_training_streams_share_one_tensor_of_the_images():
    import gc

    x = np.arange(40, dtype=np.float32).reshape(10, 2, 2, 1)
    y = np.arange(10, dtype=np.int32)
    tensor = data.as_tensor(x)
    assert data.as_tensor(x) is tensor
    first = next(iter(data.train_stream(x, y, 5, seed=3)))
    second = next(iter(data.train_stream(x, y, 5, seed=3)))
    np.testing.assert_array_equal(first[0].numpy(), second[0].numpy())
    np.testing.assert_array_equal(first[0].numpy(), x[first[1].numpy()])
    key = id(x)
    del x, tensor, first, second
    gc.collect()
    assert key not in data.streams._TENSORS
