"""The layers of a model: which weights are pruned and of what kind; building the built-in models.

Every builder takes ``(input_shape, num_classes, config, kernel_init)`` and returns a
plain (unwrapped) functional model of the Keras that runs (tf_keras or Keras 3). ``kernel_init()`` returns a freshly
seeded initializer on every call, so one seed fixes every layer's initial weights.

Weights are pruned by their layer's TYPE, at any depth (:mod:`keras_lottery.models.prunable`,
the one table of prunable layer types). Each pruned weight is a *unit*
(:mod:`keras_lottery.pruning.units`): a layer's name for the kernel of a Dense or a
convolution of the model itself (as in every model of keras-lottery 0.3), the weight's key
otherwise (``lstm/recurrent_kernel``, ``mha/query/kernel``). Its kind (:func:`layer_kinds`),
what ``pruning.rates`` is keyed by, is

- ``shortcut``: a convolution whose name starts with ``shortcut`` (Resnet-18's 1x1 shortcut
  convolutions; name a layer so to give it its own rate);
- ``conv``: any other convolution's kernel, a separable convolution's pointwise kernel;
- ``output``: the kernel of the last ``Dense`` layer of the model (in model order);
- ``dense``: any other ``Dense`` kernel, an ``EinsumDense`` kernel outside attention;
- ``depthwise``, ``embedding``, ``attention``, ``recurrent``: see the table. These kinds
  have no rate unless a recipe gives one.

The units pruned are those of a kind with a rate, narrowed by ``pruning.include`` and
``pruning.exclude`` (:func:`prunable_layers`, :func:`rates_by_layer`).
"""

import re

import numpy as np

from keras_lottery.backend import keras
from keras_lottery.config.recipe import RecipeError
from keras_lottery.models import BUILTIN, builtin_function, prunable
from keras_lottery.models.errors import ModelError


def _base(layer):
    from keras_lottery import masking

    return masking.base_layer(layer)


def is_kernel_layer(layer):
    """True for a layer that has weights pruned by type (:mod:`.prunable`), itself (not inside it)."""
    layer = _base(layer)
    return prunable.is_leaf(layer) and bool(prunable._chosen(layer))


def _inner_layers(model):
    """Every layer inside ``model``, at any depth (on tf_keras and Keras 3 alike)."""
    for layer in getattr(model, "layers", []):
        yield layer
        if isinstance(layer, keras.Model):
            yield from _inner_layers(layer)


def _dtype_name(dtype):
    return str(getattr(dtype, "name", dtype))


def check_precision(model):
    """Refuse a model that computes or keeps weights in another precision than float32 (a
    mixed-precision policy such as ``mixed_float16``): keras-lottery's masks, rewinding and
    evaluation are exact in float32 only, and it has no loss scaling."""
    for layer in _inner_layers(model):
        layer = _base(layer)
        if isinstance(layer, keras.layers.InputLayer):
            continue
        computes = _dtype_name(getattr(layer, "compute_dtype", None) or "float32")
        stored = [_dtype_name(w.dtype) for w in layer.weights if "float" in _dtype_name(w.dtype)]
        odd = next((d for d in [computes, *stored] if "float" in d and d != "float32"), None)
        if odd is not None:
            policy = getattr(getattr(layer, "dtype_policy", None), "name", None) or odd
            global_policy = keras.mixed_precision.global_policy().name
            where = f"the global dtype policy is {global_policy!r}" if global_policy != "float32" else \
                f"its dtype policy is {policy!r}"
            raise ModelError(
                f"layer {layer.name!r} computes in {odd} ({where}), but keras-lottery trains in float32 only "
                "(masks, rewinding and evaluation are exact in float32; there is no loss scaling): call "
                "keras.mixed_precision.set_global_policy(\"float32\") before building the model, and give "
                "no layer another dtype"
            )


