"""Keras 3 with keras-hub (slow, ``pytest -m slow``): a BERT-style text classifier, its
backbone built from configuration (no download) plus a Dense head, fed a dict of token
ids, segment ids and a padding mask through ``keras_lottery.run``. Two rounds: masks
exactly zero in every pruned weight, θ0 rewound, the ticket exported and reloaded with the
same predictions.

Run it with ``KERAS_LOTTERY_KERAS=keras3 KERAS_BACKEND=jax python -m pytest -m slow
tests/flavoured/test_keras_hub_flavoured.py``.
"""

import numpy as np
import pytest

from keras_lottery import backend

if backend.LEGACY:
    pytest.skip("Keras 3 only (keras-hub): this process runs tf_keras", allow_module_level=True)

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402

import keras_lottery as kl  # noqa: E402
from keras_lottery.rundir import layout, storage  # noqa: E402

pytestmark = pytest.mark.slow

VOCAB, LENGTH, CLASSES = 60, 16, 2
RATES = {"dense": 0.3, "output": 0.15}


def bert_classifier(seed):
    backbone = keras_hub.models.BertBackbone(vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=32,
                                             intermediate_dim=64, max_sequence_length=LENGTH, num_segments=2,
                                             dropout=0.0)
    logits = keras.layers.Dense(CLASSES, name="output")(backbone.output["pooled_output"])
    return keras.Model(backbone.inputs, logits)


def token_data(n, seed):
    rng = np.random.default_rng(seed)
    mask = np.arange(LENGTH)[None] < rng.integers(4, LENGTH + 1, n)[:, None]
    ids = np.where(mask, rng.integers(1, VOCAB, (n, LENGTH)), 0).astype(np.int32)
    labels = (ids[:, 0] % CLASSES).astype(np.int64)
    return {"token_ids": ids, "segment_ids": np.zeros((n, LENGTH), np.int32),
            "padding_mask": mask.astype(np.int32)}, labels


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
    recipe = kl.load_recipe("quickstart_digits", overrides={
        "keras": "keras3", "training.iterations": 20, "training.eval_every": 10, "dataset.validation_size": 40,
        "pruning.rates": RATES, "controls": []}, rounds=2)
    (x_train, y_train), (x_test, y_test) = token_data(200, 0), token_data(50, 1)
    result = kl.run(recipe, model=bert_classifier, data=(x_train, y_train, x_test, y_test),
                    out=tmp_path_factory.mktemp("bert") / "run", log=lambda line: None, report=False)
    return result, x_test


def pruned_weight(final, key):
    """The saved weight a mask key names (a layer's kernel, or the weight itself)."""
    return final[key] if key in final else final[f"{key}/kernel"]


def test_a_bert_classifier_is_pruned_with_masks_exactly_zero(bert_run):
    result, _ = bert_run
    assert [(row["round"], row["status"]) for row in result.rows] == [(0, "ok"), (1, "ok")]
    masks = storage.load_arrays(layout.variant_dir(result.run_dir, 0, 1, "ticket") / layout.MASK)
    final = storage.load_arrays(layout.variant_dir(result.run_dir, 0, 1, "ticket") / layout.FINAL)
    assert {"output", "pooled_dense"} <= {key.split("/")[0] for key in masks}
    for key, mask in masks.items():
        weight = pruned_weight(final, key)
        assert 0 < mask.mean() < 1 and np.all(weight[mask == 0] == 0.0), key
    theta0 = storage.load_arrays(layout.init_weights(result.run_dir, 0))
    rewind = storage.load_arrays(layout.rewind_weights(result.run_dir, 0))
    assert all(np.array_equal(rewind[k], theta0[k]) for k in theta0)


def test_the_bert_ticket_exports_and_reloads(bert_run, tmp_path):
    from keras_lottery import export

    result, x_test = bert_run
    model = export.export(result.run_dir, 1, tmp_path / "ticket")
    expected = np.asarray(model.predict(x_test, verbose=0))
    loaded = keras.saving.load_model(str(tmp_path / "ticket" / export.KERAS_FILE))
    np.testing.assert_allclose(np.asarray(loaded.predict(x_test, verbose=0)), expected, atol=1e-5)
