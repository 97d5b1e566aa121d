"""Pruning: which weights survive a round.

- :mod:`.criteria`: the registry of scoring functions that rank weights;
- :mod:`.blocks`: block structure (``pruning.structure``): blocks of a kernel, scored,
  kept and drawn whole;
- :mod:`.masks`: masks from scores (layer-wise or global, iterative counts, at
  initialization), random and inverted masks for the controls, sparsity bookkeeping.

Pure numpy.
"""

from keras_lottery.pruning.masks import (  # noqa: F401
    at_init_masks, criterion_masks, criterion_scores, dense_like, density_count, inverted_masks, keep_count,
    layer_rates, layer_sparsity, magnitude_masks, masks_at_densities, masks_from_scores, random_masks,
    round_densities, schedule, weights_remaining,
)
