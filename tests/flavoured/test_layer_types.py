"""Every prunable layer type (keras_lottery.models.prunable), on the Keras this process runs.

One small model of token ids holds them all at once: an Embedding, a MultiHeadAttention
(EinsumDense projections inside a layer), an LSTM, a DepthwiseConv2D, a SeparableConv2D, a
Conv2DTranspose, a model nested as a layer (its convolution found and pruned), a Dense layer
used twice (one mask) and the output Dense. It is pruned for 2 rounds through
``keras_lottery.run``, each kind at its own rate: every mask holds exactly the count
scheduled, masked weights are exactly zero, the survivors start round 1 from θ0 bit for
bit, and the exported ticket reloads with the run's weights and predictions.
"""

import numpy as np
import pytest

from conftest import assert_survivors_start_from_theta0
import keras_lottery as kl
from keras_lottery import backend, masking, models
from keras_lottery.backend import keras
from keras_lottery.models.errors import ModelError
from keras_lottery.pruning import units
from keras_lottery.rundir import layout, storage

RATES = {"embedding": 0.3, "attention": 0.4, "recurrent": 0.25, "depthwise": 0.2, "conv": 0.35, "dense": 0.3,
         "output": 0.15}
TOKENS, LENGTH, CLASSES = 16, 6, 4
KINDS = {
    "emb/embeddings": "embedding",
    "mha/query/kernel": "attention", "mha/key/kernel": "attention", "mha/value/kernel": "attention",
    "mha/attention_output/kernel": "attention",
    "lstm": "recurrent", "lstm/recurrent_kernel": "recurrent",
    "sep/depthwise_kernel": "depthwise", "sep/pointwise_kernel": "conv",
    "up": "conv", "stem/stem_conv/kernel": "conv", "shared": "dense", "out": "output",
}


def every_type(seed=0):
    """One model of every prunable type (the module's docstring)."""
    ids = keras.Input((LENGTH,), dtype="int32", name="ids")
    x = keras.layers.Embedding(TOKENS, 8, name="emb")(ids)
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = keras.layers.LSTM(6, return_sequences=True, name="lstm")(x)
    x = keras.layers.Reshape((LENGTH, 6, 1))(x)
    x = keras.layers.DepthwiseConv2D(2, depth_multiplier=2, name="dw")(x)
    x = keras.layers.SeparableConv2D(3, 2, name="sep")(x)
    x = keras.layers.Conv2DTranspose(2, 2, name="up")(x)
    inner = keras.Input(tuple(x.shape[1:]))
    stem = keras.Model(inner, keras.layers.Conv2D(3, 1, name="stem_conv")(inner), name="stem")
    x = keras.layers.Flatten()(stem(x))
    shared = keras.layers.Dense(12, activation="relu", name="shared")
    x = shared(keras.layers.Dense(12, name="widen")(x))
    x = shared(x)  # the same layer (and kernel) used twice
    return keras.Model(ids, keras.layers.Dense(CLASSES, name="out")(x))


def token_arrays():
    rng = np.random.default_rng(0)
    x = rng.integers(0, TOKENS, (240, LENGTH)).astype(np.int32)
    y = (x[:, 0] % CLASSES).astype(np.int64)
    return x[:200], y[:200], x[200:], y[200:]


def test_every_type_is_found_with_its_kind():
    model = every_type()
    kinds = models.layer_kinds(model)
    # the Dense "widen" is dense too; the depthwise layer's kernel is its unit (Keras 3 names it kernel)
    depthwise = "dw" if "dw" in kinds else "dw/depthwise_kernel"
    assert kinds == {**KINDS, depthwise: "depthwise", "widen": "dense"}
    assert list(kinds)[:2] == ["emb/embeddings", "mha/query/kernel"]  # model order, at any depth
    sizes = models.kernel_sizes(model)
    assert sizes["emb/embeddings"] == TOKENS * 8 and sizes["mha/query/kernel"] == 8 * 2 * 4
    assert sizes["stem/stem_conv/kernel"] == 1 * 1 * 2 * 3 and sizes["shared"] == 12 * 12


