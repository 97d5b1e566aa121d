"""Text datasets and the imdb_transformer recipe: the word-index tokenizer, the refusal
offline within seconds, the built-in transformer, and recipes' hashes unchanged by the
new fields at their defaults."""

import time

import numpy as np
import pytest

from keras_lottery import data, models
from keras_lottery.config import catalog, identity, recipe
from keras_lottery.config.recipe import DatasetConfig, ModelConfig, RecipeError
from keras_lottery.data import sources, text
from keras_lottery.models.errors import ModelError


def test_the_tokenizer_keeps_the_most_frequent_training_words():
    texts = np.array([b"The film was great.<br /><br />Great!", b"the plot was thin", "Was it? the END"], object)
    index = text.vocabulary(texts, 5)  # 0 padding, 1 unknown, 3 words
    assert index == {"the": 2, "was": 3, "great": 4}  # counts 3, 3, 2; ties alphabetical
    ids = text.encode(texts, index, 4)
    assert ids.dtype == np.int32
    assert ids.tolist() == [[2, 1, 3, 4], [2, 1, 3, 1], [3, 1, 2, 1]]
    assert text.encode([b"great"], index, 3).tolist() == [[4, 0, 0]]  # padded with 0 at the end
    raw, lengths = text.raw_arrays(texts)
    assert lengths.tolist() == [37, 17, 15] and raw.dtype == np.uint8 and len(raw) == 37 + 17 + 15


def test_a_text_dataset_becomes_word_ids_fitted_on_training_only(monkeypatch):
    train = np.array([f"good {'fine ' * (i % 3)}movie {i}".encode() for i in range(30)], object)
    test = np.array([b"unseen words only"] * 6, object)
    labels = np.arange(30) % 2

    def fake(name, data_dir=None, image_key="image", label_key="label"):
        return (train, labels, test, labels[:6]), 2

    monkeypatch.setattr(sources, "load_tfds", fake)
    config = DatasetConfig(name="tfds:imdb_reviews", image_key="text", validation_size=10, vocabulary_size=6,
                           sequence_length=5)
    splits = data.load(config)
    assert splits.x_train.shape == (20, 5) and splits.x_train.dtype == np.int32 and splits.num_classes == 2
    assert splits.x_test.tolist() == [[1, 1, 1, 0, 0]] * 6  # test words never enter the vocabulary
    assert splits.x_train.max() <= 5 and splits.input_shape == (5,)
    again = data.load(config)
    assert np.array_equal(again.x_train, splits.x_train) and again.fingerprint == splits.fingerprint
    changed = train.copy()
    changed[3] = b"good movie 3!"
    monkeypatch.setattr(sources, "load_tfds", lambda *a, **k: ((changed, labels, test, labels[:6]), 2))
    assert data.load(config).fingerprint != splits.fingerprint  # the raw text is fingerprinted


def test_imdb_reviews_is_refused_offline_within_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_internet_reachable", lambda *a, **k: False)
    r = recipe.load(catalog.find("imdb_transformer"), (f"dataset.data_dir={tmp_path}",))
    start = time.perf_counter()
    with pytest.raises(sources.DataError, match="dataset 'tfds:imdb_reviews' is not in the tensorflow-datasets "
                                                "folder and cannot be downloaded") as error:
        data.load(r.dataset)
    assert "\n" not in str(error.value)
    assert time.perf_counter() - start < 30


def test_the_transformer_is_built_for_token_ids():
    config = ModelConfig(name="transformer", vocabulary_size=50, hidden=(8, 16))
    model = models.build(config, (12,), 2, seed=0)
    assert model.inputs[0].shape[1:] == (12,) and model.outputs[0].shape[1:] == (2,)
    kinds = models.layer_kinds(model)
    assert kinds["output"] == "output" and kinds["fc1"] == "dense" and kinds["head1_query"] == "dense"
    again = models.build(config, (12,), 2, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))
    with pytest.raises(ModelError, match=r"takes token ids shaped \(N, length\)"):
        models.build(config, (4, 4), 2, seed=0)


@pytest.mark.parametrize("changes, message", [
    ({"model": {"name": "transformer"}}, r"model.vocabulary_size': must be an integer >= 2"),
    ({"model": {"name": "mlp", "vocabulary_size": 10}}, r"model.vocabulary_size': must be unset unless name is"),
    ({"model": {"name": "transformer", "vocabulary_size": 100},
      "dataset": {"name": "tfds:imdb_reviews", "image_key": "text", "vocabulary_size": 200}},
     r"model.vocabulary_size': must be at least dataset.vocabulary_size \(200\)"),
    ({"dataset": {"name": "mnist", "sequence_length": 64}}, r"dataset.sequence_length': applies to tfds:NAME text"),
])
def test_bad_text_fields_are_refused(changes, message):
    with pytest.raises(RecipeError, match=message):
        recipe.parse(changes)


@pytest.mark.parametrize("name", sorted(set(catalog.shipped_paths()) - {"imdb_transformer"}))
def test_new_fields_at_their_defaults_keep_every_recipes_hash(name):
    """The identity (and so the hash) holds only fields that differ from their defaults."""
    r = recipe.load(catalog.find(name), ())
    assert r.model.vocabulary_size is None
    recorded = identity.recipe_identity(r)
    assert "vocabulary_size" not in str(recorded) and "sequence_length" not in str(recorded)
