"""Recipes: one JSON file states one experiment completely.

A recipe is parsed into frozen dataclasses. Parsing is strict: an unknown key, a wrong
type or an impossible value raises :class:`RecipeError` with a one-line message that
names the key and what is allowed, before anything is trained or written.

A recipe file may start from another one: ``"extends": "vgg19_cifar10"`` (a shipped
recipe) or ``"extends": "base.json"`` (a path relative to the extending file's folder)
and state only what differs. :func:`read` resolves the chain, so a parsed recipe, and its
hash, are the same as those of the recipe written out in full.

Settings that are allowed but have no effect (a learning-rate drop after the end of
training) are not errors; :meth:`Recipe.notes` describes them, and ``keras-lottery run``
prints them. Parsing itself prints nothing.
"""

import dataclasses
import difflib
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from keras_lottery import flavours
from keras_lottery import models
from keras_lottery.config.identity import to_jsonable
from keras_lottery.lottery import rewinding, rounds, variants
from keras_lottery.pruning import blocks, criteria
from keras_lottery.errors import UsageError

# The kinds of pruned weights (keras_lottery.models.prunable); a kind without a rate stays dense.
LAYER_KINDS = ("conv", "dense", "output", "shortcut", "depthwise", "embedding", "attention", "recurrent")
DATASETS = ("mnist", "cifar10", "digits", "npz")
PYTHON_DATA = "python"  # data passed to keras_lottery.run (recorded in the run's recipe.json)
TFDS_PREFIX = "tfds:"  # "tfds:fashion_mnist": any tensorflow-datasets image classification dataset
OPTIMIZERS = ("adam", "sgd")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
INITIALIZERS = (
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "random_normal",
)


MAX_NAME = 200  # characters of a recipe name (a folder name is at most 255 bytes)
MAX_BATCH = 2 ** 24  # examples per batch: far beyond any machine, well within what TensorFlow indexes
MAX_ITERATIONS = 2 ** 40
MAX_ROUNDS = 1000  # pruning rounds: at the smallest useful rate (1%) 1000 rounds leave 0.004% of the weights
MAX_TRIALS = 10000


class RecipeError(UsageError):
    """A recipe that cannot be run; the message names the key and the fix."""


def _require(ok: bool, key: str, allowed: str, value: Any):
    if not ok:
        raise RecipeError(f"recipe key '{key}': must be {allowed}, got {json.dumps(value)}")


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "mnist"
    path: Optional[str] = None
    validation_size: int = 5000
    data_dir: Optional[str] = None
    augment: bool = False
    image_key: str = "image"  # the features of a tfds: dataset (the text, for a text dataset)
    label_key: str = "label"
    vocabulary_size: int = 10000  # a tfds: text dataset's word ids: 0 padding, 1 unknown, the rest words
    sequence_length: int = 128  # a tfds: text dataset's ids per example (cut, or padded with 0)

    def check(self, key):
        _require(
            self.name in DATASETS + (PYTHON_DATA,)
            or (self.name.startswith(TFDS_PREFIX) and len(self.name) > len(TFDS_PREFIX)),
            f"{key}.name", f"one of {', '.join(DATASETS)} or tfds:NAME (a tensorflow-datasets name)", self.name,
        )
        tfds_name = self.name[len(TFDS_PREFIX):] if self.name.startswith(TFDS_PREFIX) else None
        if tfds_name is not None:  # e.g. fashion_mnist, mnist_corrupted/shot_noise, cifar10:3.0.2
            _require(
                re.fullmatch(r"[A-Za-z0-9_][\w.:/*-]*", tfds_name) is not None, f"{key}.name",
                "tfds:NAME with a tensorflow-datasets name such as tfds:fashion_mnist or tfds:mnist_corrupted/shot_noise",
                self.name,
            )
        for field_name, default in (("image_key", "image"), ("label_key", "label")):
            value = getattr(self, field_name)
            _require(bool(value.strip()), f"{key}.{field_name}", "the name of a feature of the tfds: dataset", value)
            if tfds_name is None and value != default:
                raise RecipeError(
                    f"recipe key '{key}.{field_name}': applies to tfds:NAME datasets only, got {json.dumps(value)} "
                    f"with name {json.dumps(self.name)}; remove it or set {key}.name to tfds:NAME"
                )
        for field_name, default in (("vocabulary_size", 10000), ("sequence_length", 128)):
            value = getattr(self, field_name)
            _require(isinstance(value, int) and not isinstance(value, bool) and value >= (3 if field_name[0] == "v" else 1),
                     f"{key}.{field_name}", "an integer >= 3" if field_name[0] == "v" else "an integer >= 1", value)
            if tfds_name is None and value != default:
                raise RecipeError(
                    f"recipe key '{key}.{field_name}': applies to tfds:NAME text datasets only, got {json.dumps(value)} "
                    f"with name {json.dumps(self.name)}; remove it or set {key}.name to tfds:NAME"
                )
        _require(self.image_key != self.label_key, f"{key}.label_key", "another feature than image_key", self.label_key)
        _require(self.validation_size >= 1, f"{key}.validation_size", "an integer >= 1", self.validation_size)
        if self.name == "npz":
            _require(self.path is not None, f"{key}.path", "a file path when name is 'npz'", self.path)
        # Whether the file exists is checked where data is loaded (:func:`load`, ``run``), not
        # here: a run's saved recipe must stay readable after its data file moved.

    def check_file(self, key="dataset"):
        """Refuse a ``path`` that is not a file (the data a run is about to load)."""
        if self.path is not None and not Path(self.path).is_file():
            raise RecipeError(
                f"data file not found: {self.path} (key '{key}.path'); pass --data PATH to a "
                "local .npz with x_train, y_train, x_test, y_test"
            )


