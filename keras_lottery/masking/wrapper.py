"""Masked models: the layers we prune inside wrappers holding masks that we set.

Which wrapper depends on the Keras that runs (:mod:`keras_lottery.backend`): tfmot's
``prune_low_magnitude`` on tf_keras (:mod:`.tfmot_wrapper`), keras-lottery's own
:class:`~.keras3_wrapper.MaskedLayer` on Keras 3 (:mod:`.keras3_wrapper`). Both hold one
non-trainable mask variable per pruned weight (several in one wrapper when a layer
prunes several weights, or holds pruned layers inside it), assigned between rounds and fixed while a
round trains. The functions here work on either: wrap a model, read and set masks and
weights by name, :func:`apply_masks`, which runs before any read that must see
masked weights exactly zero, and :func:`strip`, which gives the plain model back.
"""

import numpy as np

from keras_lottery.backend import LEGACY, keras
from keras_lottery.models.errors import ModelError

if LEGACY:
    from keras_lottery.masking import tfmot_wrapper as implementation
else:
    from keras_lottery.masking import keras3_wrapper as implementation

WRAPPER = implementation.WRAPPER
callbacks = implementation.callbacks


def wrap(model, prunable):
    """Clone ``model`` with the layers holding the units named in ``prunable`` inside masked wrappers.

    ``prunable`` names units (:mod:`keras_lottery.pruning.units`) of the model's prunable
    weights (:func:`keras_lottery.models.prunable_layers`). A top-level layer holding one or
    more of them, itself or at any depth inside it (a nested model, MultiHeadAttention), is
    wrapped once, with one mask per pruned weight. Every other layer is rebuilt from its
    config, so a custom layer needs ``get_config``; weights are set afterwards by name.
    """
    from keras_lottery.models import prunable as table

    found = {weight.unit: weight for weight in table.weights(model)}
    wanted = list(prunable)
    missing = [unit for unit in wanted if unit not in found]
    if missing:
        by_name = {layer.name: layer for layer in model.layers}
        if missing[0] in by_name:
            layer = base_layer(by_name[missing[0]])
            raise ModelError(
                f"cannot prune layer {missing[0]!r} ({type(layer).__name__}): only {table.type_names()} layers "
                "(and layers with get_prunable_weights) are pruned"
            )
        raise ModelError(f"cannot prune unknown layers: {', '.join(sorted(missing))}; the prunable weights of the model "
                         f"are {', '.join(found)}")
    specs = {}
    for unit in found:  # model order
        if unit in wanted:
            weight = found[unit]
            specs.setdefault(weight.path[0], []).append((tuple(weight.path[1:]), weight.name))

    def clone(layer):
        if layer.name in specs:
            return implementation.wrap_layer(layer, specs[layer.name])
        return _copy_layer(layer, "the pruned model")

    with implementation.cloning():
        wrapped = keras.models.clone_model(model, clone_function=clone)
    missing = set(wanted) - set(masked_weights(wrapped))
    if missing:
        raise ModelError(f"cannot prune {', '.join(sorted(missing))}: the cloned model does not wrap them")
    return wrapped


def _copy_layer(layer, into):
    """A new layer of ``layer``'s class from its config (weights are set afterwards)."""
    try:
        config = layer.get_config()
    except NotImplementedError:
        raise ModelError(
            f"layer {layer.name!r} ({type(layer).__name__}) cannot be copied into {into}: "
            "give its class a get_config() method returning its constructor arguments"
        ) from None
    return layer.__class__.from_config(config)


def strip(model):
    """A plain copy of a wrapped model: every masked wrapper replaced by the layer it wraps,
    its weights those of ``model`` with masked weights exactly zero (``weight * mask``).
    ``model`` is left as it is, and the copy shares no variable with it. The counterpart of
    tfmot's ``strip_pruning`` on either Keras; save the result to ship a ticket.
    """
    values = get_weights(model)
    keys = {id(variable): key for key, variable in named_variables(model).items()}
    for weight, mask in masked_weights(model).values():
        key = keys[id(weight)]
        values[key] = values[key] * _numpy(mask)
    with implementation.cloning():
        plain = keras.models.clone_model(model, clone_function=lambda layer: _copy_layer(base_layer(layer), "the stripped model"))
    set_weights(plain, values)
    return plain


def is_wrapper(layer):
    return isinstance(layer, WRAPPER)


def base_layer(layer):
    """The layer a wrapper wraps; any other layer itself."""
    return layer.layer if isinstance(layer, WRAPPER) else layer


def wrappers(model):
    """Masked wrappers keyed by the name of the layer they wrap."""
    return {layer.layer.name: layer for layer in model.layers if isinstance(layer, WRAPPER)}


