"""What a ticket costs: multiply-accumulates of one forward pass, and its size on disk.

**Multiply-accumulates (MACs).** A kernel weight of a ``Dense`` layer is used once per
example (once per position of a sequence it is applied to); a kernel weight of a convolution
once per output position (``Conv2D``: output height × width; depthwise and separable
convolutions alike, both their kernels; a transposed convolution: once per input position);
an ``EinsumDense`` kernel weight once per element of the output's dimensions that are not the
kernel's (a sequence's length: MultiHeadAttention's projections); an RNN's ``kernel`` and
``recurrent_kernel`` once per time step; an ``Embedding`` row is looked up, never multiplied
(0 MACs). So one forward pass of the masked network costs ``Σ_units kept weights × uses``
MACs (:func:`macs`), and ``flops_remaining`` is that as a percentage of the dense network's.
Only the prunable weights are counted (the attention scores, which have no weights, neither): biases, batch normalization, pooling and activations are left out
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
    """``{unit: uses}``: how often each weight of a pruned unit is used in one forward pass of
    one example (see the module's docstring for each layer type)."""
    from keras_lottery.models import prunable

    return {weight.unit: _uses(weight.layer, weight.ancestors) for weight in prunable.weights(model)}


def _known(shape, ancestors):
    """``shape`` with a dimension it leaves unknown (a layer built inside another layer's call,
    tf_keras's MultiHeadAttention projections: the sequence length) read from the output
    of the nearest layer around it that knows it."""
    shape = list(shape)
    for outer in reversed(ancestors):
        try:
            around = _shape(outer, "output")
        except (AttributeError, ValueError, RuntimeError):
            continue
        around = tuple(around[0] if isinstance(around, list) else around)
        shape = [around[i] if d is None and 0 < i < len(around) else d for i, d in enumerate(shape)]
    return tuple(shape)


def _uses(layer, ancestors=()):
    """Uses per example of each prunable weight of ``layer`` (inside the layers ``ancestors``)."""
    from keras_lottery.backend import keras

    if isinstance(layer, keras.layers.Embedding):
        return 0  # a lookup: no multiply-accumulate
    if hasattr(layer, "equation") and hasattr(layer, "partial_output_shape"):  # EinsumDense
        # tf_keras keeps the output shape with the batch; Keras 3 without it
        shape = getattr(layer, "full_output_shape", None) or (None, *layer.partial_output_shape)
        return _einsum_uses(layer.equation, _known(shape, ancestors))
    rnn = tuple(getattr(keras.layers, name) for name in ("LSTM", "GRU", "SimpleRNN"))
    transposed = "Transpose" in type(layer).__name__
    try:
        shape = _shape(layer, "input" if transposed or isinstance(layer, rnn) else "output")
    except (AttributeError, ValueError, RuntimeError):
        return 1  # a layer called only inside another layer's call: its shapes are not recorded
    if isinstance(shape, list):  # a layer called on several inputs: the first
        shape = shape[0]
    shape = tuple(shape)
    if isinstance(layer, rnn):  # each kernel once per time step
        steps = shape[0 if getattr(layer, "time_major", False) else 1]
        return int(steps) if steps is not None else 1
    spatial = shape[2:] if getattr(layer, "data_format", "channels_last") == "channels_first" else shape[1:-1]
    return int(math.prod(int(d) for d in spatial if d is not None))


def _shape(layer, which):
    """A layer's ``input``/``output`` shape in its model (tf_keras: ``output_shape``; Keras 3:
    the shape of ``layer.output``)."""
    try:
        return getattr(layer, f"{which}_shape")
    except AttributeError:
        tensor = getattr(layer, which)
        return [t.shape for t in tensor] if isinstance(tensor, (list, tuple)) else tensor.shape


def _einsum_uses(equation, output_shape):
    """Uses of each kernel weight of an einsum ``input,kernel->output``: the product of the
    output's dimensions that are not the kernel's (batch left out)."""
    kernel, output = equation.split("->")[0].split(",")[1], equation.split("->")[1]
    left, _, right = output.partition("...")
    dims = {}
    for index, letter in enumerate(left):
        dims[index] = letter
    for index, letter in enumerate(right):
        dims[len(output_shape) - len(right) + index] = letter
    uses = 1
    for index, size in enumerate(output_shape[1:], start=1):
        if dims.get(index) not in set(kernel) and size is not None:  # an ellipsis or a non-kernel letter
            uses *= int(size)
    return uses


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
    stored as each of :data:`SIZE_KINDS`; ``masks`` is ``{unit: mask}``."""
    from keras_lottery.pruning import units

    arrays = {name: np.asarray(value, np.float32) for name, value in weights.items()}
    masked = {}
    for unit, mask in masks.items():
        try:
            masked[units.weight_key(unit, arrays)] = np.asarray(mask) != 0
        except KeyError:
            continue
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