@dataclass(frozen=True)
class ModelConfig:
    name: str = "lenet_300_100"
    initializer: str = "glorot_normal"
    dropout: float = 0.0
    hidden: Optional[tuple] = None
    vocabulary_size: Optional[int] = None  # the token ids a built-in text model (transformer) embeds
    options: dict = field(default_factory=dict)  # keyword arguments of a module:function model

    def check(self, key):
        if models.is_python_function(self.name):
            return  # recorded by keras_lottery.run; models.source asks for the function again
        if models.is_user_function(self.name):
            builtin_only = [f.name for f in dataclasses.fields(self) if f.name not in ("name", "options")
                            and getattr(self, f.name) != f.default]
            if builtin_only:
                raise RecipeError(
                    f"recipe key '{key}.{builtin_only[0]}': applies to the built-in models only; a "
                    f"module:function model gets every other key of '{key}' as a keyword argument, so "
                    f"rename it or pass it in '{key}.options'"
                )
            if "seed" in self.options:
                raise RecipeError(
                    f"recipe key '{key}.seed': keras-lottery passes each build's seed itself "
                    "(to the function's `seed` parameter); remove it"
                )
            return
        _require(
            self.name in models.BUILTIN, f"{key}.name",
            f"one of {', '.join(sorted(models.BUILTIN))}, or module:function naming your own", self.name,
        )
        _require(not self.options, f"{key}.options", "empty unless name is module:function", self.options)
        _require(self.initializer in INITIALIZERS, f"{key}.initializer", f"one of {', '.join(INITIALIZERS)}", self.initializer)
        _require(0.0 <= self.dropout < 1.0, f"{key}.dropout", "a number in [0, 1)", self.dropout)
        if self.hidden is not None:
            _require(
                len(self.hidden) > 0 and all(isinstance(h, int) and h >= 1 for h in self.hidden),
                f"{key}.hidden", "a non-empty list of integers >= 1", list(self.hidden),
            )
        text = self.name in models.TEXT_MODELS
        if text or self.vocabulary_size is not None:
            _require(text, f"{key}.vocabulary_size", f"unset unless name is one of {', '.join(models.TEXT_MODELS)}",
                     self.vocabulary_size)
            _require(isinstance(self.vocabulary_size, int) and not isinstance(self.vocabulary_size, bool)
                     and self.vocabulary_size >= 2, f"{key}.vocabulary_size",
                     "an integer >= 2 (the token ids the model embeds; a text dataset's dataset.vocabulary_size)",
                     self.vocabulary_size)