def takes_ids(model):
    """True for a model whose input is integer ids: an integer input, or one an Embedding reads."""
    dtype = _dtype_name(getattr(model.inputs[0], "dtype", "float32")) if model.inputs else "float32"
    if "int" in dtype:
        return True
    readers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)][:1]
    for layer in model.layers:
        for node in getattr(layer, "_inbound_nodes", []):
            inputs = getattr(node, "input_tensors", None)  # tf_keras
            inputs = getattr(node, "arguments", None).keras_tensors if inputs is None and hasattr(
                node, "arguments") else inputs  # Keras 3
            inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
            if any(t is model.inputs[0] for t in inputs):
                readers.append(layer)
    return any(isinstance(_base(layer), keras.layers.Embedding) for layer in readers)


def kernel_layers(model):
    """The layers holding prunable weights, at any depth, in model order (unwrapped)."""
    found = {}
    for weight in prunable.weights(model):
        found.setdefault(id(weight.layer), weight.layer)
    return list(found.values())


def layer_kinds(model):
    """``{unit: kind}`` for the prunable weights of a model, in model order (a unit is the
    layer's name for a Dense or convolution kernel, see :mod:`keras_lottery.pruning.units`)."""
    return {weight.unit: weight.kind for weight in prunable.weights(model)}


def identical_weights(model):
    """Groups of prunable weights (their units) that hold the same values, other than a constant.

    Two layers start so when they share one seeded initializer (Keras 3 and tf_keras draw the
    same values from it on every call), and ``MultiHeadAttention`` clones a seeded
    ``kernel_initializer`` for its query, key and value projections. A run names them in a note:
    their weights rank alike at θ0, which no user means.
    """
    groups = {}
    for weight in prunable.weights(model):
        value = np.array(weight.variable.numpy())
        if value.size > 1 and np.any(value != value.flat[0]):
            key = (value.shape, value.dtype.str, value.tobytes())
            groups.setdefault(key, []).append(weight.unit)
    return [units for units in groups.values() if len(units) > 1]


def kernel_sizes(model):
    """``{unit: number of weights}`` for the prunable weights of a model."""
    return {weight.unit: weight.size for weight in prunable.weights(model)}


def _kernel_shape(model, name):
    return next(weight.shape for weight in prunable.weights(model) if weight.unit == name)


def kernel_weight_count(model):
    """Number of prunable weights: what the paper counts as the network's weights."""
    return sum(kernel_sizes(model).values())


def _matches(pattern, name):
    return pattern == name or re.fullmatch(pattern, name) is not None


def prunable_layers(model, pruning):
    """``{layer name: kind}`` of the layers ``pruning`` may prune, in model order.

    ``pruning`` is a :class:`~keras_lottery.config.recipe.PruningConfig`. Its ``include``
    patterns (layer names or regular expressions matching the whole name) keep only the
    matching layers, its ``exclude`` patterns drop matching layers. A pattern matching no
    prunable layer, or an included layer whose kind has no rate, raises ``RecipeError``.
    Which of these layers are pruned: those whose kind has a rate (:func:`rates_by_layer`).
    """
    kinds = layer_kinds(model)
    if not kinds:
        raise ModelError(f"the model has no layer that can be pruned: add layers of type {prunable.type_names()}")
    listing = ", ".join(kinds)

    def matching(key, patterns):
        chosen = set()
        for pattern in patterns:
            try:
                hits = {name for name in kinds if _matches(pattern, name)}
            except re.error as err:
                raise RecipeError(f"recipe key 'pruning.{key}': {pattern!r} is not a regular expression ({err})") from None
            if not hits:
                raise RecipeError(
                    f"recipe key 'pruning.{key}': {pattern!r} matches no prunable layer; "
                    f"the prunable layers are {listing}"
                )
            chosen |= hits
        return chosen

    included = matching("include", pruning.include) if pruning.include else set(kinds)
    excluded = matching("exclude", pruning.exclude)
    chosen = {name: kind for name, kind in kinds.items() if name in included and name not in excluded}
    if pruning.include:
        for name, kind in chosen.items():
            if kind not in pruning.rates:
                raise RecipeError(
                    f"recipe key 'pruning.include': layer {name!r} is a {kind} layer and pruning.rates has no "
                    f"rate for {kind!r}; add one or leave the layer out of include"
                )
    return chosen