def test_costs_count_each_type():
    from keras_lottery import costs

    uses = costs.positions(every_type())
    assert uses["emb/embeddings"] == 0  # a lookup
    assert uses["mha/query/kernel"] == LENGTH  # once per token
    assert uses["lstm"] == uses["lstm/recurrent_kernel"] == LENGTH  # once per time step
    # (6, 6, 1) -> depthwise 2x2 (5, 5, 2) -> separable 2x2 (4, 4, 3) -> transposed 2x2 (5, 5, 2) -> 1x1
    depthwise = "dw" if "dw" in uses else "dw/depthwise_kernel"
    assert uses[depthwise] == 25 and uses["sep/depthwise_kernel"] == uses["sep/pointwise_kernel"] == 16
    assert uses["up"] == 16  # a transposed convolution: once per input position
    assert uses["stem/stem_conv/kernel"] == 25  # inside the nested model
    assert uses["out"] == uses["shared"] == 1


def test_a_weight_tied_into_two_places_is_refused():
    class Tied(keras.layers.Layer):
        def __init__(self, other, **kwargs):
            super().__init__(**kwargs)
            self.other = other

        def call(self, inputs):
            return inputs @ self.other.kernel

        def get_prunable_weights(self):
            return [self.other.kernel]

    inputs = keras.Input((4,))
    dense = keras.layers.Dense(4, name="dense")
    x = dense(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(Tied(dense, name="tied")(x)))
    with pytest.raises(ModelError, match=r"tied into a second place"):
        models.layer_kinds(model)


def test_weights_that_start_identical_are_named_when_the_run_starts(tmp_path):
    def one_seeded_initializer(seed=0):  # seeded from `seed`, as keras-lottery asks, but shared
        init = keras.initializers.GlorotUniform(seed=seed)
        ids = keras.Input((LENGTH,), dtype="int32")
        x = keras.layers.Embedding(TOKENS, 8, name="emb")(ids)
        x = keras.layers.Flatten()(keras.layers.MultiHeadAttention(2, 4, kernel_initializer=init, name="mha")(x, x))
        a = keras.layers.Dense(6, kernel_initializer=init, name="a")(x)
        b = keras.layers.Dense(6, kernel_initializer=init, name="b")(x)
        return keras.Model(ids, keras.layers.Dense(CLASSES, name="out")(keras.layers.Concatenate()([a, b])))

    assert models.identical_weights(every_type()) == []
    same = [["mha/query/kernel", "mha/key/kernel", "mha/value/kernel"], ["a", "b"]]
    assert models.identical_weights(one_seeded_initializer()) == same
    recipe = kl.load_recipe("quickstart_digits", overrides={
        "keras": backend.FLAVOUR, "training.iterations": 10, "training.eval_every": 10, "pruning.rounds": 1,
        "controls": [], "dataset.validation_size": 40})
    lines = []
    kl.run(recipe, model=one_seeded_initializer, data=token_arrays(), out=tmp_path / "run", log=lines.append,
           report=False)
    notes = [str(line) for line in lines if "start from identical weights" in str(line)]
    assert [note.split(" start from")[0] for note in notes] == ["note: " + ", ".join(units_) for units_ in same]


CONTROLS = ["random_reinit", "random_prune", "reshuffle", "signed_constant", "inverted"]


@pytest.fixture(scope="module")
def types_run(tmp_path_factory):
    recipe = kl.load_recipe("quickstart_digits", overrides={
        "keras": backend.FLAVOUR, "training.iterations": 20, "training.eval_every": 10, "training.batch_size": 20,
        "pruning.rounds": 2, "controls": CONTROLS, "pruning.rates": RATES, "dataset.validation_size": 40})
    result = kl.run(recipe, model=every_type, data=token_arrays(), out=tmp_path_factory.mktemp("types") / "run",
                    log=lambda _: None, report=False)
    return result


def test_every_type_is_pruned_as_scheduled_and_stays_zero(types_run):
    model = every_type()
    kinds = models.layer_kinds(model)
    assert [(row["round"], row["status"]) for row in types_run.rows if row["variant"] == "ticket"] == [(0, "ok"), (1, "ok")]
    for round_index in (0, 1):
        masks = storage.load_arrays(layout.mask(types_run.run_dir, 0, round_index, "ticket"))
        final = storage.load_arrays(layout.final(types_run.run_dir, 0, round_index, "ticket"))
        assert sorted(masks) == sorted(kinds)  # the shared Dense: one mask
        for unit, mask in masks.items():
            kept = max(1, int(np.floor(mask.size * (1 - RATES[kinds[unit]]) ** round_index + 0.5)))
            assert int(mask.sum()) == kept, (round_index, unit)
            weight = final[units.weight_key(unit, final)]
            assert weight.shape == mask.shape and np.all(weight[mask == 0] == 0.0), unit


