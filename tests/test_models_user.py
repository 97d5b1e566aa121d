"""The user's own model: built from a recipe's module:function or a Python function, pruned by layer type."""

import sys

import numpy as np
import pytest

from keras_lottery import masking, models
from keras_lottery.backend import keras, tf, tfmot
from keras_lottery.config.recipe import ModelConfig, PruningConfig, RecipeError
from keras_lottery.models import ModelError
from keras_lottery.training import regularization

SHAPE = (12, 12, 3)
RATES = {"conv": 0.2, "dense": 0.2, "output": 0.1}


def pruning(**changes):
    return PruningConfig(**{"rates": RATES, **changes})


def functional(seed=None):
    """Conv2D + BatchNormalization + Dense, auto-named and unseeded initializers (the user's style)."""
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(6, 3, name="features")(x)
    x = keras.layers.Conv2D(6, 1, name="shortcut_proj")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    x = keras.layers.Dense(8, activation="relu")(x)
    outputs = keras.layers.Dense(5, name="logits")(x)
    return keras.Model(inputs, outputs)


def user_model(seed=0):
    return models.source(functional, SHAPE, 5).build(seed)


# ---- kinds by type ------------------------------------------------------------------


def test_builtin_kinds_are_unchanged():
    lenet = models.build(ModelConfig(name="lenet_300_100"), (28, 28, 1), 10, 0)
    assert models.layer_kinds(lenet) == {"fc1": "dense", "fc2": "dense", "output": "output"}
    conv2 = models.build(ModelConfig(name="conv2"), (32, 32, 3), 10, 0)
    assert models.layer_kinds(conv2) == {"conv1": "conv", "conv2": "conv", "fc1": "dense", "fc2": "dense",
                                         "output": "output"}
    resnet = models.source(ModelConfig(name="resnet18"), (32, 32, 3), 10).build(0)
    expected = {"conv": "conv"}
    for stage in (1, 2, 3):
        for block in (1, 2, 3):
            expected[f"stage{stage}_block{block}_conv1"] = "conv"
            expected[f"stage{stage}_block{block}_conv2"] = "conv"
            if stage > 1 and block == 1:
                expected[f"shortcut_stage{stage}_block1"] = "shortcut"
    expected["output"] = "output"
    assert models.layer_kinds(resnet) == expected
    assert set(models.layer_kinds(resnet).items()) == set(expected.items())
    # the same built-in, whichever door it comes through, has the same weights
    again = models.build(ModelConfig(name="resnet18"), (32, 32, 3), 10, 0)
    assert all(np.array_equal(a, b) for a, b in zip(resnet.get_weights(), again.get_weights()))
    rates = models.rates_by_layer(resnet, PruningConfig(rates={"conv": 0.2}))
    assert set(rates) == {name for name, kind in expected.items() if kind == "conv"}


def test_user_model_gets_kinds_by_type_whatever_the_names():
    model = user_model()
    kinds = models.layer_kinds(model)
    assert kinds == {"conv2d": "conv", "features": "conv", "shortcut_proj": "shortcut", "hidden": "dense",
                     "dense": "dense", "logits": "output"}
    assert list(kinds) == [layer.name for layer in model.layers if layer.name in kinds]  # model order
    assert models.prunable_layers(model, pruning()) == kinds
    assert models.rates_by_layer(model, pruning()) == {
        "conv2d": 0.2, "features": 0.2, "hidden": 0.2, "dense": 0.2, "logits": 0.1}
    assert models.kernel_weight_count(model) == 3 * 3 * 3 * 4 + 3 * 3 * 4 * 6 + 6 * 6 + 6 * 16 + 16 * 8 + 8 * 5