@dataclass(frozen=True)
class TrainingConfig:
    optimizer: str = "adam"
    learning_rate: float = 0.0012
    momentum: float = 0.0
    batch_size: int = 60
    iterations: int = 50000
    eval_every: int = 100
    eval_batch_size: int = 1000
    weight_decay: float = 0.0
    warmup_iterations: int = 0
    lr_drops: tuple = ()
    lr_drop_factor: float = 0.1
    checkpoint_every: Optional[int] = None  # iterations; None: about once a minute
    steps_per_execution: int = 1
    jit_compile: bool = False

    def check(self, key):
        _require(self.optimizer in OPTIMIZERS, f"{key}.optimizer", f"one of {', '.join(OPTIMIZERS)}", self.optimizer)
        _require(self.learning_rate > 0, f"{key}.learning_rate", "a number > 0", self.learning_rate)
        _require(0 <= self.momentum < 1, f"{key}.momentum", "a number in [0, 1)", self.momentum)
        for name in ("batch_size", "iterations", "eval_every", "eval_batch_size"):
            value = getattr(self, name)
            _require(value >= 1, f"{key}.{name}", "an integer >= 1", value)
        for name, most in (("batch_size", MAX_BATCH), ("eval_batch_size", MAX_BATCH), ("iterations", MAX_ITERATIONS)):
            value = getattr(self, name)
            _require(value <= most, f"{key}.{name}", f"an integer <= {most}", value)
        _require(self.weight_decay >= 0, f"{key}.weight_decay", "a number >= 0", self.weight_decay)
        _require(self.warmup_iterations >= 0, f"{key}.warmup_iterations", "an integer >= 0", self.warmup_iterations)
        _require(
            all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in self.lr_drops)
            and list(self.lr_drops) == sorted(set(self.lr_drops)),
            f"{key}.lr_drops", "a list of increasing iterations > 0", list(self.lr_drops),
        )
        _require(0 < self.lr_drop_factor <= 1, f"{key}.lr_drop_factor", "a number in (0, 1]", self.lr_drop_factor)
        if self.iterations % self.eval_every:
            raise RecipeError(
                f"recipe key '{key}.eval_every': must divide training.iterations "
                f"({self.iterations}), got {self.eval_every}"
            )
        if self.checkpoint_every is not None:
            _require(self.checkpoint_every >= 1, f"{key}.checkpoint_every", "an integer >= 1 (or null: about once a minute)", self.checkpoint_every)
            _require(
                self.checkpoint_every % self.eval_every == 0, f"{key}.checkpoint_every",
                f"a multiple of training.eval_every ({self.eval_every}), since checkpoints are taken after an evaluation",
                self.checkpoint_every,
            )
        if self.optimizer != "sgd" and self.momentum:
            raise RecipeError(
                f"recipe key '{key}.momentum': applies to optimizer 'sgd' only, got {json.dumps(self.momentum)} "
                f"with '{self.optimizer}'; remove it or set {key}.optimizer to \"sgd\""
            )
        _require(self.steps_per_execution >= 1, f"{key}.steps_per_execution", "an integer >= 1", self.steps_per_execution)