def test_every_control_masks_every_type_per_weight(types_run):
    """Each control of round 1 holds the ticket's count in every pruned weight, its masked
    weights exactly zero, on every layer type (random_reinit shares the ticket's mask)."""
    assert [row["status"] for row in types_run.rows] == ["ok"] * (2 + len(CONTROLS))
    ticket = storage.load_arrays(layout.mask(types_run.run_dir, 0, 1, "ticket"))
    for control in CONTROLS:
        masks = storage.load_arrays(layout.mask(types_run.run_dir, 0, 1, control))
        final = storage.load_arrays(layout.final(types_run.run_dir, 0, 1, control))
        assert sorted(masks) == sorted(ticket), control
        for unit, mask in masks.items():
            assert int(mask.sum()) == int(ticket[unit].sum()), (control, unit)
            assert np.all(final[units.weight_key(unit, final)][mask == 0] == 0.0), (control, unit)
    assert all(np.array_equal(m, ticket[u])
               for u, m in storage.load_arrays(layout.mask(types_run.run_dir, 0, 1, "random_reinit")).items())


def test_survivors_of_every_type_start_from_theta0_bit_for_bit(types_run):
    assert_survivors_start_from_theta0(types_run.recipe, types_run.run_dir, every_type, token_arrays())


def test_the_exported_ticket_reloads_with_the_run_weights(types_run, tmp_path):
    model = types_run.export(1, tmp_path / "ticket")
    final = storage.load_arrays(layout.final(types_run.run_dir, 0, 1, "ticket"))
    masks = storage.load_arrays(layout.mask(types_run.run_dir, 0, 1, "ticket"))
    exported = masking.get_weights(model)
    assert exported.keys() == final.keys()
    for key, value in final.items():
        assert np.array_equal(exported[key], value), key
    for unit, mask in masks.items():
        assert np.all(exported[units.weight_key(unit, exported)][mask == 0] == 0.0)
    _, _, x_test, y_test = token_arrays()
    from keras_lottery import export

    out = tmp_path / "ticket"
    again = keras.models.load_model(str(out) if backend.LEGACY else str(out / export.KERAS_FILE), compile=False)
    assert np.allclose(np.asarray(again.predict(x_test, verbose=0)), np.asarray(model.predict(x_test, verbose=0)),
                       atol=1e-6)  # read back from disk
    predicted = np.argmax(np.asarray(model.predict(x_test, verbose=0)), axis=-1)
    summary = storage.read_json(layout.summary(types_run.run_dir, 0, 1, "ticket"))
    assert np.mean(predicted == y_test) == pytest.approx(summary["final_test_accuracy"], abs=1e-6)


class TwoPruned(keras.layers.Layer):
    """A user's layer offering two weights to prune through get_prunable_weights()."""

    def build(self, shape):
        self.a = self.add_weight(name="a", shape=(shape[-1], 4))
        self.b = self.add_weight(name="b", shape=(4, 4))
        self.scale = self.add_weight(name="scale", shape=(4,), initializer="ones")

    def call(self, x):
        return (x @ self.a) @ self.b * self.scale

    def get_prunable_weights(self):
        return [self.a, self.b]


def test_a_custom_layer_may_offer_several_weights():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(TwoPruned(name="two")(inputs)))
    assert models.layer_kinds(model) == {"two/a": "dense", "two/b": "dense", "out": "output"}
    wrapped = masking.wrap(model, ["two/a", "two/b"])
    masks = {unit: (np.arange(m.size).reshape(m.shape) % 2).astype("float32")
             for unit, m in masking.dense_masks(wrapped).items()}
    masking.set_masks(wrapped, masks)
    wrapped.compile("sgd", "mse")
    wrapped.fit(np.ones((4, 3), "float32"), np.ones((4, 2), "float32"), verbose=0, callbacks=masking.callbacks())
    masking.apply_masks(wrapped)
    weights = masking.get_weights(wrapped)
    for unit, mask in masks.items():
        assert np.all(weights[unit][mask == 0] == 0.0) and np.any(weights[unit][mask == 1] != 0.0), unit
    assert np.count_nonzero(weights["two/scale"]) == 4  # not offered: never masked