class Scale(keras.layers.Layer):
    """A layer with a weight named kernel that is of no prunable type: it stays dense."""

    def build(self, shape):
        self.kernel = self.add_weight(name="kernel", shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.kernel


def test_every_convolution_family_gets_its_kinds_and_other_kernels_stay_dense():
    inputs = keras.Input((20, 2))
    x = keras.layers.Conv1D(4, 3, name="c1")(inputs)
    x = keras.layers.SeparableConv1D(4, 3, name="separable")(x)
    x = keras.layers.Reshape((16, 1, 4))(x)
    x = keras.layers.Conv2DTranspose(2, 3, name="up")(x)
    x = Scale(name="scale")(keras.layers.Flatten()(x))
    outputs = keras.layers.Dense(3, name="out")(x)
    model = keras.Model(inputs, outputs)
    assert models.layer_kinds(model) == {"c1": "conv", "separable/depthwise_kernel": "depthwise",
                                         "separable/pointwise_kernel": "conv", "up": "conv", "out": "output"}
    lines = models.describe_pruning(model, {"c1": 0.2, "out": 0.1})
    assert lines[0].startswith("prunes 2 of 5 prunable weights")
    assert any("up" in line and "stays dense" in line for line in lines)
    assert any("separable/depthwise_kernel" in line and "depthwise" in line for line in lines)
    assert any("scale" in line and "Scale is not a type keras-lottery prunes" in line for line in lines)
    assert any("c1" in line and "20% per round" in line for line in lines)
    # the new kinds have no rate unless the recipe gives one
    assert set(models.rates_by_layer(model, PruningConfig(rates={"conv": 0.2}))) == {
        "c1", "separable/pointwise_kernel", "up"}


def test_a_nested_model_is_pruned_through_its_layers():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="inner_dense")], name="block")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(inner(inputs)))
    assert models.layer_kinds(model) == {"block/inner_dense/kernel": "dense", "out": "output"}
    wrapped = masking.wrap(model, ["block/inner_dense/kernel", "out"])
    masks = masking.dense_masks(wrapped)
    masks["block/inner_dense/kernel"][0] = 0.0
    masking.set_masks(wrapped, masks)
    wrapped.compile("sgd", "mse")
    wrapped.fit(np.ones((4, 4), "float32"), np.ones((4, 2), "float32"), verbose=0, callbacks=masking.callbacks())
    masking.apply_masks(wrapped)
    assert np.all(masking.get_weights(wrapped)["block/inner_dense/kernel"][0] == 0.0)
    plain = masking.strip(wrapped)
    assert np.all(plain.get_layer("block").get_layer("inner_dense").kernel.numpy()[0] == 0.0)


