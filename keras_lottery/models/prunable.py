"""Which weights of a model are pruned, and of what kind: the one table of prunable layer types.

| layer type | weights pruned | kind (``pruning.rates`` key) |
|---|---|---|
| Dense | ``kernel`` | ``dense``; ``output`` for the model's last Dense |
| Conv1D/2D/3D and their Transpose | ``kernel`` | ``conv``; ``shortcut`` if the layer's name starts with ``shortcut`` |
| DepthwiseConv1D/2D | ``depthwise_kernel`` (Keras 3: ``kernel``) | ``depthwise`` |
| SeparableConv1D/2D | ``depthwise_kernel``, ``pointwise_kernel`` | ``depthwise``, ``conv`` |
| EinsumDense | ``kernel`` | ``attention`` inside an attention layer, else ``dense`` |
| Embedding | ``embeddings`` | ``embedding`` |
| LSTM, GRU, SimpleRNN | ``kernel``, ``recurrent_kernel`` | ``recurrent`` |

(:data:`TABLE`; subclasses count as their type.) A layer of another type that defines
``get_prunable_weights()`` (tfmot's ``PrunableLayer`` interface) is pruned in the weights it
returns, of kind ``dense``, or the kind its type's row gives a weight of that name.

The search goes to any depth: the layers of a model nested in the model (ConvNeXt's stem),
and layers inside layers (MultiHeadAttention's query/key/value/output projections, keras_hub's
transformer layers). A layer of the table, or one with ``get_prunable_weights``, is a leaf:
all its weights (an RNN's, held by its cell, too) are keyed by its path. Any other layer is
looked into: its sublayers' weights are keyed by their paths (``mha/query/kernel``), its own by
its path. A layer used twice is one layer and gets one mask; one weight reached through two
paths (tied into two places) is refused, since masking it twice is not one rule.
"""

import dataclasses
import re

from keras_lottery.backend import keras
from keras_lottery.models.errors import ModelError
from keras_lottery.pruning import units

# type names (looked up in the Keras that runs; a name it lacks is skipped), weight -> kind.
# First match wins: subclasses first (tf_keras's DepthwiseConv2D is a Conv2D).
TABLE = (
    (("SeparableConv1D", "SeparableConv2D"), {"depthwise_kernel": "depthwise", "pointwise_kernel": "conv"}),
    (("DepthwiseConv1D", "DepthwiseConv2D"), {"depthwise_kernel": "depthwise", "kernel": "depthwise"}),  # Keras 3: kernel
    (("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Conv1D", "Conv2D", "Conv3D"), {"kernel": "conv"}),
    (("Dense",), {"kernel": "dense"}),
    (("EinsumDense",), {"kernel": "dense"}),
    (("Embedding",), {"embeddings": "embedding"}),
    (("LSTM", "GRU", "SimpleRNN"), {"kernel": "recurrent", "recurrent_kernel": "recurrent"}),
)


def _rows():
    for names, weights in TABLE:
        types = tuple(t for t in (getattr(keras.layers, name, None) for name in names) if isinstance(t, type))
        if types:
            yield types, weights


def row(layer):
    """``{weight name: kind}`` of ``layer``'s type in :data:`TABLE`, or None."""
    return next((weights for types, weights in _rows() if isinstance(layer, types)), None)


def type_names():
    """The prunable layer types, for messages."""
    return ("Dense, Conv1D/2D/3D and their Transpose, DepthwiseConv1D/2D, SeparableConv1D/2D, EinsumDense, Embedding, "
            "LSTM, GRU, SimpleRNN")


def _base(layer):
    from keras_lottery import masking

    return masking.base_layer(layer)


def _custom(layer):
    # (the tf_keras wrapper gives a layer it wraps the method too, marked _lottery_pruned: not the user's)
    return callable(getattr(layer, "get_prunable_weights", None)) and not hasattr(layer, "_lottery_pruned")


def is_leaf(layer):
    """True for a layer whose weights are its own: a type of the table, or one defining
    ``get_prunable_weights``."""
    return row(layer) is not None or _custom(layer)


def children(layer):
    """The layers directly inside ``layer`` (a model's layers, a layer's sublayers), unwrapped."""
    if isinstance(layer, keras.Model):
        found = layer.layers
    else:
        found = layer._flatten_layers(include_self=False, recursive=False)
    return [_base(child) for child in found]


def _short_name(variable):
    """``kernel`` for ``fc1/kernel:0`` (tf_keras) or ``kernel`` (Keras 3)."""
    return variable.name.split("/")[-1].split(":")[0]


# The name Keras gives a weight created without one (``add_weight(shape=...)``): ``variable``,
# ``variable_2`` on Keras 3 and ``Variable`` on tf_keras, from a counter that differs between
# two builds of one model. Such a weight is keyed by its position in its layer instead.
_UNNAMED = re.compile(r"^[Vv]ariable(_\d+)?$")


def short_key(index, variable):
    """The last part of the key of ``variable``, its layer's ``index``-th weight."""
    short = _short_name(variable)
    return f"weight_{index}" if _UNNAMED.match(short) else short


