"""Export a ticket as a SavedModel without pruning wrappers, masked weights exactly zero."""

import json
from pathlib import Path

from keras_lottery import masking, models, results
from keras_lottery.config.recipe import parse
from keras_lottery.lottery import rounds, variants
from keras_lottery.rundir import layout, storage
from keras_lottery.errors import UsageError


class ExportError(UsageError):
    """A run, round or variant that cannot be exported."""


def build(run_dir, recipe, seed=0):
    """The run's model, unwrapped, with initial weights fixed by ``seed``.

    The package's models are built from the recipe; a model of the user's own from the
    architecture the run saved in ``model.json``.
    """
    from keras_lottery.backend import keras

    saved = storage.read_json(layout.model_file(run_dir))
    if recipe.model.name in models.BUILTIN or "architecture" not in saved:
        return models.source(recipe.model, saved["input_shape"], saved["num_classes"]).build(seed)
    keras.utils.set_random_seed(seed)
    try:
        return keras.models.model_from_json(json.dumps(saved["architecture"]))
    except (ValueError, TypeError, KeyError) as err:
        raise ExportError(
            f"cannot rebuild the model saved in {layout.model_file(run_dir)} ({err}); "
            "export it from Python with the function that built it"
        ) from None


def ticket_weights(run_dir, round_index, trial=0, variant=variants.TICKET, weights="trained"):
    """The weights to export: trained (after the round) or init (m ⊙ the weights it started from)."""
    run_dir = Path(run_dir)
    recipe = parse(storage.read_json(layout.recipe_file(run_dir)))
    folder = layout.variant_dir(run_dir, trial, round_index, variant)
    if not layout.is_finished(run_dir, trial, round_index, variant):
        raise ExportError(
            f"{folder} is not a finished round; pick a finished --round/--trial/--variant "
            f"(see {layout.results_csv(run_dir)})"
        )
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
        values[f"{layer}/kernel"] = values[f"{layer}/kernel"] * mask
    return recipe, values


def export(run_dir, round_index, out, trial=0, variant=variants.TICKET, weights="trained"):
    """Write a SavedModel of one trial/round/variant to ``out``; return the Keras model."""
    recipe, values = ticket_weights(run_dir, round_index, trial, variant, weights)
    model = build(run_dir, recipe)
    masking.set_weights(model, values)
    model.save(str(out), save_format="tf")
    return model