def test_subclasses_of_dense_and_convolutions_are_pruned_by_their_kernel():
    from keras_lottery import masking

    class MyDense(keras.layers.Dense):  # tfmot's registry knows only its exact classes
        pass

    class MyConv(keras.layers.Conv1D):
        pass

    inputs = keras.Input((6, 2))
    x = keras.layers.Flatten()(MyConv(3, 2, name="conv")(inputs))
    model = keras.Model(inputs, MyDense(3, name="custom")(keras.layers.Dense(4, name="d")(x)))
    assert models.layer_kinds(model) == {"conv": "conv", "d": "dense", "custom": "output"}
    wrapped = masking.wrap(model, ["conv", "custom"])
    masks = {name: (np.arange(m.size).reshape(m.shape) % 2).astype("float32")
             for name, m in masking.dense_masks(wrapped).items()}
    masking.set_masks(wrapped, masks)
    wrapped.compile("sgd", "mse")
    wrapped.fit(np.ones((4, 6, 2), "float32"), np.ones((4, 3), "float32"), verbose=0,
                callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    masking.apply_masks(wrapped)
    weights = masking.get_weights(wrapped)
    for name, mask in masks.items():
        assert np.all(weights[f"{name}/kernel"][mask == 0] == 0) and np.all(weights[f"{name}/kernel"][mask == 1] != 0)


def test_describe_pruning_lists_every_kernel_layer():
    model = user_model()
    rates = models.rates_by_layer(model, pruning(exclude=("features",)))
    lines = models.describe_pruning(model, rates)
    assert len(lines) == 1 + 6
    assert "prunes 4 of 6 prunable layers" in lines[0]
    assert [line.split()[-1] for line in lines[1:]] == ["round", "dense", "dense", "round", "round", "round"]
    assert "10% per round" in lines[-1] and "logits" in lines[-1]
    with pytest.raises(ModelError, match="nope"):
        models.describe_pruning(model, {"nope": 0.2})


# ---- include / exclude ----------------------------------------------------------------


def test_include_and_exclude_by_name_and_regex():
    model = user_model()
    assert list(models.prunable_layers(model, pruning(include=("hidden", "logits")))) == ["hidden", "logits"]
    assert list(models.prunable_layers(model, pruning(include=("conv.*", "feat.*")))) == ["conv2d", "features"]
    assert list(models.prunable_layers(model, pruning(exclude=("conv2d", "dens.")))) == [
        "features", "shortcut_proj", "hidden", "logits"]
    # include then exclude: exclude wins
    assert list(models.prunable_layers(model, pruning(include=(".*",), exclude=("shortcut.*",)))) == [
        "conv2d", "features", "hidden", "dense", "logits"]
    # regexes match whole names only: 'dense' is not 'dense_...' and 'hid' matches nothing
    assert list(models.prunable_layers(model, pruning(include=("dense",)))) == ["dense"]
    assert models.rates_by_layer(model, pruning(include=("features", "logits"))) == {"features": 0.2, "logits": 0.1}


@pytest.mark.parametrize("changes, message", [
    ({"include": ("hid",)}, r"recipe key 'pruning.include': 'hid' matches no prunable layer; the prunable layers "
                            r"are conv2d, features, shortcut_proj, hidden, dense, logits"),
    ({"exclude": ("batch_normalization",)}, r"recipe key 'pruning.exclude': 'batch_normalization' matches no "
                                            r"prunable layer"),
    ({"include": ("shortcut_proj",)}, r"recipe key 'pruning.include': layer 'shortcut_proj' is a shortcut layer "
                                      r"and pruning.rates has no rate for 'shortcut'"),
    ({"include": ("(",)}, r"recipe key 'pruning.include': '\(' is not a regular expression"),
    ({"rates": {"conv": 0.2}, "exclude": ("conv2d", "features")}, r"recipe key 'pruning.rates': no layer to prune "
                                                                  r"has a kind in \['conv'\]"),
])
def test_bad_patterns_are_refused(changes, message):
    model = user_model()
    with pytest.raises(RecipeError, match=message) as err:
        models.rates_by_layer(model, pruning(**changes))
    assert "\n" not in str(err.value)


# ---- module:function --------------------------------------------------------------------


MODULE = '''
from keras_lottery.backend import keras

CALLS = []


def build(width, input_shape, num_classes, depth=1, seed=None):
    CALLS.append(dict(width=width, input_shape=input_shape, num_classes=num_classes, depth=depth, seed=seed))
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    for _ in range(depth):
        x = keras.layers.Dense(width, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


def by_seed(s):
    CALLS.append(s)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


NOT_A_FUNCTION = 3
'''


@pytest.fixture
def user_module(write_module):
    return write_module(MODULE)


def test_module_function_gets_options_as_keywords(user_module):
    config = ModelConfig(name=f"{user_module}:build", options={"width": 7, "depth": 2})
    config.check("model")
    source = models.source(config, (4, 4, 1), 3)
    assert source.name == f"{user_module}:build"
    model = source.build(11)
    calls = sys.modules[user_module].CALLS
    assert calls == [dict(width=7, input_shape=(4, 4, 1), num_classes=3, depth=2, seed=11)]
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [7, 7, 3]
    assert models.layer_kinds(model) == {"dense": "dense", "dense_1": "dense", "dense_2": "output"}
    # models.build takes a module:function recipe too (catalog, export and speed use it)
    assert [v.name for v in models.build(config, (4, 4, 1), 3, 11).weights] == [v.name for v in model.weights]


def test_module_function_with_one_positional_parameter_gets_the_seed(user_module):
    model = models.source(ModelConfig(name=f"{user_module}:by_seed"), (4,), 3).build(5)
    assert sys.modules[user_module].CALLS == [5]
    assert models.layer_kinds(model) == {"dense": "output"}


@pytest.mark.parametrize("name, error, message", [
    ("no_such_module_xyz:build", ModelError,
     r"^model.name 'no_such_module_xyz:build': no module named 'no_such_module_xyz' \(run from the folder holding "
     r"no_such_module_xyz.py or add that folder to PYTHONPATH\)$"),
    ("{module}:missing", ModelError, r"^model.name '{module}:missing': module '{module}' \(.*{module}.py\) has no "
                                     r"function 'missing'; define it there or fix the name$"),
    ("{module}:NOT_A_FUNCTION", ModelError, r"is an int, not a function; name a function \(def\) that returns the model$"),
])
def test_missing_module_or_function_is_one_line(user_module, name, error, message):
    name, message = name.format(module=user_module), message.format(module=user_module)
    with pytest.raises(error, match=message) as err:
        models.source(ModelConfig(name=name), (4,), 3)
    assert "\n" not in str(err.value)


def test_module_whose_import_fails_on_a_missing_dependency(tmp_path, monkeypatch):
    (tmp_path / "needs_dep_abc.py").write_text("import dependency_that_is_not_there_abc\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelError, match=r"importing 'needs_dep_abc' failed: no module named "
                                         r"'dependency_that_is_not_there_abc' \(install it\)$"):
        models.source(ModelConfig(name="needs_dep_abc:build"), (4,), 3)


@pytest.mark.parametrize("options, message", [
    ({"width": 3, "colour": "red"}, r"^recipe key 'model.colour': .*:build has no parameter 'colour'; "
                                    r"its parameters are width, depth$"),
    ({}, r"^recipe key 'model': .*:build needs argument 'width'; set model.width$"),
    ({"width": 3, "seed": 1}, r"^recipe key 'model.seed': keras-lottery passes"),
])
def test_bad_options_are_refused(user_module, options, message):
    with pytest.raises(RecipeError, match=message):
        models.source(ModelConfig(name=f"{user_module}:build", options=options), (4,), 3)


def test_recipe_refuses_a_seed_option():
    with pytest.raises(RecipeError, match=r"^recipe key 'model.seed': "):
        ModelConfig(name="mod:build", options={"seed": 3}).check("model")


# ---- Python functions and seeds -------------------------------------------------------------


def weights(model):
    return masking.get_weights(model)


def test_unseeded_initializers_are_fixed_by_the_seed():
    source = models.source(functional, SHAPE, 5)
    first, again, other = weights(source.build(3)), weights(source.build(3)), weights(source.build(4))
    assert list(first) == list(again) == list(other)  # auto-named layers are named alike on every build
    assert all(np.array_equal(first[key], again[key]) for key in first)
    kernels = [key for key in first if key.endswith("/kernel")]
    assert len(kernels) == 6 and not any(np.array_equal(first[key], other[key]) for key in kernels)
    source.check_seeds()
    # Python's and NumPy's global generators are left as they were
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    source.build(9)
    assert np.random.rand() == expected


def test_function_signatures():
    seen = []

    def no_argument():
        seen.append(None)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])

    def named_seed(width=3, *, seed):
        seen.append(seed)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(width), keras.layers.Dense(2)])

    def unbuilt_sequential(s):
        seen.append(s)
        return keras.Sequential([keras.layers.Dense(3), keras.layers.Dense(2)])

    for function in (no_argument, named_seed, unbuilt_sequential):
        model = models.source(function, (4,), 2).build(7)
        assert isinstance(model, keras.Model) and model.output_shape == (None, 2)
    assert seen == [None, 7, 7]
    assert models.source(named_seed, (4,), 2).name == "test_function_signatures.<locals>.named_seed"

    def two_arguments(a, b):
        raise AssertionError("never called")

    with pytest.raises(ModelError, match=r"takes required argument\(s\) a, b; keras-lottery calls it with the seed"):
        models.source(two_arguments, (4,), 2)