def masked_weights(model):
    """``{unit: (weight variable, mask variable)}`` for every pruned weight of a wrapped model,
    in model order (a wrapper holds one mask per weight it prunes)."""
    from keras_lottery.pruning import units

    found = {}
    for name, wrapper in wrappers(model).items():
        for (inside, short), pair in zip(implementation.specs(wrapper), implementation.weights_and_masks(wrapper)):
            found[units.of_layer((name, *inside), short)] = pair
    return found


def _numpy(variable):
    return np.array(variable.numpy())


def pruned_variables(model):
    """The variables the masks prune, keyed by unit (:mod:`keras_lottery.pruning.units`), as
    :func:`get_masks` keys their masks."""
    return {unit: weight for unit, (weight, _) in masked_weights(model).items()}


def get_masks(model):
    """The current masks (float32 arrays of 0 and 1) keyed by unit."""
    return {unit: _numpy(mask) for unit, (_, mask) in masked_weights(model).items()}


def set_masks(model, masks):
    """Assign masks (keyed by unit) and zero the weights they remove."""
    pairs = masked_weights(model)
    if set(masks) != set(pairs):
        raise ModelError(f"masks for {sorted(masks)} do not match the pruned weights {sorted(pairs)}")
    for unit, (_, mask) in pairs.items():
        mask.assign(np.asarray(masks[unit], dtype=np.float32))
    apply_masks(model)


def apply_masks(model):
    """Make every masked weight exactly zero (weights = weights * mask)."""
    for weight, mask in masked_weights(model).values():
        weight.assign(_numpy(weight) * _numpy(mask))


def dense_masks(model):
    """All-ones masks for every pruned weight of a wrapped model, keyed by unit."""
    return {unit: np.ones(tuple(weight.shape), np.float32) for unit, (weight, _) in masked_weights(model).items()}


def weight_key(layer, index, variable):
    """The key of ``variable``, the ``index``-th weight of the top-level ``layer``: ``layer/name``,
    or ``layer/weight_<index>`` for a weight Keras named itself."""
    from keras_lottery.models import prunable

    return f"{layer.name}/{prunable.short_key(index, variable)}"


def named_variables(model):
    """The model's own variables keyed ``layer/weight`` (wrappers' masks left out; a weight
    created without a name keyed by its position, see :func:`weight_key`). A weight of a layer
    inside a layer (a nested model, MultiHeadAttention) is keyed by the path of layer names
    down to it, ``mha/query/kernel`` (see :func:`keras_lottery.models.prunable.walk`).

    Two weights of one layer with the same last name (a custom layer's ``add_weight`` calls
    sharing a name) raise ModelError: saved weights are keyed by these names, so one would
    silently overwrite the other.
    """
    from keras_lottery.models import prunable
    from keras_lottery.pruning import units

    variables, seen = {}, set()
    for path, layer, own in prunable.walk(model):
        for index, variable in enumerate(own):
            if id(variable) in seen:  # one variable reached twice (tied): keyed once
                continue
            seen.add(id(variable))
            key = units.key(path, prunable.short_key(index, variable))
            if key in variables:
                raise ModelError(
                    f"layer {'/'.join(path)!r} has two weights named {key.split('/')[-1]!r} ({variables[key].name}, "
                    f"{variable.name}); give each weight of a layer its own name"
                )
            variables[key] = variable
    return variables


def _by_position(weights, variables):
    """``weights`` keyed as ``variables`` where a layer's keys differ but its weights match in
    number and shape, in order (run directories made before unnamed weights were keyed by
    position); None when they do not match so."""
    def by_layer(keys):
        grouped = {}
        for key in keys:
            grouped.setdefault(key.rsplit("/", 1)[0], []).append(key)
        return grouped

    given, wanted = by_layer(weights), by_layer(variables)
    if set(given) != set(wanted):
        return None
    remapped = {}
    for layer, keys in wanted.items():
        old = given[layer]
        if len(old) != len(keys) or any(tuple(np.shape(weights[o])) != tuple(variables[k].shape)
                                        for o, k in zip(old, keys)):
            return None
        remapped.update({k: weights[o] for o, k in zip(old, keys)})
    return remapped


def get_weights(model):
    """A copy of every weight as numpy arrays keyed ``layer/weight``."""
    return {name: _numpy(v) for name, v in named_variables(model).items()}


def set_weights(model, weights):
    """Assign weights keyed ``layer/weight``; every variable of the model must be given."""
    variables = named_variables(model)
    if set(weights) != set(variables):
        weights = _by_position(weights, variables) or weights
    if set(weights) != set(variables):
        raise ValueError(
            "saved weights do not match the model: "
            f"missing {sorted(set(variables) - set(weights))}, extra {sorted(set(weights) - set(variables))}"
        )
    for name, variable in variables.items():
        variable.assign(weights[name])
