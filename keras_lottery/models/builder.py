"""Where a run's model comes from: a built-in name, the user's ``module:function``, or a Python function.

:func:`source` returns a :class:`ModelSource`; ``build(seed)`` gives a plain (unwrapped,
uncompiled) model of the Keras that runs, whose initial weights ``seed`` fixes.

The user's function
-------------------
It returns an uncompiled model of the Keras the run uses (``keras`` in the recipe):
``tf_keras`` (legacy Keras 2, ``from keras_lottery import keras`` or ``import tf_keras as
keras``), or Keras 3 (``import keras``) for ``"keras": "keras3"``. It is built with the
functional API or as ``keras.Sequential`` (a subclassed model cannot be cloned with
pruning wrappers), with one input taking the data's images (or, for data that is a
tuple or dict of arrays, one input per array: in the tuple's order, or named as the dict's
keys) and one output of ``num_classes`` **logits**: training uses sparse categorical
cross-entropy from logits, so the last layer must not apply softmax.

It is called with, as keyword arguments, a recipe's ``model.options`` and, for each of
these parameters it declares, ``seed``, ``input_shape`` (the images' shape, without the
batch; for data of several inputs a tuple or dict of shapes, :mod:`keras_lottery.data.inputs`)
and ``num_classes``. A function with a single required positional parameter and
none named ``seed`` gets the seed there: ``build_model(seed)`` and ``build_model()``
both work. Before the call, Python's, NumPy's and TensorFlow's global seeds are set to
``seed`` (``keras.utils.set_random_seed``), so layers with unseeded initializers are
drawn the same for the same seed and differently for another (Python's and NumPy's
generators are restored afterwards), and Keras's automatic layer names are restarted,
so every build names its layers alike (weights are saved by layer name).
"""

import inspect
import random

import numpy as np

from keras_lottery import backend, flavours
from keras_lottery.backend import keras
from keras_lottery.config.recipe import ModelConfig, RecipeError
from keras_lottery.data import inputs
from keras_lottery.models import BUILTIN, a_or_an, import_function, is_python_function, is_user_function, origin
from keras_lottery.models import layers
from keras_lottery.models.errors import ModelError
from keras_lottery.pruning import units

EXTRA_ARGUMENTS = ("seed", "input_shape", "num_classes")  # passed when the function declares them
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_KERAS = "keras_lottery.keras (tf_keras, legacy Keras 2)"
_KERAS3 = "Keras 3 (import keras)"


def source(model, input_shape, num_classes):
    """The :class:`ModelSource` of ``model``: a ``ModelConfig`` (a built-in or ``module:function``
    name), a model name, or a Python function returning the model."""
    input_shape, num_classes = inputs.shape_of(input_shape), int(num_classes)
    if isinstance(model, str):
        model = ModelConfig(name=model)
    if isinstance(model, ModelConfig):
        if model.name in BUILTIN:
            if inputs.several(input_shape):
                raise ModelError(
                    f"model {model.name} takes one input, but the data has several {inputs.describe_shape(input_shape)}; "
                    "give one array, or a function building a model with one input per array (model=...)"
                )
            return ModelSource(model.name, input_shape, num_classes, config=model)
        if is_python_function(model.name):
            raise ModelError(
                f"model {model.name!r} was a Python function passed to keras_lottery.run; pass it again "
                "there (model=...), or set model.name to a built-in model or module:function"
            )
        if not is_user_function(model.name):
            raise ModelError(
                f"model.name {model.name!r}: not a built-in model ({', '.join(sorted(BUILTIN))}) "
                "nor module:function naming your own"
            )
        function = import_function(model.name)
        return ModelSource(model.name, input_shape, num_classes, function=function, options=dict(model.options),
                           recipe=True)
    if flavours.of_model(model) is not None:
        raise ModelError(
            f"got a built {type(model).__name__}; pass the function that builds it instead "
            "(keras-lottery builds the model again for every seed)"
        )
    if not callable(model):
        raise ModelError(
            f"the model must be a built-in model name, a ModelConfig or a function returning a keras model, "
            f"got {_type_name(model)}"
        )
    return ModelSource(_function_name(model), input_shape, num_classes, function=model)