def test_a_function_with_fixed_seeds_is_caught():
    def fixed():
        inputs = keras.Input((4,))
        init = keras.initializers.GlorotNormal(seed=1)
        return keras.Model(inputs, keras.layers.Dense(2, kernel_initializer=init, name="out")(inputs))

    with pytest.raises(ModelError, match=r"gives layer\(s\) out the same initial kernel for seeds 0 and 1"):
        models.source(fixed, (4,), 2).check_seeds()

    def drifting():
        inputs = keras.Input((4,))
        init = keras.initializers.Constant(np.random.default_rng().normal())  # a generator no seed reaches
        return keras.Model(inputs, keras.layers.Dense(2, kernel_initializer=init, name="out")(inputs))

    with pytest.raises(ModelError, match=r"gives different initial weights for the same seed \(out/kernel\)"):
        models.source(drifting, (4,), 2).check_seeds()


# ---- models refused --------------------------------------------------------------------


def test_keras3_model_in_a_tf_keras_process_says_how_to_run_it():
    import keras as keras3

    assert keras3.__version__.startswith("3")

    def build():
        return keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])

    with pytest.raises(ModelError, match=r"returned a model built with keras3, but this run uses tf_keras: set "
                                         r"\"keras\": \"keras3\" in the recipe \(--keras keras3\)"):
        models.source(build, (4,), 2).build(0)
    with pytest.raises(ModelError, match=r"got a built Sequential; pass the function that builds it"):
        models.source(build(), (4,), 2)


@pytest.mark.parametrize("returned, message", [
    (lambda: None, r"returned a NoneType; it must return a keras model built with keras_lottery.keras"),
    (lambda: {"model": 1}, r"returned a dict; it must return a keras model"),
    (lambda: keras.layers.Dense(3), r"returned a tf_keras.src.layers.core.dense.Dense; it must return a keras model"),
])
def test_non_model_is_refused(returned, message):
    with pytest.raises(ModelError, match=message):
        models.source(returned, (4,), 2).build(0)
    with pytest.raises(ModelError, match=r"got a built Sequential; pass the function that builds it"):
        models.source(keras.Sequential([keras.layers.Dense(2)]), (4,), 2)
    with pytest.raises(ModelError, match=r"must be a built-in model name, a ModelConfig or a function.*got an int"):
        models.source(3, (4,), 2)
    with pytest.raises(ModelError, match=r"model.name 'nosuch': not a built-in model"):
        models.source("nosuch", (4,), 2)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


