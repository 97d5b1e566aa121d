"""Models of several inputs through ``keras_lottery.run``, on the Keras this process runs:
a two-input model fed a tuple (float features and integer ids), and a text-style model fed a
dict ``{"token_ids", "padding_mask"}``. Two rounds each: masked weights exactly zero in every
saved file, the rewind point θ0 as initialized, the run continued in its directory with the
results of one uninterrupted run, the data's fingerprint recorded, and the ticket exported."""

import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery import backend, data
from keras_lottery.backend import keras
from keras_lottery.rundir import layout, storage

VOCAB, LENGTH, CLASSES = 40, 8, 3
CHANGES = {"keras": backend.FLAVOUR, "training.iterations": 40, "training.eval_every": 20,
           "training.batch_size": 32, "dataset.validation_size": 40,
           "pruning.rates": {"dense": 0.3, "output": 0.15}, "controls": ["random_reinit"]}
ROUNDS = 2


def recipe(rounds=ROUNDS):
    return kl.load_recipe("quickstart_digits", overrides=CHANGES, rounds=rounds)


def token_arrays(n, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (n, LENGTH))
    mask = rng.random((n, LENGTH)) < 0.75
    ids = np.where(mask, ids, 0)
    labels = (ids.sum(axis=1) % CLASSES).astype(np.int64)
    return {"token_ids": ids.astype(np.int32), "padding_mask": mask.astype(np.int32)}, labels


def dict_data():
    (x_train, y_train), (x_test, y_test) = token_arrays(240, 0), token_arrays(60, 1)
    return x_train, y_train, x_test, y_test


