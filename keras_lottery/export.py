"""Export a ticket without pruning wrappers, masked weights exactly zero.

On tf_keras: a SavedModel (``model.save(out, save_format="tf")``), loadable with
``tf.saved_model.load`` or ``tf_keras.models.load_model``. On Keras 3: ``out/model.keras``
(``keras.saving.load_model``) and, in ``out`` itself, a SavedModel of the forward pass
written by ``model.export`` (``tf.saved_model.load``; on the JAX backend through jax2tf).
"""

import json
from pathlib import Path

from keras_lottery import masking, models, results
from keras_lottery.config.recipe import parse
from keras_lottery.lottery import rounds, variants
from keras_lottery.pruning import units
from keras_lottery.rundir import integrity, layout, storage
from keras_lottery.errors import UsageError


KERAS_FILE = "model.keras"  # the Keras 3 model file inside --out
TFLITE_FILE = "model.tflite"  # the LiteRT model inside --out (keras_lottery.export_tflite)


class ExportError(UsageError):
    """A run, round or variant that cannot be exported."""


def build(run_dir, recipe, seed=0, model=None):
    """The run's model, unwrapped, with initial weights fixed by ``seed``.

    The package's models are built from the recipe; a model of the user's own from the
    architecture the run saved in ``model.json``: the function a recipe names is never
    called here (export, report and analyses never run the code a recipe names). Where
    Keras cannot rebuild that architecture (tf_keras and ConvNeXt, for one), ``model``, the
    function a Python caller built the run's model with (:meth:`keras_lottery.Result.export`
    passes the one given to ``keras_lottery.run``), builds it instead.
    """
    from keras_lottery.backend import keras

    saved = integrity.read_json(layout.model_file(run_dir))
    if not (isinstance(saved, dict) and isinstance(saved.get("input_shape"), (list, dict))
            and isinstance(saved.get("num_classes"), int)):
        raise integrity.DamagedFileError(
            f"{layout.model_file(run_dir)} is damaged: it lacks input_shape or num_classes; rerun keras-lottery run "
            "with the run's recipe to rewrite it"
        )
    if recipe.model.name in models.BUILTIN:
        return models.source(recipe.model, saved["input_shape"], saved["num_classes"]).build(seed)
    if "architecture" not in saved:  # never call the code a recipe names (docs/recipes-that-name-code.md)
        raise integrity.DamagedFileError(
            f"{layout.model_file(run_dir)} is damaged: it lacks the architecture of the model {recipe.model.name}; "
            "rerun keras-lottery run with the run's recipe to rewrite it"
        )
    keras.utils.set_random_seed(seed)
    try:
        return keras.models.model_from_json(json.dumps(saved["architecture"]))
    except (ValueError, TypeError, KeyError) as err:
        if callable(model):
            return models.source(model, saved["input_shape"], saved["num_classes"]).build(seed)
        raise ExportError(
            f"cannot rebuild the model saved in {layout.model_file(run_dir)} ({str(err).splitlines()[0]:.200}); "
            "export it from Python with the function that built it: "
            "keras_lottery.export_ticket(run_dir, round, out, model=build_model)"
        ) from None


def ticket_weights(run_dir, round_index, trial=0, variant=variants.TICKET, weights="trained"):
    """The weights to export: trained (after the round) or init (m ⊙ the weights it started from)."""
    run_dir = Path(run_dir)
    recipe = read_recipe(run_dir)
    folder = layout.variant_dir(run_dir, trial, round_index, variant)
    if not layout.is_finished(run_dir, trial, round_index, variant):
        finished = layout.results_csv(run_dir)
        see = f"see {finished}" if finished.is_file() else "no round has finished yet: run keras-lottery run first"
        raise ExportError(f"{folder} is not a finished round; pick a finished --round/--trial/--variant ({see})")
    integrity.check_variant(run_dir, trial, round_index, variant)  # the check run repairs by
    summary = storage.read_json(layout.summary(run_dir, trial, round_index, variant))
    if results.status(summary) == results.FAILED:
        raise ExportError(f"{folder} failed ({summary.get('error')}), so it has no trained weights; pick another --round")
    masks = storage.load_arrays(layout.mask(run_dir, trial, round_index, variant))
    if weights == "trained":
        values = storage.load_arrays(layout.final(run_dir, trial, round_index, variant))
    else:
        sizes = {name: int(mask.size) for name, mask in masks.items()}
        round_ = rounds.Round(
            recipe, run_dir, trial, round_index, dict.fromkeys(masks, 0.0), sizes,
            lambda seed: masking.get_weights(build(run_dir, recipe, seed)),
        )
        values = round_.plan(variant).weights
    for layer, mask in masks.items():
        key = units.weight_key(layer, values) if f"{layer}/kernel" in values or layer in values else None
        kernel = None if key is None else values[key]
        if kernel is None or kernel.shape != mask.shape:
            raise integrity.DamagedFileError(
                f"{layout.mask(run_dir, trial, round_index, variant)} does not fit the weights of layer {layer}; "
                "rerun keras-lottery run with the run's recipe to redo it, or restore the file"
            )
        values[key] = kernel * mask
    return recipe, values


