"""Masked models: wrappers that hold a mask per pruned weight, which we set between rounds."""

from keras_lottery.masking.wrapper import (  # noqa: F401
    apply_masks, base_layer, callbacks, dense_masks, get_masks, get_weights, is_wrapper, masked_weights, named_variables,
    pruned_variables, set_masks, set_weights, strip, wrap, wrappers,
)
