"""The identity of an experiment: what names its run directory and guards it.

A run directory holds the results of one identity: the recipe fields that change
results, **and only those that differ from their defaults**, plus the fingerprint of
the data (:func:`keras_lottery.data.sources.fingerprint`). So

- adding a recipe field with a default keeps the hash of every recipe that leaves it
  at the default, and every existing run directory stays valid;
- fields that only add work (rounds, trials, controls), say where to train
  (``distribute``), how often to checkpoint, or that give bit-identical results
  (``steps_per_execution``) are not part of it: a rerun with other values continues
  (except ``pruning.rounds`` when one ``pruning.target_weights`` fraction is spaced over
  the rounds: then their number changes every level);
- the data is identified by its content, not by its file name: other data never
  resumes into a run directory, and the same data under another path is the same run.

Run directories made by keras-lottery 0.1.0 were named by a hash of every field (the
data file by its base name); :func:`legacy_hash` computes that name, so they are still
found and resumed.
"""

import copy
import dataclasses
import hashlib
import json
import os

# Fields that never change results (a dotted path, or a section name for all of it).
NOT_RESULTS = (
    "name", "description", "controls", "trials", "distribute",
    "pruning.rounds", "training.checkpoint_every", "training.steps_per_execution",
    "dataset.data_dir", "dataset.path",  # the data is identified by its fingerprint
)

# keras-lottery 0.1.0's identity of the default recipe (every field, sorted).
V010_DEFAULTS = {
    "dataset": {"augment": False, "name": "mnist", "path": None, "validation_size": 5000},
    "model": {"dropout": 0.0, "hidden": None, "initializer": "glorot_normal", "name": "lenet_300_100"},
    "pruning": {"method": "iterative", "rates": {"dense": 0.2, "output": 0.1}, "scope": "layerwise"},
    "rewind": {"iteration": 0},
    "seed": 0,
    "training": {
        "batch_size": 60, "eval_batch_size": 1000, "eval_every": 100, "iterations": 50000,
        "learning_rate": 0.0012, "lr_drop_factor": 0.1, "lr_drops": [], "momentum": 0.0, "optimizer": "adam",
        "warmup_iterations": 0, "weight_decay": 0.0,
    },
}
V010_OPTIONAL = {"training": {"jit_compile": False}}  # 0.1.0 kept it only when true


def to_jsonable(value):
    """``value`` with tuples as lists, at any depth (as JSON reads it back)."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def _non_default(obj):
    """The fields of a (nested) dataclass that differ from their defaults, as JSON values."""
    result = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            nested = _non_default(value)
            if nested:
                result[f.name] = nested
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if default is dataclasses.MISSING or to_jsonable(value) != to_jsonable(default):
            result[f.name] = to_jsonable(value)
    return result


def _drop(data, dotted):
    *parents, last = dotted.split(".")
    for key in parents:
        data = data.get(key, {})
    data.pop(last, None)


def recipe_identity(recipe):
    """The recipe fields that change results and differ from their defaults."""
    data = _non_default(recipe)
    for dotted in NOT_RESULTS:
        if dotted == "pruning.rounds" and isinstance(recipe.pruning.target_weights, (int, float)):
            continue  # one target_weights fraction is spaced over the rounds: their number changes every mask
        _drop(data, dotted)
    return {key: value for key, value in data.items() if value != {}}


def identity(recipe, data_fingerprint, model_fingerprint=None, backend=None):
    """The whole identity of a run: the recipe's part, the data's fingerprint, for a model
    of the user's own (whose code is not versioned with the package) a fingerprint of its
    architecture, and for Keras 3 (``recipe.keras``) the Keras backend it runs on
    (tf_keras runs on TensorFlow only: its identity has no backend, as before 0.3)."""
    found = {"recipe": recipe_identity(recipe), "data": data_fingerprint}
    if model_fingerprint is not None:
        found["model"] = model_fingerprint
    if backend is not None:
        found["backend"] = backend
    return found


def _hash(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]


def short_hash(recipe, data_fingerprint, model_fingerprint=None, backend=None):
    """Eight hex digits naming the run directory ``runs/<name>-<hash>``."""
    return _hash(identity(recipe, data_fingerprint, model_fingerprint, backend))


def legacy_identity(recipe):
    """keras-lottery 0.1.0's identity of ``recipe``, or None when the recipe uses a field
    (at a non-default value) that 0.1.0 did not have, so no 0.1.0 run can hold it."""
    changed = _non_default(recipe)
    for dotted in NOT_RESULTS:
        if dotted != "dataset.path":
            _drop(changed, dotted)
    result = copy.deepcopy(V010_DEFAULTS)
    for key, value in changed.items():
        if isinstance(value, dict):
            known = {**V010_DEFAULTS.get(key, {}), **V010_OPTIONAL.get(key, {})}
            if key not in V010_DEFAULTS or set(value) - set(known):
                return None
            result[key].update(value)
        elif key in V010_DEFAULTS:
            result[key] = value
        else:
            return None
    if result["dataset"]["path"]:
        result["dataset"]["path"] = os.path.basename(result["dataset"]["path"])
    return result


def legacy_hash(recipe):
    """The hash 0.1.0 gave ``recipe``'s run directory, or None (see :func:`legacy_identity`)."""
    found = legacy_identity(recipe)
    return None if found is None else _hash(found)