def costs_of(run_dir, round_index, trial=0, variant=variants.TICKET, weights="trained", positions=None):
    """What one trial/round/variant costs (:mod:`keras_lottery.costs`): ``weights_remaining`` and
    ``flops_remaining`` (percent), ``macs`` and ``dense_macs`` of one forward pass of one example,
    and ``sizes`` (bytes of the exported weights stored dense, gzip-compressed, as bitmask plus
    values and as indices plus values). ``positions`` (:func:`keras_lottery.costs.positions`)
    saves building the model again."""
    from keras_lottery import costs

    recipe, values = ticket_weights(run_dir, round_index, trial, variant, weights)
    masks = storage.load_arrays(layout.mask(run_dir, trial, round_index, variant))
    if positions is None:
        positions = costs.positions(build(run_dir, recipe))
    sizes = {name: int(values[units.weight_key(name, values)].size) for name in positions}
    kept, dense = costs.macs(masks, sizes, positions)
    remaining = sum(int(masks[n].sum()) if n in masks else size for n, size in sizes.items())
    return {
        "weights_remaining": 100.0 * remaining / sum(sizes.values()),
        "flops_remaining": 100.0 * kept / dense, "macs": kept, "dense_macs": dense,
        "sizes": costs.sizes(values, masks),
    }


def describe_costs(found):
    """Lines saying what a ticket costs (``found`` from :func:`costs_of`)."""
    from keras_lottery.costs import human

    sizes = found["sizes"]
    return [
        f"weights remaining {found['weights_remaining']:.1f}%, multiply-accumulates remaining "
        f"{found['flops_remaining']:.1f}% ({found['macs']:,} of {found['dense_macs']:,} per example)",
        f"size: dense {human(sizes['dense'])}, gzip {human(sizes['gzip'])}, bitmask+values "
        f"{human(sizes['bitmask'])}, indices+values {human(sizes['indices'])}",
    ]


def read_recipe(run_dir):
    """The recipe a run saved (readable without its data file)."""
    path = layout.recipe_file(run_dir)
    if not path.is_file():
        raise ExportError(f"{run_dir} is not a keras-lottery run directory (no {layout.RECIPE}); pass a run directory")
    data = integrity.read_json(path)
    try:
        return parse(data)
    except (UsageError, AttributeError, TypeError) as err:
        raise integrity.DamagedFileError(f"{path} is not a readable recipe ({err}); restore the file") from None


def check_out(run_dir, out, force=False):
    """Refuse an ``--out`` inside the run directory or holding it, one below a file, or one
    that holds other files (unless ``force``)."""
    from keras_lottery.rundir import safety

    out = Path(out)
    if safety.inside(run_dir, out):
        raise ExportError(f"--out {out} is inside the run directory {run_dir}; export outside it")
    if safety.inside(out, run_dir):
        raise ExportError(f"--out {out} holds the run directory {run_dir}; export to a folder outside the run "
                          "that does not contain it")
    above = next((parent for parent in out.absolute().parents if parent.exists()), None)
    if not out.exists() and above is not None and not above.is_dir():
        raise ExportError(f"--out {out} is below {above}, which is a file, not a folder; choose another --out")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out} is not empty; choose an empty or new folder, or pass --force to write over it")


# What an export writes into --out (a SavedModel, model.keras on Keras 3, model.tflite): with --force,
# these are removed before writing, so no file of an earlier export stays beside the new one.
EXPORTED = ("saved_model.pb", "keras_metadata.pb", "fingerprint.pb", "variables", "assets", KERAS_FILE, TFLITE_FILE)
EXPORT_MARKERS = ("saved_model.pb", KERAS_FILE, TFLITE_FILE)  # a folder holding one of these holds an earlier export


