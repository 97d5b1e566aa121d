"""Evaluation: loss and accuracy on the validation and test sets in one compiled pass.

At the paper's cadence (every 100 iterations) a round evaluates 500 times, so
evaluation is a large share of its wall time. ``model.evaluate`` pays Python and
dataset-iterator overhead per call and per batch; :class:`Evaluator` holds every
evaluation batch in memory and runs all of them in one ``tf.function`` call. It
reports what ``model.evaluate`` reports, computed the same way (per-batch mean loss
weighted by batch size, accumulated in float32 in batch order).
"""

from keras_lottery.backend import keras, tf


def stacked_batches(dataset):
    """``(x, y)`` of a finite batched dataset: full batches stacked, plus the last one.

    Returns ``(full_x, full_y, last_x, last_y)``; ``full_*`` has a leading batch axis
    (possibly of length 0) and ``last_*`` is the smaller final batch or ``None``.
    """
    batches = list(dataset)
    if not batches:
        raise ValueError("cannot evaluate on an empty dataset")
    size = int(batches[0][0].shape[0])
    full = [b for b in batches if int(b[0].shape[0]) == size]
    last = batches[len(full)] if len(full) < len(batches) else (None, None)
    if len(full) + (last[0] is not None) != len(batches):
        raise ValueError("an evaluation dataset must have equal batches, except a smaller last one")
    return tf.stack([x for x, _ in full]), tf.stack([y for _, y in full]), last[0], last[1]


class Evaluator:
    """``evaluator()`` returns ``{name: {"loss": float, "accuracy": float}}`` for each dataset."""

    def __init__(self, model, datasets):
        self.model = model
        self.names = list(datasets)
        self.data = [stacked_batches(datasets[name]) for name in self.names]
        self._pass = tf.function(self._all_sets)

    def _batch(self, x, y):
        logits = self.model(x, training=False)
        loss = self.model.loss(y, logits)
        if self.model.losses:
            loss = loss + tf.add_n(self.model.losses)
        size = tf.cast(tf.shape(y)[0], tf.float32)
        correct = tf.reduce_sum(keras.metrics.sparse_categorical_accuracy(y, logits))
        return loss * size, correct, size

    def _all_sets(self):
        results = []
        for full_x, full_y, last_x, last_y in self.data:
            totals = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
            for i in tf.range(tf.shape(full_x)[0]):
                totals = tuple(t + v for t, v in zip(totals, self._batch(full_x[i], full_y[i])))
            if last_x is not None:
                totals = tuple(t + v for t, v in zip(totals, self._batch(last_x, last_y)))
            loss, correct, count = totals
            results.append((tf.math.divide_no_nan(loss, count), tf.math.divide_no_nan(correct, count)))
        return results

    def __call__(self):
        return {
            name: {"loss": float(loss), "accuracy": float(accuracy)}
            for name, (loss, accuracy) in zip(self.names, self._pass())
        }


def evaluator(model, val_data, test_data):
    """The model's :class:`Evaluator` for these datasets, built (and traced) once per model."""
    cache = model.__dict__.setdefault("_keras_lottery_evaluators", {})
    key = (id(val_data), id(test_data))
    if key not in cache:
        # The cache holds the datasets, so their ids stay unique while the entry lives.
        cache[key] = (val_data, test_data, Evaluator(model, {"val": val_data, "test": test_data}))
    return cache[key][2]
