"""Evaluation: loss and accuracy on the validation and test sets in one compiled pass.

At the paper's cadence (every 100 iterations) a round evaluates 500 times, so
evaluation is a large share of its wall time. ``model.evaluate`` pays Python and
dataset-iterator overhead per call and per batch; :class:`Evaluator` holds every
evaluation batch in memory and runs all of them in one ``tf.function`` call. It
reports what ``model.evaluate`` reports, computed the same way (per-batch mean loss
weighted by batch size, accumulated in float32 in batch order).

The same pass also returns the predicted class (argmax of the logits) of every example
of the sets named in ``predict`` (the test set): one integer per example, for the
early-stop predictions a variant stores (what pruning forgets). The argmax reads the
logits the loss reads, so the losses and accuracies are the same with or without it.

On Keras 3's JAX backend the pass is one ``jax.jit`` function of the model's variable
values (:class:`JaxEvaluator`, through ``model.stateless_call``), computing the same. On
the torch backend, which TensorFlow cannot trace, it is an eager loop over the batches held
as torch tensors (:class:`TorchEvaluator`), computing the same.
"""

import numpy as np

from keras_lottery.backend import BACKEND, LEGACY, keras, tf


def stacked_batches(dataset):
    """``(x, y)`` of a finite batched dataset: full batches stacked, plus the last one.

    Returns ``(full_x, full_y, last_x, last_y)``; ``full_*`` has a leading batch axis
    (possibly of length 0) and ``last_*`` is the smaller final batch or ``None``. Inputs
    of several arrays (a tuple or dict) keep their structure, each array stacked.
    """
    batches = list(dataset)
    if not batches:
        raise ValueError("cannot evaluate on an empty dataset")

    def size_of(batch):
        return int(tf.nest.flatten(batch[0])[0].shape[0])

    size = size_of(batches[0])
    full = [b for b in batches if size_of(b) == size]
    last = batches[len(full)] if len(full) < len(batches) else (None, None)
    if len(full) + (last[0] is not None) != len(batches):
        raise ValueError("an evaluation dataset must have equal batches, except a smaller last one")
    full_x = tf.nest.map_structure(lambda *ts: tf.stack(ts), *[x for x, _ in full])
    return full_x, tf.stack([y for _, y in full]), last[0], last[1]


class Evaluator:
    """``evaluator()`` returns ``{name: {"loss": float, "accuracy": float}}`` for each dataset,
    plus ``"predictions"`` (an int32 array, one predicted class per example, in dataset order)
    for the datasets named in ``predict``."""

    def __init__(self, model, datasets, predict=()):
        self.model = model
        self.names = list(datasets)
        self.predict = tuple(predict)
        self.data = [stacked_batches(datasets[name]) for name in self.names]
        self._pass = tf.function(self._all_sets)

    def _batch(self, x, y):
        logits = self.model(x, training=False)
        loss = self.model.loss(y, logits)
        if not LEGACY:  # under a tf.distribute strategy Keras 3 divides a mean loss by the replicas (for
            # their sum in fit); this pass computes the whole batch on one device, as evaluate reports it
            loss = loss * tf.distribute.get_strategy().num_replicas_in_sync
        if self.model.losses:
            loss = loss + tf.add_n(self.model.losses)
        size = tf.cast(tf.shape(y)[0], tf.float32)
        correct = tf.reduce_sum(keras.metrics.sparse_categorical_accuracy(y, logits))
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return (loss * size, correct, size), predicted

    def _all_sets(self):
        results = []
        for name, (full_x, full_y, last_x, last_y) in zip(self.names, self.data):
            totals = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
            predicted = tf.TensorArray(tf.int32, size=0, dynamic_size=True, infer_shape=False)
            for i in tf.range(tf.shape(full_y)[0]):
                values, batch_predicted = self._batch(tf.nest.map_structure(lambda t: t[i], full_x), full_y[i])
                totals = tuple(t + v for t, v in zip(totals, values))
                if name in self.predict:
                    predicted = predicted.write(predicted.size(), batch_predicted)
            if last_x is not None:
                values, batch_predicted = self._batch(last_x, last_y)
                totals = tuple(t + v for t, v in zip(totals, values))
                if name in self.predict:
                    predicted = predicted.write(predicted.size(), batch_predicted)
            loss, correct, count = totals
            outputs = (tf.math.divide_no_nan(loss, count), tf.math.divide_no_nan(correct, count))
            if name in self.predict:
                outputs += (predicted.concat(),)
            results.append(outputs)
        return results

    def __call__(self):
        evaluated = {}
        for name, outputs in zip(self.names, self._pass()):
            evaluated[name] = {"loss": float(outputs[0]), "accuracy": float(outputs[1])}
            if name in self.predict:
                evaluated[name]["predictions"] = outputs[2].numpy()
        return evaluated