def walk(model):
    """``(path, layer, weights)`` for every layer whose weights are keyed at ``path`` (layer
    names from the model down), at any depth, in model order: a leaf with all its weights, a
    layer looked into with the weights not of its sublayers (see the module's docstring)."""
    seen = set()

    def visit(layer, path):
        if id(layer) in seen:  # a layer used twice, or inside two nested models: keyed once
            return
        seen.add(id(layer))
        if is_leaf(layer):
            yield path, layer, list(layer.weights)
            return
        inner = children(layer)
        within = {id(v) for child in inner for v in child.weights}
        own = [v for v in layer.weights if id(v) not in within]
        if own or not inner:
            yield path, layer, own
        for child in inner:
            yield from visit(child, (*path, child.name))

    for layer in model.layers:
        layer = _base(layer)
        yield from visit(layer, (layer.name,))


@dataclasses.dataclass(frozen=True)
class Weight:
    """One prunable weight: its mask's ``unit``, its ``key`` (``layer/weight``), the ``path`` of
    layer names down to the ``layer`` holding it, its short ``name``, its ``kind``, the
    ``variable`` itself, and the ``ancestors`` of its layer (the layers on its path)."""

    unit: str
    key: str
    path: tuple
    name: str
    kind: str
    layer: object
    variable: object
    ancestors: tuple = ()

    @property
    def shape(self):
        return tuple(int(d) for d in self.variable.shape)

    @property
    def size(self):
        count = 1
        for d in self.shape:
            count *= d
        return count


def _chosen(layer):
    """``[(variable, kind)]``: the weights of a leaf ``layer`` that are pruned."""
    weights = row(layer)
    if _custom(layer):
        found = list(layer.get_prunable_weights())
        names = {id(v): _short_name(v) for v in found}
        default = next(iter(weights.values())) if weights else "dense"
        return [(v, (weights or {}).get(names[id(v)], default)) for v in found]
    if weights is None:
        return []
    holder = getattr(layer, "cell", None) if "recurrent_kernel" in weights else layer
    return [(getattr(holder, name), kind) for name, kind in weights.items() if getattr(holder, name, None) is not None]


def _is_attention(layer):
    return isinstance(layer, keras.layers.MultiHeadAttention) or "Attention" in type(layer).__name__


def weights(model):
    """The model's prunable weights (:class:`Weight`), in model order, at any depth."""
    found, owners = [], {}

    for path, layer, own in walk(model):
        keys = {id(v): units.key(path, short_key(i, v)) for i, v in enumerate(own)}
        for variable, kind in _chosen(layer) if is_leaf(layer) else []:
            if id(variable) not in keys:
                raise ModelError(
                    f"layer {'/'.join(path)!r} ({type(layer).__name__}): the weight it prunes ({variable.name}) is not "
                    "one of its weights; return weights of the layer itself from get_prunable_weights()"
                )
            found.append((path, layer, variable, kind, keys[id(variable)]))
    # Ancestors (for the attention kind): the layers on each path.
    layers_at = {path: layer for path, layer, _ in _all_paths(model)}
    dense = [i for i, (_, layer, _, _, _) in enumerate(found) if isinstance(layer, keras.layers.Dense)]
    output = dense[-1] if dense else None
    result = []
    for i, (path, layer, variable, kind, key) in enumerate(found):
        if id(variable) in owners:
            raise ModelError(
                f"weight {key!r} is the weight {owners[id(variable)]!r} tied into a second place; keras-lottery gives "
                "each pruned weight one mask: give each place its own layer, or share the whole layer"
            )
        owners[id(variable)] = key
        ancestors = tuple(layers_at[path[:n]] for n in range(1, len(path)) if path[:n] in layers_at)
        name = key.rsplit("/", 1)[-1]
        if kind in ("conv", "dense") and layer.name.startswith("shortcut"):  # as in keras-lottery 0.3: any type
            kind = "shortcut"
        elif isinstance(layer, keras.layers.Dense) and kind == "dense" and i == output:
            kind = "output"
        elif kind == "dense" and not isinstance(layer, keras.layers.Dense) and any(map(_is_attention, ancestors)):
            kind = "attention"
        result.append(Weight(units.of_layer(path, name), key, path, name, kind, layer, variable, ancestors))
    return result


def _all_paths(model):
    """``(path, layer, None)`` for every layer at any depth (leaves and layers looked into)."""
    def visit(layer, path):
        yield path, layer, None
        if not is_leaf(layer):
            for child in children(layer):
                yield from visit(child, (*path, child.name))

    for layer in model.layers:
        layer = _base(layer)
        yield from visit(layer, (layer.name,))


def resolve(layer, spec):
    """``(layer holding it, variable)`` for ``spec``, ``(names below layer, short key)`` of a
    pruned weight inside the (built) top-level ``layer``."""
    inside, short = spec
    owner = layer
    for name in inside:
        owner = next((child for child in children(owner) if child.name == name), None)
        if owner is None:
            raise ModelError(f"layer {layer.name!r} has no layer {'/'.join(inside)!r} inside it to prune")
    for index, variable in enumerate(owner.weights):
        if short_key(index, variable) == short:
            return owner, variable
    raise ModelError(f"layer {'/'.join([layer.name, *inside])!r} has no weight {short!r} to prune")