def clear_earlier_export(out):
    """Remove what an earlier export wrote into ``out`` (:data:`EXPORTED`), and only that:
    other files stay, links are removed, never followed."""
    import shutil

    out = Path(out)
    if not out.is_dir() or not any((out / name).exists() for name in EXPORT_MARKERS):
        return
    for name in EXPORTED:
        path = out / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def written(out):
    """What :func:`export` writes into ``out`` on the Keras this process runs, and how to load it."""
    from keras_lottery.backend import BACKEND, LEGACY

    if LEGACY:
        return f"saved model in {out} (load it with tf.saved_model.load)"
    if BACKEND == "torch":
        return (f"{Path(out) / KERAS_FILE} (load it with keras.saving.load_model); no SavedModel: "
                f"{SAVED_MODEL_ON_TORCH}")
    return (f"saved model in {out} (load it with tf.saved_model.load) and {Path(out) / KERAS_FILE} "
            "(load it with keras.saving.load_model)")


SAVED_MODEL_ON_TORCH = ("a TensorFlow SavedModel is traced by TensorFlow, which cannot run a torch model; "
                        "export with KERAS_BACKEND=tensorflow (the same run directory) for one")


def _input_signature(model, input_shape):
    """The SavedModel's input signature when the model's inputs leave a dimension other
    than the batch open (e.g. keras-hub's sequence length, which JAX cannot export
    symbolically): each input at the shape the run's data had (``input_shape``, from
    ``model.json``). None when every dimension is known (Keras's own signature)."""
    from keras_lottery.backend import tf
    from keras_lottery.data import inputs
    from keras_lottery.models.builder import _input_names

    if input_shape is None or all(d is not None for t in model.inputs for d in tuple(t.shape)[1:]):
        return None
    shape = inputs.shape_of(input_shape)
    if isinstance(shape, dict):
        shapes = [shape.get(name) for name in _input_names(model)]
    elif inputs.several(shape):
        shapes = list(shape)
    else:
        shapes = [shape]
    if len(shapes) != len(model.inputs) or any(s is None for s in shapes):
        return None
    specs = [tf.TensorSpec((None, *s), getattr(t.dtype, "name", t.dtype), name=_input_names(model)[i])
             for i, (t, s) in enumerate(zip(model.inputs, shapes))]
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict):
        return [dict(zip(_input_names(model), specs))]
    return [specs if isinstance(struct, (list, tuple)) else specs[0]]


def save(model, out, input_shape=None):
    """Write ``model`` to the folder ``out`` as :func:`written` says (on the torch backend,
    ``model.keras`` only: a SavedModel needs the tensorflow backend). ``input_shape`` (the
    run's, from ``model.json``) fixes the SavedModel's inputs where the model leaves them open."""
    from keras_lottery.backend import BACKEND, LEGACY

    if LEGACY:
        model.save(str(out), save_format="tf")
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    if BACKEND == "torch":
        model.save(str(Path(out) / KERAS_FILE))
        return
    signature = _input_signature(model, input_shape)
    model.export(str(out), format="tf_saved_model", verbose=False,
                 **({} if signature is None else {"input_signature": signature}))
    model.save(str(Path(out) / KERAS_FILE))


def export(run_dir, round_index, out, trial=0, variant=variants.TICKET, weights="trained", force=False,
           model=None):
    """Write one trial/round/variant to ``out`` (see :func:`written`); return the Keras model.

    ``out`` must be outside the run directory and empty or new, unless ``force``. ``model``:
    see :func:`build`."""
    check_out(run_dir, out, force)
    model = ticket_model(run_dir, round_index, trial, variant, weights, model=model)
    if force:
        clear_earlier_export(out)
    saved = integrity.read_json(layout.model_file(run_dir))
    save(model, out, saved.get("input_shape") if isinstance(saved, dict) else None)
    return model


def ticket_model(run_dir, round_index, trial=0, variant=variants.TICKET, weights="trained", model=None):
    """The Keras model of one trial/round/variant (see :func:`ticket_weights`), unwrapped
    (``model``: see :func:`build`)."""
    recipe, values = ticket_weights(run_dir, round_index, trial, variant, weights)
    model = build(run_dir, recipe, model=model)
    shapes = {name: tuple(value.shape) for name, value in masking.get_weights(model).items()}
    wrong = [name for name, value in values.items() if name in shapes and tuple(value.shape) != shapes[name]]
    if wrong:
        raise integrity.DamagedFileError(
            f"{layout.variant_dir(run_dir, trial, round_index, variant)}: the saved weight {wrong[0]} is shaped "
            f"{tuple(values[wrong[0]].shape)} but the model's is {shapes[wrong[0]]}; the files were edited or mixed, "
            "rerun keras-lottery run with the run's recipe to redo them"
        )
    try:
        masking.set_weights(model, values)
    except ValueError as err:
        raise integrity.DamagedFileError(f"{layout.variant_dir(run_dir, trial, round_index, variant)}: {err}") from None
    return model