@dataclass(frozen=True)
class PruningConfig:
    method: str = "iterative"
    scope: str = "layerwise"
    rates: dict = field(default_factory=lambda: {"dense": 0.2, "output": 0.1})
    rounds: int = 19
    include: tuple = ()  # layer names or regular expressions: prune only these
    exclude: tuple = ()  # layer names or regular expressions: never prune these
    criterion: str = criteria.DEFAULT
    # "unstructured", or a block shape [rows, cols] pruned whole (keras_lottery.pruning.blocks)
    structure: typing.Union[str, tuple] = blocks.UNSTRUCTURED
    # Pruning at initialization (method "at_init", keras_lottery.lottery.rounds):
    # the fraction of weights the last round keeps (levels spaced geometrically), or the
    # fraction of each pruned round; None: each round keeps what the rates leave.
    target_weights: typing.Optional[typing.Union[float, tuple]] = None
    score_batch: Optional[int] = None  # training examples a data criterion scores; None: 10 x classes
    score_steps: Optional[int] = None  # scoring steps on the way to a sparsity; None: the criterion's

    def check(self, key):
        wrong = blocks.problem(self.structure)
        _require(wrong is None, f"{key}.structure", wrong, self.structure)
        _require(self.criterion in criteria.REGISTRY, f"{key}.criterion", f"one of {', '.join(criteria.names())}", self.criterion)
        for name in ("include", "exclude"):
            for pattern in getattr(self, name):
                _require(isinstance(pattern, str) and pattern, f"{key}.{name}", "a list of layer names or regular expressions", pattern)
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise RecipeError(f"recipe key '{key}.{name}': {pattern!r} is not a regular expression ({err})") from None
        _require(self.method in rounds.METHODS, f"{key}.method", " or ".join(f"'{m}'" for m in rounds.METHODS),
                 self.method)
        self.check_at_init(key)
        _require(self.scope in ("layerwise", "global"), f"{key}.scope", "'layerwise' or 'global'", self.scope)
        _require(len(self.rates) > 0, f"{key}.rates", f"a non-empty map from layer kind ({', '.join(LAYER_KINDS)}) to rate", self.rates)
        for kind, rate in self.rates.items():
            _require(kind in LAYER_KINDS, f"{key}.rates", f"keyed by layer kinds {', '.join(LAYER_KINDS)}", kind)
            _require(
                isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate < 1,
                f"{key}.rates.{kind}", "a fraction in (0, 1)", rate,
            )
        if self.scope == "global" and len(set(self.rates.values())) > 1 and self.target_weights is None:
            raise RecipeError(
                f"recipe key '{key}.rates': global pruning ranks all listed layers together, so "
                f"every rate must be the same, got {json.dumps(self.rates)}; use scope 'layerwise'"
            )
        _require(self.rounds >= 1, f"{key}.rounds", "an integer >= 1 (round 0 is the dense network)", self.rounds)
        _require(self.rounds <= MAX_ROUNDS, f"{key}.rounds", f"an integer <= {MAX_ROUNDS}", self.rounds)


    def check_at_init(self, key):
        """The keys of pruning at initialization: at_init only, and in range."""
        at_init = self.method == rounds.AT_INIT
        if criteria.at_init_only(self.criterion) and not at_init:
            raise RecipeError(
                f"recipe key '{key}.criterion': {json.dumps(self.criterion)} scores the network at initialization; "
                f"set {key}.method to \"{rounds.AT_INIT}\" or choose one of "
                f"{', '.join(n for n in criteria.names() if not criteria.at_init_only(n))}"
            )
        for name in ("target_weights", "score_batch", "score_steps"):
            if getattr(self, name) is not None and not at_init:
                raise RecipeError(
                    f"recipe key '{key}.{name}': applies to {key}.method \"{rounds.AT_INIT}\" only, got "
                    f"{json.dumps(to_jsonable(getattr(self, name)))} with \"{self.method}\"; "
                    "remove it or set the method"
                )
        for name in ("score_batch", "score_steps"):
            value = getattr(self, name)
            _require(value is None or 1 <= value <= MAX_BATCH, f"{key}.{name}",
                     f"null or an integer from 1 to {MAX_BATCH}", value)
        target = self.target_weights
        if isinstance(target, tuple):
            _require(
                len(target) >= 1 and all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < 1
                                         for t in target) and list(target) == sorted(set(target), reverse=True),
                f"{key}.target_weights", "a fraction in (0, 1) or a list of decreasing fractions in (0, 1)",
                list(target),
            )
            _require(self.rounds <= len(target) + 1, f"{key}.rounds",
                     f"at most {len(target) + 1} (the dense round and one per target_weights level)", self.rounds)
        elif target is not None:
            _require(0 < target < 1, f"{key}.target_weights", "a fraction in (0, 1) or a list of decreasing fractions",
                     target)