def softmax_output():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="probs")(inputs))


def softmax_layer():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Softmax(name="sm")(keras.layers.Dense(2)(inputs)))


def wrong_input():
    inputs = keras.Input((5,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def wrong_classes():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3)(inputs))


class TwoKernels(keras.layers.Layer):
    def build(self, shape):
        self.a = self.add_weight(name="kernel", shape=(shape[-1], 2))
        self.b = self.add_weight(name="kernel", shape=(2,))

    def call(self, x):
        return x @ self.a + self.b

    def get_config(self):
        return super().get_config()


def clashing_weights():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(TwoKernels(name="two")(inputs)))


@pytest.mark.parametrize("function, message", [
    (Subclassed, r"returned a subclassed model \(Subclassed\), which cannot be cloned with pruning wrappers: build "
                 r"it with the functional API \(keras.Model\(inputs, outputs\)\) or as keras.Sequential$"),
    (softmax_output, r"the last layer 'probs' applies softmax, but training uses cross-entropy from logits: remove "
                     r"the softmax \(activation=None\)$"),
    (softmax_layer, r"the last layer 'sm' applies softmax"),
    (wrong_input, r"taking inputs of shape \(5,\), but the data's images have shape \(4,\)"),
    (wrong_classes, r"output shape \(None, 3\), but the data has 2 classes: end it with one Dense\(2\) layer"),
    (clashing_weights, r"layer 'two' has two weights named 'kernel' \(.*\); give each weight of a layer its own name"),
])
def test_unusable_models_are_refused_in_one_line(function, message):
    with pytest.raises(ModelError, match=message) as err:
        models.source(function, (4,), 2).build(0)
    assert "\n" not in str(err.value)


# ---- masking and weight decay on the user's model ------------------------------------


def test_masks_hold_on_a_user_model_after_training():
    model = user_model(seed=1)
    rates = models.rates_by_layer(model, pruning())
    wrapped = masking.wrap(model, rates)
    assert set(masking.wrappers(wrapped)) == set(rates)
    assert sum(type(layer).__name__ == "BatchNormalization" for layer in wrapped.layers) == 1
    assert set(masking.named_variables(wrapped)) == set(masking.named_variables(user_model(seed=1)))
    rng = np.random.default_rng(0)
    masks = {name: (rng.random(mask.shape) < 0.5).astype(np.float32) for name, mask in masking.dense_masks(wrapped).items()}
    masking.set_masks(wrapped, masks)
    before = masking.get_weights(wrapped)
    wrapped.compile(optimizer=keras.optimizers.Adam(0.1),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(16, *SHAPE)).astype(np.float32)
    y = rng.integers(0, 5, 16)
    wrapped.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    masking.apply_masks(wrapped)
    after = masking.get_weights(wrapped)
    for name, mask in masks.items():
        kernel = after[f"{name}/kernel"]
        assert np.all(kernel[mask == 0] == 0.0)
        assert not np.array_equal(kernel[mask == 1], before[f"{name}/kernel"][mask == 1])  # it trained
    # the unpruned shortcut (no rate for its kind) is not wrapped and may be anything
    assert "shortcut_proj" not in masking.wrappers(wrapped)


def test_wrap_refuses_layers_it_cannot_prune():
    model = user_model()
    with pytest.raises(ModelError, match=r"cannot prune layer 'batch_normalization' \(BatchNormalization\): only "
                                         r"Dense, Conv1D"):
        masking.wrap(model, {"batch_normalization": 0.2})
    with pytest.raises(ModelError, match=r"cannot prune unknown layers: nope"):
        masking.wrap(model, {"nope": 0.2})


def test_weight_decay_uses_the_same_type_rule():
    model = user_model()
    wrapped = masking.wrap(model, models.rates_by_layer(model, pruning()))
    regularization.add_weight_decay(wrapped, 1e-4)
    assert len(wrapped.losses) == len(models.layer_kinds(model)) == 6
    kernels = [layer.kernel for layer in models.kernel_layers(wrapped)]
    assert [k.name.split("/")[-2] for k in kernels] == list(models.layer_kinds(model))  # the wrapped ones too
    expected = sum(float(tf.reduce_sum(tf.square(kernel))) for kernel in kernels) * 0.5e-4
    assert float(tf.add_n(wrapped.losses)) == pytest.approx(expected, rel=1e-5)
