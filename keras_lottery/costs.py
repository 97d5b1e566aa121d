"""What a ticket costs: multiply-accumulates of one forward pass, and its size on disk.

**Multiply-accumulates (MACs).** A kernel weight of a ``Dense`` layer is used once per
example; a kernel weight of a convolution once per output position (``Conv2D``: output
height × width; a transposed convolution: once per input position). So one forward pass of
the masked network costs ``Σ_layers kept weights × positions`` MACs (:func:`macs`), and
``flops_remaining`` is that as a percentage of the dense network's. Only the prunable
kernels are counted: biases, batch normalization, pooling and activations are left out
(they are not pruned, and cost little next to the kernels). For a fully-connected network
``flops_remaining`` equals ``weights_remaining``; for a convolutional one it differs,
because the conv layers' weights are used many times and the fc layers' only once.

**Sizes** (:func:`sizes`) of the exported ticket, every weight array of the model (biases
and batch normalization included) as float32:

- ``dense``: every value stored, pruned ones as zeros (4 bytes each);
- ``gzip``: the dense arrays as an ``.npz``, gzip-compressed (level 6);
- ``bitmask``: each masked kernel as a bitmask (1 bit per weight) plus its kept values
  (4 bytes each); other arrays dense;
- ``indices``: each masked kernel as the flat indices of its kept weights (uint16 when
  the kernel has at most 65,536 weights, else uint32) plus their values; other arrays
  dense. A bitmask is smaller once more than 1/32 (uint32 indices) or 1/16 (uint16) of
  a kernel is kept.

Pure numpy, except :func:`positions`, which reads a Keras model's layer shapes.
"""

import gzip
import io
import math

import numpy as np

SIZE_KINDS = ("dense", "gzip", "bitmask", "indices")


def positions(model):
    """``{layer name: positions}``: how often each kernel weight of a prunable layer is used
    in one forward pass of one example (1 for ``Dense`` on flat inputs)."""
    from keras_lottery.models.layers import kernel_layers

    found = {}
    for layer in kernel_layers(model):
        transposed = "Transpose" in type(layer).__name__
        shape = _shape(layer, "input" if transposed else "output")
        if isinstance(shape, list):  # a layer called on several inputs: the first
            shape = shape[0]
        shape = tuple(shape)
        spatial = shape[2:] if getattr(layer, "data_format", "channels_last") == "channels_first" else shape[1:-1]
        found[layer.name] = int(math.prod(int(d) for d in spatial if d is not None))
    return found


def _shape(layer, which):
    """A layer's ``input``/``output`` shape in its model (tf_keras: ``output_shape``; Keras 3:
    the shape of ``layer.output``)."""
    try:
        return getattr(layer, f"{which}_shape")
    except AttributeError:
        tensor = getattr(layer, which)
        return [t.shape for t in tensor] if isinstance(tensor, (list, tuple)) else tensor.shape


def macs(masks, kernel_sizes, layer_positions):
    """``(kept, dense)`` multiply-accumulates of one forward pass; layers without a mask are dense."""
    kept = dense = 0
    for name, size in kernel_sizes.items():
        uses = layer_positions.get(name, 1)
        dense += size * uses
        kept += (int(np.count_nonzero(masks[name])) if name in masks else size) * uses
    return kept, dense


def flops_remaining(masks, kernel_sizes, layer_positions):
    """Percent of the dense network's multiply-accumulates that the masked network does."""
    kept, dense = macs(masks, kernel_sizes, layer_positions)
    return 100.0 * kept / dense if dense else 100.0


def _npz_bytes(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def sizes(weights, masks):
    """Bytes of the ticket ``weights`` (``{"layer/kernel": array, ...}``, masked entries zero)
    stored as each of :data:`SIZE_KINDS`; ``masks`` is ``{layer: mask}``."""
    arrays = {name: np.asarray(value, np.float32) for name, value in weights.items()}
    masked = {f"{layer}/kernel": np.asarray(mask) != 0 for layer, mask in masks.items() if f"{layer}/kernel" in arrays}
    dense = sum(a.nbytes for a in arrays.values())
    bitmask = indices = 0
    for name, array in arrays.items():
        if name not in masked:
            bitmask += array.nbytes
            indices += array.nbytes
            continue
        kept = int(np.count_nonzero(masked[name]))
        index_bytes = 2 if array.size <= 2**16 else 4
        bitmask += math.ceil(array.size / 8) + 4 * kept
        indices += (index_bytes + 4) * kept
    compressed = len(gzip.compress(_npz_bytes(arrays), compresslevel=6, mtime=0))
    return {"dense": dense, "gzip": compressed, "bitmask": bitmask, "indices": indices}


def human(count):
    """Bytes as a short string: 1.2 MB, 340.5 kB, 812 B (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"
