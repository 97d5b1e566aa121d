"""A small transformer text classifier: token ids in, class logits out.

Token and position embeddings, one encoder block (multi-head self-attention, then a
feed-forward network of two Dense layers, each with a residual connection and layer
normalization), the mean over positions, and a Dense output layer. ``model.hidden`` gives
``(width, feed-forward width)`` (default ``(64, 128)``), ``model.vocabulary_size`` the ids
it embeds (a text dataset's ``dataset.vocabulary_size``). Id 0 is padding; the model
learns to read past it (no attention mask, so every layer prunes and exports alike).

Each head's query, key and value projections (``head0_query``, ...) and the attention's
output projection (``attention_output``) are Dense layers, and so are the feed-forward
layers (``fc1``, ``fc2``): all of kind ``dense``, pruned on every Keras keras-lottery runs;
the last layer is the output (kind ``output``). The scaled dot product of each head is
``keras.layers.Attention``, which holds no weights. The embeddings stay dense unless
keras-lottery prunes their layer type (see :mod:`keras_lottery.models.layers`).
"""

from keras_lottery.backend import LEGACY, keras
from keras_lottery.models.errors import ModelError

HEADS = 2
DEFAULT_HIDDEN = (64, 128)

_register = (keras.utils.register_keras_serializable if LEGACY else keras.saving.register_keras_serializable)


@_register(package="keras_lottery")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned vector per position to a sequence ``(batch, length, width)``."""

    def __init__(self, initializer="glorot_normal", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.embeddings = self.add_weight(name="embeddings", shape=tuple(input_shape[1:]),
                                          initializer=self.initializer, trainable=True)
        super().build(input_shape)

    def call(self, inputs):
        return inputs + self.embeddings

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "initializer": keras.initializers.serialize(self.initializer)}


def _scaled(query, size, head):
    """``query / sqrt(size)``: the scaled dot product's scale, on the query."""
    return keras.layers.Rescaling(1.0 / float(size) ** 0.5, name=f"head{head}_scale")(query)


def transformer(input_shape, num_classes, config, kernel_init):
    """The transformer for ids shaped ``(length,)`` (see the module's docstring)."""
    if len(input_shape) != 1:
        raise ModelError(
            f"model transformer takes token ids shaped (N, length), but the data's inputs have shape "
            f"{tuple(input_shape)} per example; use a text dataset (e.g. tfds:imdb_reviews) or another model"
        )
    width, feed_forward = (tuple(config.hidden) + DEFAULT_HIDDEN[len(config.hidden):])[:2] if config.hidden \
        else DEFAULT_HIDDEN
    if width % HEADS:
        raise ModelError(f"model transformer: the width model.hidden[0] ({width}) must be a multiple of its "
                         f"{HEADS} attention heads; use an even width")
    ids = keras.Input(shape=tuple(input_shape), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(config.vocabulary_size, width, embeddings_initializer=kernel_init(), name="tokens")(ids)
    x = PositionEmbedding(initializer=kernel_init(), name="positions")(x)
    heads = []
    for head in range(HEADS):
        query, key, value = (keras.layers.Dense(width // HEADS, kernel_initializer=kernel_init(),
                                                name=f"head{head}_{role}")(x) for role in ("query", "key", "value"))
        heads.append(keras.layers.Attention(use_scale=False, score_mode="dot", name=f"head{head}")(
            [_scaled(query, width // HEADS, head), value, key]))
    attended = keras.layers.Dense(width, kernel_initializer=kernel_init(), name="attention_output")(
        keras.layers.Concatenate(name="heads")(heads))
    x = keras.layers.LayerNormalization(name="norm1")(keras.layers.Add(name="residual1")([x, attended]))
    h = keras.layers.Dense(feed_forward, activation="relu", kernel_initializer=kernel_init(), name="fc1")(x)
    h = keras.layers.Dense(width, kernel_initializer=kernel_init(), name="fc2")(h)
    x = keras.layers.LayerNormalization(name="norm2")(keras.layers.Add(name="residual2")([x, h]))
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=kernel_init(), name="output")(x)
    return keras.Model(ids, outputs, name="transformer")