def rates_by_layer(model, pruning):
    """``{layer name: rate}``: the layers pruned (:func:`prunable_layers` whose kind has a rate)."""
    kinds = prunable_layers(model, pruning)
    rates = {name: pruning.rates[kind] for name, kind in kinds.items() if kind in pruning.rates}
    if not rates:
        present = ", ".join(f"{name} ({kind})" for name, kind in kinds.items()) or "none"
        raise RecipeError(
            f"recipe key 'pruning.rates': no layer to prune has a kind in {sorted(pruning.rates)}; "
            f"the layers that may be pruned are {present}"
        )
    return rates


def _other_kernel_layers(model):
    """Layers with a kernel-like weight none of which is pruned by type (they always stay dense)."""
    pruned = {id(weight.layer) for weight in prunable.weights(model)}
    others = []
    for _, layer, own in prunable.walk(model):
        if id(layer) in pruned or isinstance(layer, keras.layers.InputLayer):
            continue
        if any("kernel" in w.name.split("/")[-1] or "embeddings" in w.name for w in own):
            others.append(layer)
    return others


def describe_pruning(model, rates_by_layer, structure=None, levels=False):
    """Lines saying which layers a run prunes at which rate and which kernel layers stay dense
    (and, with a block ``structure``, in how many blocks and at which real rate). ``levels``:
    the rates do not apply per round, the run's levels of sparsity do (said by the caller)."""
    from keras_lottery.pruning import blocks

    kinds, sizes = layer_kinds(model), kernel_sizes(model)
    unknown = sorted(set(rates_by_layer) - set(kinds))
    if unknown:
        raise ModelError(f"cannot describe pruning of {', '.join(unknown)}: not prunable layers of the model")
    others = _other_kernel_layers(model)
    pruned = sum(sizes[name] for name in rates_by_layer)
    lines = [
        f"prunes {len(rates_by_layer)} of {len(kinds)} prunable {'layers' if all('/' not in k for k in kinds) else 'weights'} "
        f"({pruned:,} of {sum(sizes.values()):,} kernel weights):"
    ]
    width = max([len(name) for name in kinds] + [len(layer.name) for layer in others])
    for name, kind in kinds.items():
        rate = rates_by_layer.get(name)
        what = "stays dense" if rate is None else "pruned to each level" if levels else f"{100 * rate:g}% per round"
        if rate is not None and blocks.block_shape(structure):
            what += " " + blocks.describe_layer(_kernel_shape(model, name), rate, structure)
        lines.append(f"  {name:<{width}}  {kind:<9}  {sizes[name]:>11,} weights  {what}")
    for layer in others:
        lines.append(
            f"  {layer.name:<{width}}  {'-':<9}  {'':>11}          stays dense "
            f"({type(layer).__name__} is not a type keras-lottery prunes: {prunable.type_names()})"
        )
    return lines


def seeded_initializers(name, seed):
    """A callable that returns a new initializer ``name`` with the next seed on each call."""
    counter = iter(range(10**9))

    def make():
        return keras.initializers.get({"class_name": name, "config": {"seed": seed * 1000 + next(counter)}})

    return make


def build(config, input_shape, num_classes, seed):
    """Build the recipe's model (unwrapped) with initial weights fixed by ``seed``.

    Built-in models are built here; a ``module:function`` model goes through
    :func:`keras_lottery.models.source`.
    """
    if config.name not in BUILTIN:
        from keras_lottery.models.builder import source

        return source(config, input_shape, num_classes).build(seed)
    builder = builtin_function(config.name)
    model = builder(tuple(input_shape), num_classes, config, seeded_initializers(config.initializer, seed))
    check_precision(model)
    return model