class ModelSource:
    """A model that ``build(seed)`` builds afresh; ``name`` says which in messages."""

    def __init__(self, name, input_shape, num_classes, config=None, function=None, options=None, recipe=False):
        self.name, self.input_shape, self.num_classes = name, inputs.shape_of(input_shape), int(num_classes)
        self.config, self.function, self.options = config, function, dict(options or {})
        self.builtin = config is not None
        self.recipe = recipe  # a recipe's module:function: argument problems are recipe-key problems
        self.origin = None if self.builtin else origin(function)  # the file the function is defined in
        if not self.builtin:
            self._args, self._kwargs, self._seed_at = self._plan()

    def __repr__(self):
        return f"ModelSource({self.name!r}, input_shape={self.input_shape}, num_classes={self.num_classes})"

    def describe(self):
        """One line saying where the model comes from (``run`` prints it once)."""
        if self.builtin:
            return f"model: {self.name} (built into keras-lottery)"
        return f"model: {self.name}, the function in {self.origin or 'an unknown file'}"

    def build(self, seed):
        """A plain, uncompiled ``tf_keras`` model whose initial weights ``seed`` fixes."""
        seed = int(seed)
        if self.builtin:
            return layers.build(self.config, self.input_shape, self.num_classes, seed)
        args, kwargs = list(self._args), dict(self._kwargs)
        if self._seed_at == "positional":
            args.append(seed)
        elif self._seed_at == "keyword":
            kwargs["seed"] = seed
        python_state, numpy_state = random.getstate(), np.random.get_state()
        _reset_names()  # auto-named layers ("dense", "dense_1") are named alike on every build
        keras.utils.set_random_seed(seed)
        try:
            model = self.function(*args, **kwargs)
            model = self._checked(model)  # may build a Sequential: still under the seed
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
        return model

    def check_seeds(self, seeds=(0, 1)):
        """Refuse a model whose initial weights the seed does not fix (builds it three times).

        The same seed must give bit-identical weights, and two seeds different kernels in
        every prunable layer (else the random-reinitialization control is not random).
        """
        if self.builtin:
            return
        from keras_lottery import masking

        a, b = seeds
        first = masking.get_weights(self.build(a))
        again = masking.get_weights(self.build(a))
        if list(first) != list(again):
            differing = ", ".join(sorted(set(first) ^ set(again))[:3])
            raise ModelError(f"{self.name} names its weights differently on each build ({differing}): name its layers")
        changed = [name for name in first if not np.array_equal(first[name], again[name])]
        if changed:
            raise ModelError(
                f"{self.name} gives different initial weights for the same seed ({', '.join(changed[:3])}): "
                "draw random numbers only from unseeded Keras initializers or from the `seed` argument"
            )
        model = self.build(b)
        other = masking.get_weights(model)
        kernels = {name: units.weight_key(name, first) for name in layers.layer_kinds(model)}
        fixed = [name for name, key in kernels.items() if np.array_equal(first[key], other[key])]
        if fixed:
            raise ModelError(
                f"{self.name} gives layer(s) {', '.join(fixed[:3])} the same initial kernel for seeds {a} and {b}: "
                "leave its initializer unseeded (keras-lottery seeds it) or derive its seed from the `seed` argument"
            )

    # ---- calling the user's function -------------------------------------------------

    def _plan(self):
        """Positional arguments, keyword arguments, and where the seed goes (keyword, positional or nowhere)."""
        # The recipe's keyword arguments: written as model.<name> (or inside model.options).
        kwargs, key = dict(self.options), "recipe key 'model"
        if "seed" in kwargs:
            raise RecipeError(f"{key}.seed': keras-lottery passes the seed itself (to a `seed` parameter); remove it")
        try:
            params = inspect.signature(self.function).parameters
        except (TypeError, ValueError):  # no signature to read (a builtin): call with the options only
            return (), kwargs, "nowhere"
        var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = [k for k in kwargs if not (k in params and params[k].kind in _NAMED) and not var_keyword]
        if unknown:
            names = ", ".join(p for p in params if p not in EXTRA_ARGUMENTS) or "none"
            raise RecipeError(f"{key}.{unknown[0]}': {self.name} has no parameter {unknown[0]!r}; its parameters are {names}")
        for name in ("input_shape", "num_classes"):
            if name in params and params[name].kind in _NAMED and name not in kwargs:
                kwargs[name] = self.input_shape if name == "input_shape" else self.num_classes
        first = next(iter(params.values()), None)
        seed_at, given = "nowhere", set(kwargs)
        if "seed" in params and params["seed"].kind in _NAMED:
            seed_at = "keyword"
            given.add("seed")
        else:
            required = [p for p in params.values() if p.kind in _POSITIONAL and p.name not in kwargs
                        and p.default is inspect.Parameter.empty]
            if len(required) == 1 and required[0] is first:  # build_model(seed) under any name
                seed_at = "positional"
                given.add(first.name)
        missing = [
            p.name for p in params.values()
            if p.default is inspect.Parameter.empty and p.name not in given
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        if missing:
            if self.recipe:
                raise RecipeError(f"{key}': {self.name} needs argument {missing[0]!r}; set model.{missing[0]}")
            raise ModelError(
                f"{self.name} takes required argument(s) {', '.join(missing)}; keras-lottery calls it with the seed "
                "only: give it no argument, a `seed` argument, or one positional argument (the seed)"
            )
        return (), kwargs, seed_at

    def _checked(self, model):
        """``model`` if keras-lottery can prune and train it; else a ModelError saying what to change."""
        if not isinstance(model, keras.Model):
            built_with = flavours.of_model(model)
            if built_with is not None and built_with != backend.FLAVOUR:
                raise ModelError(
                    f"{self.name} returned a model built with {built_with}, but this run uses {backend.FLAVOUR}: "
                    f"set \"keras\": \"{built_with}\" in the recipe (--keras {built_with}), or build the model with "
                    f"{_KERAS if backend.LEGACY else _KERAS3}"
                )
            raise ModelError(
                f"{self.name} returned {_type_name(model)}; it must return a keras model built with "
                f"{_KERAS if backend.LEGACY else _KERAS3}"
            )
        if isinstance(model, keras.Sequential) and not model.built and not inputs.several(self.input_shape):
            model.build((None, *self.input_shape))
        if not _is_graph_network(model):
            raise ModelError(
                f"{self.name} returned a subclassed model ({type(model).__name__}), which cannot be cloned with "
                "pruning wrappers: build it with the functional API (keras.Model(inputs, outputs)) or as keras.Sequential"
            )
        self._check_inputs(model)
        if len(model.outputs) != 1 or tuple(model.outputs[0].shape)[1:] != (self.num_classes,):
            shapes = ", ".join(str(tuple(o.shape)) for o in model.outputs)
            raise ModelError(
                f"{self.name} returned a model with output shape {shapes}, but the data has {self.num_classes} classes: "
                f"end it with one Dense({self.num_classes}) layer without activation"
            )
        last = _output_layer(model)
        if _applies_softmax(last):
            raise ModelError(
                f"{self.name}: the last layer {last.name!r} applies softmax, but training uses cross-entropy "
                "from logits: remove the softmax (activation=None)"
            )
        layers.kernel_layers(model)  # refuses a pruned weight tied into two places
        layers.check_precision(model)  # refuses mixed precision (float16, bfloat16)
        from keras_lottery import masking

        masking.named_variables(model)  # refuses weights whose names clash
        return model


    def _check_inputs(self, model):
        """Refuse a model whose inputs do not take the data's: one input per array, in the
        tuple's order or named as the dict's keys, each of the array's example shape."""
        expected = self.input_shape
        if not inputs.several(expected):
            if len(model.inputs) != 1:
                raise ModelError(f"{self.name} returned a model with {len(model.inputs)} inputs; give it one input, "
                                 "the images (or pass the data as a tuple or dict of arrays, one per input)")
            pairs = [("", model.inputs[0], expected)]
        elif isinstance(expected, dict):
            names = _input_names(model)
            if sorted(names) != sorted(expected):
                raise ModelError(
                    f"{self.name} returned a model with inputs named {', '.join(map(repr, names))}, but the data is a "
                    f"dict of {', '.join(map(repr, expected))}: name the inputs as the dict's keys (keras.Input(name=...))"
                )
            pairs = [(f" {name!r}", tensor, expected[name]) for name, tensor in zip(names, model.inputs)]
        else:
            if len(model.inputs) != len(expected):
                raise ModelError(
                    f"{self.name} returned a model with {len(model.inputs)} inputs, but the data is a tuple of "
                    f"{len(expected)} arrays; give the model one input per array, in the tuple's order"
                )
            pairs = [(f" {i}", tensor, shape) for i, (tensor, shape) in enumerate(zip(model.inputs, expected))]
        for which, tensor, shape in pairs:
            got = tuple(tensor.shape)[1:]
            if len(got) != len(shape) or any(d is not None and d != e for d, e in zip(got, shape)):
                what = f"taking inputs of shape {got}, but the data's images have" if not which else \
                    f"whose input{which} takes shape {got}, but the data's array{which} has"
                raise ModelError(
                    f"{self.name} returned a model {what} shape {shape}: build it for that shape "
                    "(declare an `input_shape` parameter to be given it)"
                )


def _input_names(model):
    """The names the model's inputs are fed by, in ``model.inputs`` order (a Keras 3 model
    built from a dict of inputs is fed by the dict's keys)."""
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict) and len(struct) == len(model.inputs):
        by_tensor = {id(t): k for k, t in struct.items()}
        if all(id(t) in by_tensor for t in model.inputs):
            return [by_tensor[id(t)] for t in model.inputs]
    names = getattr(model, "input_names", None)
    if names and len(names) == len(model.inputs):
        return list(names)
    return [getattr(t, "name", "").split(":")[0] for t in model.inputs]


def _output_layer(model):
    history = getattr(model.outputs[0], "_keras_history", None)
    layer = getattr(history, "layer", None) or getattr(history, "operation", None)  # tf_keras, Keras 3
    return layer if layer is not None else model.layers[-1]


def _is_graph_network(model):
    """True for a functional or Sequential model (whose layers can be cloned into wrappers)."""
    if backend.LEGACY:
        return bool(getattr(model, "_is_graph_network", False))
    from keras.src.models.functional import Functional

    return isinstance(model, Functional) or (isinstance(model, keras.Sequential) and model.built)


def _reset_names():
    """Restart Keras's automatic layer names (``dense``, ``dense_1``, ...)."""
    if backend.LEGACY:
        keras.backend.reset_uids()
        return
    from keras.src.utils import naming

    naming.reset_uids()


def _applies_softmax(layer):
    if isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    return activation is keras.activations.softmax or getattr(activation, "__name__", None) == "softmax"


def _type_name(obj):
    cls = type(obj)
    return a_or_an(cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}")


def _function_name(function):
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    return name or repr(function)
