"""Pruned units: the keys masks are saved under, and the weight each one masks.

A mask is keyed by its *unit*. The ``kernel`` of a layer of the model itself (Dense, the
convolutions: every model of keras-lottery 0.3) is the unit named after the layer, so run
directories made before layers could have several pruned weights stay valid. Any other
pruned weight is its own unit, keyed as its weight is: ``lstm/recurrent_kernel``,
``mobile_conv/depthwise_kernel``, or, for a weight of a layer inside a layer, the path of
layer names down to it (``mha/query/kernel``, ``stem/stem_conv/kernel``).

A layer's name may itself hold ``/`` (DenseNet's ``conv1/conv``), so the weight a unit
masks is found in the dictionary of weights it is looked up in (:func:`weight_key`).

Pure Python: the rounds and variants read it without TensorFlow.
"""


def key(path, weight):
    """The ``layer/weight`` key of the weight named ``weight`` of the layer at ``path`` (layer
    names from the model down: ``("mha", "query")``)."""
    return "/".join([*path, weight])


def of_layer(path, weight):
    """The unit masking the weight named ``weight`` of the layer at ``path``: the layer's name
    for the kernel of a layer of the model itself, else the weight's key."""
    return path[0] if len(path) == 1 and weight == "kernel" else key(path, weight)


def weight_key(unit, weights):
    """The key, in ``weights`` (a ``layer/weight`` dictionary or set of keys), of the weight
    masked by ``unit``."""
    kernel = f"{unit}/kernel"
    if kernel in weights:
        return kernel
    if unit in weights:
        return unit
    raise KeyError(f"no weight masked by {unit!r} among {len(weights)} weights")


def pruned(weights, units):
    """``{unit: array}``: the weights the ``units`` mask, from a ``layer/weight`` dictionary."""
    return {unit: weights[weight_key(unit, weights)] for unit in units}
