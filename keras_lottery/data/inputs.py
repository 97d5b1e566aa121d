"""Inputs that are one array, a tuple of arrays or a dict of arrays: one place that knows them.

A model with one input takes one array ``(N, ...)``. A model with several takes a tuple of
arrays (in the order of ``model.inputs``) or a dict of arrays named as its inputs, e.g.
``{"token_ids": ..., "padding_mask": ...}`` for a text model. Every array of one structure
holds the same ``N`` examples. These functions slice, concatenate, shape-describe and
fingerprint such a structure the same way whatever its form, so the rest of the package
(:mod:`.sources`, :mod:`.streams`, evaluation, the model checks, ``model.json``) treats
"the inputs" as one thing.

A list given as inputs is read as a tuple (``tf.data`` would stack a list into one
tensor). A dict keeps its keys in sorted order, so the same dict given in another key
order is the same data.
"""

import numpy as np

from keras_lottery.errors import UsageError


class InputsError(UsageError):
    """Inputs that are not an array, a tuple of arrays or a dict of arrays."""


def structured(x):
    """True for a tuple or dict of arrays (several inputs), False for one array."""
    return isinstance(x, (tuple, list, dict))


def normalized(x):
    """``x`` with a list read as a tuple and a dict's keys sorted (arrays untouched)."""
    if isinstance(x, dict):
        bad = next((k for k in x if not isinstance(k, str)), None)
        if bad is not None:
            raise InputsError(f"the inputs are a dict with key {bad!r}; name each input with a string")
        if not x:
            raise InputsError("the inputs are an empty dict; give at least one array")
        return {k: x[k] for k in sorted(x)}
    if isinstance(x, (tuple, list)):
        if not x:
            raise InputsError("the inputs are an empty tuple; give at least one array")
        nested = next((i for i, a in enumerate(x) if structured(a)), None)
        if nested is not None:
            raise InputsError(f"the inputs' item {nested} is itself a {type(x[nested]).__name__}; "
                              "give a flat tuple or dict of arrays")
        return tuple(x)
    return x


def items(x):
    """``[(label, array)]``: ``("", x)`` for one array, ``("[i]", ...)`` for a tuple,
    ``("['name']", ...)`` for a dict (labels complete a name in messages: ``x_train['token_ids']``)."""
    x = normalized(x)
    if isinstance(x, dict):
        return [(f"[{k!r}]", a) for k, a in x.items()]
    if isinstance(x, tuple):
        return [(f"[{i}]", a) for i, a in enumerate(x)]
    return [("", x)]


def name(label):
    """An :func:`items` label as a bare name: ``"['token_ids']"`` -> ``token_ids``, ``"[1]"`` -> ``1``."""
    return label[1:-1].strip("'")


def arrays(x):
    """The arrays of ``x``, in order."""
    return [a for _, a in items(x)]


def apply(function, x):
    """``x`` with ``function`` applied to each array, in the same structure."""
    x = normalized(x)
    if isinstance(x, dict):
        return {k: function(a) for k, a in x.items()}
    if isinstance(x, tuple):
        return tuple(function(a) for a in x)
    return function(x)


def combine(function, xs):
    """One structure from several of the same form: ``function(list of arrays)`` per position."""
    xs = [normalized(x) for x in xs]
    first = xs[0]
    if isinstance(first, dict):
        return {k: function([x[k] for x in xs]) for k in first}
    if isinstance(first, tuple):
        return tuple(function([x[i] for x in xs]) for i in range(len(first)))
    return function(xs)


def length(x):
    """The number of examples (the first axis, the same in every array)."""
    return len(arrays(x)[0])


def take(x, index):
    """The examples ``index`` (an integer array or a slice) of every array."""
    return apply(lambda a: a[index], x)


def concatenate(xs):
    """Batches of one structure concatenated along the first axis."""
    return combine(np.concatenate, xs)


def stack(xs):
    """Single examples of one structure stacked into a batch."""
    return combine(np.stack, xs)


def form(x):
    """What ``x`` is, for messages and for telling two structures apart: ``"array"``,
    ``"tuple of 2"`` or ``"dict of 'padding_mask', 'token_ids'"``."""
    x = normalized(x)
    if isinstance(x, dict):
        return "dict of " + ", ".join(repr(k) for k in x)
    if isinstance(x, tuple):
        return f"tuple of {len(x)}"
    return "array"


def example_shape(x):
    """The shape of one example: a tuple of ints for one array; a tuple of them for a
    tuple; a dict of them for a dict."""
    return apply(lambda a: tuple(int(d) for d in a.shape[1:]), x)


def shape_of(shape):
    """``shape`` (as :func:`example_shape` gives, or as read back from JSON: lists for
    tuples) in :func:`example_shape`'s form, with ints."""
    if isinstance(shape, dict):
        return {str(k): tuple(int(d) for d in v) for k, v in sorted(shape.items())}
    shape = list(shape)
    if shape and all(isinstance(d, (list, tuple)) for d in shape):
        return tuple(tuple(int(d) for d in s) for s in shape)
    return tuple(int(d) for d in shape)


def several(shape):
    """True when ``shape`` (:func:`shape_of`'s form) describes several inputs."""
    return isinstance(shape, dict) or (bool(shape) and isinstance(shape[0], tuple))


def shape_json(shape):
    """``shape`` as JSON (``model.json``): a list of ints, a list of lists, or a dict of lists.
    A single input's shape is written as before several inputs existed."""
    shape = shape_of(shape)
    if isinstance(shape, dict):
        return {k: list(v) for k, v in shape.items()}
    if several(shape):
        return [list(s) for s in shape]
    return list(shape)


def describe_shape(shape):
    """``shape`` for a message: ``(28, 28)``, ``((64,), (64,))``, ``{'token_ids': (64,)}``."""
    return str(shape_of(shape))


def fingerprint_parts(x):
    """What a fingerprint reads of inputs ``x``: one array as itself (so one array's
    fingerprint is what it always was), or the structure's form and its arrays."""
    x = normalized(x)
    if not structured(x):
        return [x]
    return [f"inputs: {form(x)}", *arrays(x)]
