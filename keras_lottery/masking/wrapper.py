"""Masked models: the layers we prune inside wrappers holding masks that we set.

Which wrapper depends on the Keras that runs (:mod:`keras_lottery.backend`): tfmot's
``prune_low_magnitude`` on tf_keras (:mod:`.tfmot_wrapper`), keras-lottery's own
:class:`~.keras3_wrapper.MaskedLayer` on Keras 3 (:mod:`.keras3_wrapper`). Both hold one
non-trainable mask variable per pruned layer, assigned between rounds and fixed while a
round trains. The functions here work on either: wrap a model, read and set masks and
weights by name, :func:`apply_masks`, which runs before any read that must see
masked weights exactly zero, and :func:`strip`, which gives the plain model back.
"""

import re

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
    """Clone ``model`` with the layers named in ``prunable`` inside masked wrappers.

    ``prunable`` names layers of :data:`keras_lottery.models.PRUNABLE_TYPES` (see
    :func:`keras_lottery.models.prunable_layers`). Every other layer is rebuilt from its
    config, so a custom layer needs ``get_config``; weights are set afterwards by name.
    """
    from keras_lottery import models

    prunable = set(prunable)
    by_name = {layer.name: layer for layer in model.layers}
    missing = sorted(prunable - set(by_name))
    if missing:
        raise ModelError(f"cannot prune unknown layers: {', '.join(missing)}; the model's layers are {', '.join(by_name)}")
    wrong = sorted(name for name in prunable if not models.is_kernel_layer(by_name[name]))
    if wrong:
        kinds = ", ".join(t.__name__ for t in models.PRUNABLE_TYPES)
        raise ModelError(f"cannot prune layer {wrong[0]!r} ({type(by_name[wrong[0]]).__name__}): only {kinds} layers are pruned")

    def clone(layer):
        if layer.name in prunable:
            return implementation.wrap_layer(layer)
        return _copy_layer(layer, "the pruned model")

    wrapped = keras.models.clone_model(model, clone_function=clone)
    missing = prunable - set(wrappers(wrapped))
    if missing:
        raise ModelError(f"cannot prune layers {', '.join(sorted(missing))}: the cloned model does not wrap them")
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
    for wrapper in wrappers(model).values():
        kernel, mask = implementation.weight_and_mask(wrapper)
        key = keys[id(kernel)]
        values[key] = values[key] * _numpy(mask)
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


def _mask_variable(wrapper):
    return implementation.weight_and_mask(wrapper)[1]


def _kernel_variable(wrapper):
    return implementation.weight_and_mask(wrapper)[0]


def _numpy(variable):
    return np.array(variable.numpy())


def pruned_variables(model):
    """The variables the masks prune, keyed by unit (:mod:`keras_lottery.pruning.units`), as
    :func:`get_masks` keys their masks."""
    return {name: _kernel_variable(w) for name, w in wrappers(model).items()}


def get_masks(model):
    """The current masks (float32 arrays of 0 and 1) keyed by layer name."""
    return {name: _numpy(_mask_variable(w)) for name, w in wrappers(model).items()}


def set_masks(model, masks):
    """Assign masks (keyed by layer name) and zero the weights they remove."""
    layers = wrappers(model)
    if set(masks) != set(layers):
        raise ModelError(f"masks for {sorted(masks)} do not match the pruned layers {sorted(layers)}")
    for name, wrapper in layers.items():
        _mask_variable(wrapper).assign(np.asarray(masks[name], dtype=np.float32))
    apply_masks(model)


def apply_masks(model):
    """Make every masked weight exactly zero (weights = weights * mask)."""
    for wrapper in wrappers(model).values():
        kernel, mask = implementation.weight_and_mask(wrapper)
        kernel.assign(_numpy(kernel) * _numpy(mask))


def dense_masks(model):
    """All-ones masks for every pruned layer of a wrapped model."""
    return {name: np.ones(tuple(_kernel_variable(w).shape), np.float32) for name, w in wrappers(model).items()}


def _short_name(variable):
    """``kernel`` for ``fc1/kernel:0`` (tf_keras) or ``kernel`` (Keras 3)."""
    return variable.name.split("/")[-1].split(":")[0]


# The name Keras gives a weight created without one (``add_weight(shape=...)``): ``variable``,
# ``variable_2`` on Keras 3 and ``Variable`` on tf_keras, from a counter that differs between
# two builds of one model. Such a weight is keyed by its position in its layer instead.
_UNNAMED = re.compile(r"^[Vv]ariable(_\d+)?$")


def weight_key(layer, index, variable):
    """The key of ``variable``, the ``index``-th weight of ``layer``: ``layer/name``, or
    ``layer/weight_<index>`` for a weight Keras named itself."""
    short = _short_name(variable)
    return f"{layer.name}/{f'weight_{index}' if _UNNAMED.match(short) else short}"


def named_variables(model):
    """The model's own variables keyed ``layer/weight`` (wrappers' masks left out; a weight
    created without a name keyed by its position, see :func:`weight_key`).

    Two weights of one layer with the same last name (a model nested as a layer, or a
    custom layer's ``add_weight`` calls sharing a name) raise ModelError: saved weights
    are keyed by these names, so one would silently overwrite the other.
    """
    variables = {}
    for layer in model.layers:
        layer = base_layer(layer)
        for index, variable in enumerate(layer.weights):
            key = weight_key(layer, index, variable)
            if key in variables:
                raise ModelError(
                    f"layer {layer.name!r} has two weights named {key.split('/')[-1]!r} ({variables[key].name}, "
                    f"{variable.name}); give each weight of a layer its own name, and do not nest models as layers"
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
