"""Rewinding: save the weights at iteration k of the dense round, restore them later.

``k = 0`` saves θ0 before any update (the paper); ``k > 0`` is late resetting
(Frankle et al. 2019). A pruned round starts from ``m ⊙ θk``: survivors get their
saved values bit for bit, pruned weights are zero.
"""

from keras_lottery import masking
from keras_lottery.backend import keras


class Rewind(keras.callbacks.Callback):
    """Keras callback that restores ``weights`` at the start of training (if given) and
    captures the weights when the optimizer reaches iteration ``save_at`` (if given)."""

    def __init__(self, save_at=None, weights=None, masks=None):
        super().__init__()
        self.save_at = save_at
        self.weights = weights
        self.masks = masks
        self.saved = None
        if not save_at:
            # θ0 is captured in on_train_begin (or nothing is): no per-batch hook, so that Keras
            # runs none, and on JAX neither waits for each call's logs nor syncs the variables.
            self.on_train_batch_end = super().on_train_batch_end

    def on_train_begin(self, logs=None):
        if self.weights is not None:
            restore(self.model, self.weights, self.masks)
        self._maybe_save()

    def on_train_batch_end(self, batch, logs=None):
        if self.saved is None:
            self._maybe_save()

    def _maybe_save(self):
        if self.save_at is not None and int(self.model.optimizer.iterations.numpy()) == self.save_at:
            masking.apply_masks(self.model)
            self.saved = masking.get_weights(self.model)


def restore(model, weights, masks=None):
    """Set ``weights`` and (optionally) ``masks``: the model then holds exactly ``m ⊙ weights``."""
    masking.set_weights(model, weights)
    if masks is not None:
        masking.set_masks(model, masks)
    else:
        masking.apply_masks(model)