def tuple_data():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(300, 6)).astype(np.float32)
    ids = rng.integers(0, VOCAB, (300, 4)).astype(np.int64)
    labels = ((features[:, 0] > 0).astype(int) + (ids[:, 0] > VOCAB // 2)).astype(np.int64)
    return (features[:240], ids[:240]), labels[:240], (features[240:], ids[240:]), labels[240:]


def text_model(seed):
    token_ids = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((LENGTH,), dtype="int32", name="padding_mask")
    x = keras.layers.Add()([keras.layers.Embedding(VOCAB, 8, name="tokens")(token_ids),
                            keras.layers.Embedding(2, 8, name="segments")(padding_mask)])
    x = keras.layers.Dense(16, activation="relu", name="fc1")(keras.layers.Flatten()(x))
    return keras.Model({"token_ids": token_ids, "padding_mask": padding_mask},
                       keras.layers.Dense(CLASSES, name="output")(x))


def two_input_model(seed):
    features = keras.Input((6,), name="features")
    ids = keras.Input((4,), dtype="int32", name="ids")
    x = keras.layers.Concatenate()([keras.layers.Dense(12, activation="relu", name="fc1")(features),
                                    keras.layers.Flatten()(keras.layers.Embedding(VOCAB, 3, name="tokens")(ids))])
    x = keras.layers.Dense(16, activation="relu", name="fc2")(x)
    return keras.Model([features, ids], keras.layers.Dense(CLASSES, name="output")(x))


CASES = {"dict": (text_model, dict_data, {"fc1", "output"}),
         "tuple": (two_input_model, tuple_data, {"fc1", "fc2", "output"})}


_RUNS = {}  # kind -> (kind, build, arrays, pruned, result): each case runs once per module


def run_case(kind, tmp_path_factory):
    if kind not in _RUNS:
        build, arrays, pruned = CASES[kind]
        out = tmp_path_factory.mktemp(kind) / "run"
        result = kl.run(recipe(), model=build, data=arrays(), out=out, log=lambda line: None, report=False)
        _RUNS[kind] = (kind, build, arrays, pruned, result)
    return _RUNS[kind]


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    return run_case(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def dict_case(tmp_path_factory):
    return run_case("dict", tmp_path_factory)


def saved(run_dir, round_index, variant, name):
    return storage.load_arrays(layout.variant_dir(run_dir, 0, round_index, variant) / name)


def test_masked_weights_are_exactly_zero_in_every_saved_file(case):
    _, _, _, pruned, result = case
    assert {row["status"] for row in result.rows} == {"ok"} and len(result.rows) == 3
    theta0 = storage.load_arrays(layout.init_weights(result.run_dir, 0))
    for row in result.rows:
        masks = saved(result.run_dir, row["round"], row["variant"], layout.MASK)
        final = saved(result.run_dir, row["round"], row["variant"], layout.FINAL)
        assert set(masks) == pruned  # the Embeddings have no rate: not pruned
        for layer, mask in masks.items():
            assert np.all(final[f"{layer}/kernel"][mask == 0] == 0.0)
            assert bool(np.any(mask == 0)) == (row["round"] > 0)
    rewind = storage.load_arrays(layout.rewind_weights(result.run_dir, 0))
    assert rewind.keys() == theta0.keys() and all(np.array_equal(rewind[k], theta0[k]) for k in theta0)


def test_the_fingerprint_and_input_shapes_are_recorded(case):
    kind, _, arrays, _, result = case
    identity = storage.read_json(layout.identity_file(result.run_dir))["identity"]
    assert identity["data"] == data.sources.fingerprint(*arrays())
    shapes = storage.read_json(layout.model_file(result.run_dir))["input_shape"]
    assert shapes == ({"padding_mask": [LENGTH], "token_ids": [LENGTH]} if kind == "dict" else [[6], [4]])


def test_a_run_continued_in_its_directory_matches_one_run(dict_case, tmp_path):
    """(On the dict case: continuing reads the same data path as the tuple case.)"""
    _, build, arrays, _, result = dict_case
    out = tmp_path / "continued"
    kl.run(recipe(rounds=1), model=build, data=arrays(), out=out, log=lambda line: None, report=False)
    continued = kl.run(recipe(), model=build, data=arrays(), out=out, log=lambda line: None, report=False)
    assert [row["variant"] for row in continued.rows] == [row["variant"] for row in result.rows]
    for row in result.rows:
        for name in (layout.MASK, layout.FINAL):
            a = saved(result.run_dir, row["round"], row["variant"], name)
            b = saved(out, row["round"], row["variant"], name)
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), (row, name)


def test_the_ticket_exports_and_predicts_from_the_same_inputs(case, tmp_path):
    from keras_lottery import export

    _, _, arrays, pruned, result = case
    model = export.export(result.run_dir, 1, tmp_path / "ticket")
    masks = saved(result.run_dir, 1, "ticket", layout.MASK)
    for layer, mask in masks.items():
        assert np.all(np.asarray(model.get_layer(layer).kernel.numpy())[mask == 0] == 0.0)
    x_test = arrays()[2]
    logits = np.asarray(model.predict(x_test, verbose=0))
    assert logits.shape == (60, CLASSES) and np.isfinite(logits).all()


def test_inputs_of_open_length_export_at_the_runs_shapes(tmp_path):
    """keras-hub's backbones take any sequence length; the SavedModel takes the run's."""
    from keras_lottery import export
    from keras_lottery.backend import tf

    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((None,), dtype="int32", name="padding_mask")
    x = keras.layers.Add()([keras.layers.Embedding(VOCAB, 4)(token_ids), keras.layers.Embedding(2, 4)(padding_mask)])
    model = keras.Model({"token_ids": token_ids, "padding_mask": padding_mask},
                        keras.layers.Dense(CLASSES)(keras.layers.GlobalAveragePooling1D()(x)))
    x_test = dict_data()[2]
    expected = np.asarray(model.predict(x_test, verbose=0))
    export.save(model, tmp_path / "open", {"padding_mask": [LENGTH], "token_ids": [LENGTH]})
    if backend.BACKEND == "torch":  # model.keras only (no SavedModel on torch)
        assert (tmp_path / "open" / export.KERAS_FILE).is_file()
        return
    signature = tf.saved_model.load(str(tmp_path / "open")).signatures["serving_default"]
    (logits,) = signature(**{name: tf.constant(x_test[name]) for name in x_test}).values()
    np.testing.assert_allclose(logits.numpy(), expected, atol=1e-5)
