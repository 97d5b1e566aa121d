"""Masked models: wrappers that hold per-layer masks we set between rounds."""

from keras_lottery.masking.wrapper import (  # noqa: F401
    apply_masks, base_layer, callbacks, dense_masks, get_masks, get_weights, is_wrapper, named_variables,
    pruned_variables, set_masks, set_weights, strip, wrap, wrappers,
)