@dataclass(frozen=True)
class RewindConfig:
    iteration: int = 0
    mode: str = rewinding.DEFAULT

    def check(self, key):
        _require(self.mode in rewinding.REGISTRY, f"{key}.mode", f"one of {', '.join(rewinding.names())}", self.mode)
        _require(self.iteration >= 0, f"{key}.iteration", "an integer >= 0", self.iteration)


@dataclass(frozen=True)
class DistributeConfig:
    """How to spread training over devices; does not change results, so not hashed."""

    strategy: str = "default"
    devices: Optional[tuple] = None
    tpu: Optional[str] = None

    def check(self, key):
        _require(self.strategy in STRATEGIES, f"{key}.strategy", f"one of {', '.join(STRATEGIES)}", self.strategy)
        if self.devices is not None:
            _require(
                len(self.devices) > 0 and all(isinstance(d, str) and d for d in self.devices),
                f"{key}.devices", "null or a non-empty list of device names such as \"/gpu:0\"", list(self.devices),
            )
            _require(self.strategy == "mirrored", f"{key}.devices", "null unless strategy is 'mirrored'", list(self.devices))
        if self.tpu is not None:
            _require(self.strategy == "tpu", f"{key}.tpu", "null unless strategy is 'tpu'", self.tpu)


@dataclass(frozen=True)
class Recipe:
    name: str = "experiment"
    description: str = ""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    rewind: RewindConfig = field(default_factory=RewindConfig)
    distribute: DistributeConfig = field(default_factory=DistributeConfig)
    controls: tuple = variants.PAPER_CONTROLS
    trials: int = 1
    seed: int = 0
    # Which Keras runs the experiment (keras_lottery.flavours): tf_keras with tfmot's wrapper, or
    # Keras 3 (on the backend KERAS_BACKEND names) with keras-lottery's own masked wrapper.
    keras: str = flavours.DEFAULT

    def check(self):
        _require(
            bool(self.name) and all(c.isalnum() or c in "-_." for c in self.name),
            "name", "a non-empty name of letters, digits, '-', '_' or '.'", self.name,
        )
        _require(  # runs/<name>-<hash> must fit the file system's 255 bytes per name
            len(self.name) <= MAX_NAME, "name", f"a name of at most {MAX_NAME} characters", self.name,
        )
        for section in ("dataset", "model", "training", "pruning", "rewind", "distribute"):
            getattr(self, section).check(section)
        if self.model.name in models.TEXT_MODELS and self.dataset.name.startswith(TFDS_PREFIX):
            _require(
                self.model.vocabulary_size >= self.dataset.vocabulary_size, "model.vocabulary_size",
                f"at least dataset.vocabulary_size ({self.dataset.vocabulary_size}), the ids the data holds",
                self.model.vocabulary_size,
            )
        for control in self.controls:
            _require(control in variants.controls(), "controls", f"a list of {', '.join(variants.controls())}", control)
        _require(len(set(self.controls)) == len(self.controls), "controls", "a list without repeats", list(self.controls))
        _require(self.trials >= 1, "trials", "an integer >= 1", self.trials)
        _require(self.trials <= MAX_TRIALS, "trials", f"an integer <= {MAX_TRIALS}", self.trials)
        _require(self.seed >= 0, "seed", "an integer >= 0", self.seed)
        _require(self.keras in flavours.NAMES, "keras", f"one of {', '.join(flavours.NAMES)}", self.keras)
        _require(
            self.rewind.iteration < self.training.iterations, "rewind.iteration",
            f"an iteration before the end of training ({self.training.iterations})", self.rewind.iteration,
        )
        if self.pruning.method == rounds.AT_INIT and (self.rewind.mode != rewinding.DEFAULT or self.rewind.iteration):
            raise RecipeError(
                f"recipe key 'rewind': pruning.method \"{rounds.AT_INIT}\" trains each mask from θ0, so it needs "
                f"rewind.mode \"{rewinding.DEFAULT}\" and rewind.iteration 0, got "
                f"{json.dumps(to_jsonable(dataclasses.asdict(self.rewind)))}; "
                "remove the rewind section"
            )
        if self.rewind.iteration % self.training.eval_every:
            raise RecipeError(
                f"recipe key 'rewind.iteration': must be a multiple of training.eval_every "
                f"({self.training.eval_every}) because pruned rounds start training there, "
                f"got {self.rewind.iteration}; change one of them"
            )

    @property
    def variants(self):
        return (variants.TICKET,) + tuple(self.controls)

    def notes(self):
        """Settings of this recipe that are valid but never take effect, one sentence each
        (``keras-lottery run`` prints them): typically a schedule written for the full
        training length, run shorter with ``--set training.iterations=N``."""
        t = self.training
        found = []
        late = [drop for drop in t.lr_drops if drop >= t.iterations]
        if late:
            lie, happen = ("lie", "happen") if len(late) > 1 else ("lies", "happens")
            found.append(
                f"training.lr_drops {', '.join(map(str, late))} {lie} at or past the last iteration "
                f"({t.iterations}) and never {happen}"
            )
        if t.warmup_iterations and t.warmup_iterations >= t.iterations:
            found.append(
                f"training.warmup_iterations {t.warmup_iterations} is at or past the last iteration "
                f"({t.iterations}): the warmup never ends, so the learning rate never reaches "
                f"training.learning_rate ({t.learning_rate:g})"
            )
        return found

    def to_dict(self):
        return to_jsonable(dataclasses.asdict(self))

    def short_hash(self, data_fingerprint=None, model_fingerprint=None):
        """The hash naming this recipe's run directory (see :mod:`keras_lottery.config.identity`)."""
        from keras_lottery.config import identity

        return identity.short_hash(self, data_fingerprint, model_fingerprint)