class JaxEvaluator(Evaluator):
    """:class:`Evaluator` on Keras 3's JAX backend: one jitted pass over every set, reading
    the model's current variable values."""

    def __init__(self, model, datasets, predict=()):
        import jax

        self.model = model
        self.names = list(datasets)
        self.predict = tuple(predict)
        import jax.numpy as jnp

        # On the device once (uncommitted: jit places them beside the variables).
        self.data = [tuple(None if a is None else jax.tree_util.tree_map(lambda t: jnp.asarray(np.asarray(t)), a)
                           for a in stacked_batches(datasets[name]))
                     for name in self.names]
        self._pass = jax.jit(self._all_sets_of)

    def _batch_of(self, trainable, non_trainable, x, y):
        import jax.numpy as jnp

        logits, _, losses = self.model.stateless_call(trainable, non_trainable, x, training=False, return_losses=True)
        loss = self.model.loss(y, logits)
        for extra in losses:
            loss = loss + extra
        size = jnp.asarray(y.shape[0], jnp.float32)
        predicted = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        correct = jnp.sum((predicted == y.astype(jnp.int32)).astype(jnp.float32))
        return (loss * size, correct, size), predicted

    def _all_sets_of(self, trainable, non_trainable, data):
        import jax
        import jax.numpy as jnp

        results = []
        for name, (full_x, full_y, last_x, last_y) in zip(self.names, data):
            def step(totals, batch):
                values, predicted = self._batch_of(trainable, non_trainable, *batch)
                return tuple(t + v for t, v in zip(totals, values)), predicted

            zero = (jnp.float32(0.0), jnp.float32(0.0), jnp.float32(0.0))
            totals, predicted = jax.lax.scan(step, zero, (full_x, full_y))
            predicted = [predicted.reshape(-1)]
            if last_x is not None:
                values, last_predicted = self._batch_of(trainable, non_trainable, last_x, last_y)
                totals = tuple(t + v for t, v in zip(totals, values))
                predicted.append(last_predicted)
            loss, correct, count = totals
            outputs = (loss / jnp.maximum(count, 1.0), correct / jnp.maximum(count, 1.0))
            if name in self.predict:
                outputs += (jnp.concatenate(predicted),)
            results.append(outputs)
        return results

    def __call__(self):
        trainable = [v.value for v in self.model.trainable_variables]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        evaluated = {}
        for name, outputs in zip(self.names, self._pass(trainable, non_trainable, self.data)):
            evaluated[name] = {"loss": float(outputs[0]), "accuracy": float(outputs[1])}
            if name in self.predict:
                evaluated[name]["predictions"] = np.asarray(outputs[2])
        return evaluated


class TorchEvaluator(Evaluator):
    """:class:`Evaluator` on Keras 3's torch backend: the batches held as torch tensors, each
    evaluated eagerly (no gradients), accumulated in float32 in batch order."""

    def __init__(self, model, datasets, predict=()):
        import torch

        self.model = model
        self.names = list(datasets)
        self.predict = tuple(predict)
        device = keras.ops.convert_to_tensor(0.0).device  # where Keras puts the variables

        def held(tensor):
            return torch.as_tensor(np.array(tensor), device=device)  # a copy torch may own

        self.data = []
        for name in self.names:
            full_x, full_y, last_x, last_y = stacked_batches(datasets[name])
            batches = [(tf.nest.map_structure(lambda t: held(t[i]), full_x), held(full_y[i]))
                       for i in range(int(full_y.shape[0]))]
            if last_x is not None:
                batches.append((tf.nest.map_structure(held, last_x), held(last_y)))
            self.data.append(batches)

    def _batch(self, x, y):
        import torch

        logits = self.model(x, training=False)
        loss = self.model.loss(y, logits)
        for extra in self.model.losses:
            loss = loss + extra
        size = torch.tensor(float(y.shape[0]), dtype=torch.float32, device=logits.device)
        predicted = torch.argmax(logits, dim=-1).to(torch.int32)
        correct = torch.sum((predicted == y.to(torch.int32)).to(torch.float32))
        return (loss.to(torch.float32) * size, correct, size), predicted

    def __call__(self):
        import torch

        evaluated = {}
        with torch.no_grad():
            for name, batches in zip(self.names, self.data):
                totals = [torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0)]
                predicted = []
                for x, y in batches:
                    values, batch_predicted = self._batch(x, y)
                    totals = [t + v.cpu() for t, v in zip(totals, values)]
                    predicted.append(batch_predicted.cpu())
                loss, correct, count = (float(t) for t in totals)
                evaluated[name] = {"loss": loss / count if count else 0.0,
                                   "accuracy": correct / count if count else 0.0}
                if name in self.predict:
                    evaluated[name]["predictions"] = torch.cat(predicted).numpy()
        return evaluated


def make(model, datasets, predict=()):
    """The evaluator of ``datasets`` for the backend that runs (:class:`JaxEvaluator` on JAX,
    :class:`TorchEvaluator` on torch)."""
    kind = {"jax": JaxEvaluator, "torch": TorchEvaluator}.get(BACKEND, Evaluator)
    return kind(model, datasets, predict)


def evaluator(model, val_data, test_data):
    """The model's :class:`Evaluator` for these datasets, built (and traced) once per model."""
    cache = model.__dict__.setdefault("_keras_lottery_evaluators", {})
    key = (id(val_data), id(test_data))
    if key not in cache:
        # The cache holds the datasets, so their ids stay unique while the entry lives.
        cache[key] = (val_data, test_data, make(model, {"val": val_data, "test": test_data}, predict=("test",)))
    return cache[key][2]
