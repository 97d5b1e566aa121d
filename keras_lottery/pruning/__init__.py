"""Pruning: which weights survive a round (masks from scores, random controls)."""

from keras_lottery.pruning.masks import (  # noqa: F401
    keep_count, layer_rates, layer_sparsity, magnitude_masks, random_masks, weights_remaining,
)