def _type_name(tp):
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             dict: "an object", tuple: "a list"}
    return names.get(tp, str(tp))


def _coerce(value, tp, key):
    """Check ``value`` against the annotation ``tp``; return the value to store."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X], or one of several types (the first that fits)
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and type(None) in typing.get_args(tp):
            return None
        if len(args) == 1:
            return _coerce(value, args[0], key)
        for arg in args:
            try:
                return _coerce(value, arg, key)
            except RecipeError:
                pass
        raise RecipeError(
            f"recipe key '{key}': must be {' or '.join(_type_name(a) for a in args)}, got {json.dumps(value)}"
        )
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RecipeError(f"recipe key '{key}': must be an object, got {json.dumps(value)}")
        return _build(tp, value, key)
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        dict: lambda v: isinstance(v, dict),
        tuple: lambda v: isinstance(v, list),
    }[tp](value)
    if not ok:
        raise RecipeError(f"recipe key '{key}': must be {_type_name(tp)}, got {json.dumps(value)}")
    if tp is float and not math.isfinite(value):
        raise RecipeError(f"recipe key '{key}': must be a finite number, got {value}")
    if tp is float:
        return float(value)
    if tp is tuple:
        return tuple(value)
    return value


EXTENDS = "extends"  # the top-level key of a recipe file naming the recipe it builds on


def unknown_key(path: str, allowed) -> RecipeError:
    """The error for the dotted key ``path`` whose last part is not one of ``allowed``:
    it suggests the closest allowed key, if one is close, and lists them all."""
    parent, _, key = path.rpartition(".")
    if path == EXTENDS:
        return RecipeError(
            "recipe key 'extends': only a recipe file may extend another (it is resolved when "
            "the file is read); pass the file, or write the recipe out in full"
        )
    listed = ", ".join(allowed)
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    if not close:
        close = [name for name in allowed if name.lower() == key.lower()]
    if close:
        suggestion = f"{parent}.{close[0]}" if parent else close[0]
        return RecipeError(f"unknown recipe key '{path}': did you mean '{suggestion}'? (allowed keys are {listed})")
    return RecipeError(f"unknown recipe key '{path}': allowed keys are {listed}")


def _fold_model_options(cls, data):
    """A ``module:function`` model's section: keys that are not ModelConfig fields are its
    function's keyword arguments, kept in ``options``."""
    if cls is not ModelConfig or not isinstance(data, dict) or not models.is_user_function(str(data.get("name", ""))):
        return data
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    extra = {key: value for key, value in data.items() if key not in names}
    if not extra:
        return data
    folded = {key: value for key, value in data.items() if key in names}
    options = folded.get("options")
    folded["options"] = {**(options if isinstance(options, dict) else {}), **extra}
    return folded


def check_keys(data: dict, cls=None, prefix: str = "", extra=()):
    """Refuse the first key of ``data``, at any depth of its sections, that ``cls`` (default
    :class:`Recipe`) does not have; ``extra`` are further keys allowed at this level.
    Values are not checked here, so an unknown key is reported before anything else."""
    cls = cls or Recipe
    data = _fold_model_options(cls, data)
    hints = typing.get_type_hints(cls)
    allowed = [*(f.name for f in dataclasses.fields(cls)), *extra]
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if key in extra:
            continue
        if key not in hints:
            raise unknown_key(path, allowed)
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            check_keys(value, hints[key], path)


def _build(cls, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    data = _fold_model_options(cls, data)
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in hints:
            raise unknown_key(path, [f.name for f in dataclasses.fields(cls)])
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def parse(data: dict) -> Recipe:
    """Build and check a recipe from a JSON object (``extends`` already resolved)."""
    if not isinstance(data, dict):
        raise RecipeError("a recipe must be a JSON object at the top level")
    check_keys(data)
    recipe = _build(Recipe, data)
    recipe.check()
    return recipe


def read(path) -> dict:
    """Read a recipe file as a JSON object with its ``extends`` chain resolved: each file's
    keys are checked (an unknown key is refused here, naming the closest known key), then
    each file is merged onto the recipe it extends (:func:`merge`). Values are checked
    later, by :func:`parse`."""
    return _read_extending(Path(path), ())


def merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` applied: objects are merged key by key, at any depth;
    every other value (a number, a string, a list, null) replaces the base's."""
    result = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


MAX_EXTENDS = 64  # files in one extends chain: far more than any family of recipes needs


def _read_extending(path: Path, chain: tuple) -> dict:
    """Read ``path``, which the files of ``chain`` extend (the first is the file asked for)."""
    if len(chain) >= MAX_EXTENDS:
        raise RecipeError(
            f"recipe {chain[0]}: its chain of 'extends' is longer than {MAX_EXTENDS} files (it reaches {path}); "
            "shorten it by writing out in full a recipe it extends"
        )
    data = _read_json(path)
    try:
        check_keys(data, extra=(EXTENDS,))
    except RecipeError as err:
        if not chain:
            raise
        raise RecipeError(f"recipe {path} (extended by {chain[-1]}): {err}") from None
    if EXTENDS not in data:
        return data
    base = data.pop(EXTENDS)
    base_path = _extended_path(base, path)
    files = (*chain, path)
    resolved = [p.resolve() for p in files]
    if base_path.resolve() in resolved:
        loop = " -> ".join(str(p) for p in (*files[resolved.index(base_path.resolve()):], base_path))
        raise RecipeError(f"recipes extend each other in a cycle: {loop}; remove one of these 'extends'")
    inherited = _read_extending(base_path, files)
    model, base_model = data.get("model"), inherited.get("model")
    if isinstance(model, dict) and isinstance(base_model, dict) and model.get("name", base_model.get("name")) != \
            base_model.get("name"):
        inherited = {key: value for key, value in inherited.items() if key != "model"}  # another model's arguments
    return merge(inherited, data)


def _extended_path(base, path: Path) -> Path:
    """The file named by the ``extends`` value ``base`` of recipe file ``path``."""
    from keras_lottery.config import catalog

    if not isinstance(base, str) or not base.strip():
        raise RecipeError(
            f"recipe {path}: key 'extends' must be a shipped recipe name such as \"vgg19_cifar10\" "
            f"or a path to a .json file, got {json.dumps(base)}"
        )
    if base.endswith(".json") or "/" in base or os.sep in base:
        found = path.parent / base  # an absolute base stays absolute
        if not found.is_file():
            raise RecipeError(
                f"recipe {path} extends {base!r}, but {found} is not a file; a path is relative to "
                f"the folder of the recipe that extends ({path.parent})"
            )
        return found
    shipped = catalog.shipped_paths()
    if base not in shipped:
        raise RecipeError(
            f"recipe {path} extends {base!r}, which is not a shipped recipe ({', '.join(shipped)}); "
            "to extend a file, give its path ending in .json"
        )
    return shipped[base]


def _read_json(path: Path) -> dict:
    """One recipe file as a JSON object, exactly as written."""
    if not path.is_file():
        raise RecipeError(
            f"recipe file not found: {path}; pass a recipe file or a shipped recipe name "
            "such as quickstart_digits (`keras-lottery recipes` lists them)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_repeated_keys)
    except json.JSONDecodeError as err:
        raise RecipeError(f"recipe file {path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except UnicodeDecodeError:
        raise RecipeError(f"recipe file {path} is not a UTF-8 text file; a recipe is a JSON object") from None
    except RecipeError as err:
        raise RecipeError(f"recipe file {path}: {err}") from None
    except RecursionError:
        raise RecipeError(f"recipe file {path} is nested too deeply to read; a recipe is a shallow JSON object") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe file {path} must hold a JSON object")
    return data


def _no_repeated_keys(pairs):
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise RecipeError(f"key '{repeated[0]}' is set twice in one object; keep one value")
    return dict(pairs)


REQUIRED = ("name", "dataset", "model", "training", "pruning")


def require_sections(data: dict, source):
    """A recipe file states its experiment: name, dataset, model, training and pruning."""
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise RecipeError(
            f"recipe {source} lacks section '{missing[0]}' (required: {', '.join(REQUIRED)}); "
            "copy it from `keras-lottery recipes show quickstart_digits`, or extend a recipe that has it"
        )


def set_value(data: dict, assignment: str) -> dict:
    """Apply one ``key.path=JSON_VALUE`` override to a raw recipe object."""
    if "=" not in assignment:
        raise RecipeError(f"--set {assignment!r}: expected key.path=JSON_VALUE, e.g. training.iterations=2000")
    path, _, text = assignment.partition("=")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text  # a bare word such as mnist is taken as a string
    except RecursionError:
        raise RecipeError(f"--set {path}: the value is nested too deeply; recipe values are shallow JSON") from None
    keys = path.strip().split(".")
    node = data
    cls = Recipe
    for depth, key in enumerate(keys):
        hints = typing.get_type_hints(cls) if cls else {}
        if cls is not None and key not in hints:
            raise RecipeError(f"--set: {unknown_key('.'.join(keys[: depth + 1]), list(hints))}")
        if depth == len(keys) - 1:
            node[key] = value
            break
        tp = hints.get(key) if cls else None
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise RecipeError(f"--set: recipe key '{'.'.join(keys[:depth + 1])}' is not an object")
        cls = tp if tp is not None and dataclasses.is_dataclass(tp) else None
    return data


def load(path, overrides=(), data_path=None, rounds=None, trials=None) -> Recipe:
    """Read, override and check a recipe file the way ``keras-lottery run`` does (a shipped
    recipe's name is turned into its file by :func:`keras_lottery.config.catalog.find`)."""
    data = read(path)
    for assignment in overrides:
        set_value(data, assignment)
    if data_path is not None:
        dataset = data.setdefault("dataset", {})
        if not isinstance(dataset, dict):
            raise RecipeError("recipe key 'dataset': must be an object")
        dataset["path"] = str(data_path)
    if rounds is not None:
        data.setdefault("pruning", {})["rounds"] = rounds
    if trials is not None:
        data["trials"] = trials
    require_sections(data, path)
    recipe = parse(data)
    recipe.dataset.check_file()
    if recipe.dataset.path is not None:  # saved absolute: the run no longer depends on the working directory
        recipe = dataclasses.replace(
            recipe, dataset=dataclasses.replace(recipe.dataset, path=os.path.abspath(recipe.dataset.path))
        )
    return recipe
