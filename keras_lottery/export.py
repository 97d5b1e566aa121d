"""Export a ticket as a SavedModel without pruning wrappers, masked weights zero."""

from pathlib import Path

from keras_lottery import lottery, masking, models
from keras_lottery.rundir import storage
from keras_lottery.config.recipe import parse


class ExportError(ValueError):
    """A run, round or variant that cannot be exported."""


def ticket_weights(run_dir, round_index, trial=0, variant="ticket", weights="trained"):
    """The weights to export: trained (after the round) or init (m ⊙ θk, the ticket itself)."""
    run_dir = Path(run_dir)
    recipe = parse(storage.read_json(run_dir / "recipe.json"))
    out = storage.variant_dir(run_dir, trial, round_index, variant)
    if not storage.is_finished(run_dir, trial, round_index, variant):
        raise ExportError(
            f"{out} is not a finished round; pick a finished --round/--trial/--variant (see {run_dir}/results.csv)"
        )
    summary = storage.read_json(out / "summary.json")
    if summary.get("status") == "failed":
        raise ExportError(f"{out} failed ({summary.get('error')}), so it has no trained weights; pick another --round")
    masks = storage.load_arrays(out / "mask.npz")
    if weights == "trained":
        values = storage.load_arrays(out / "final.npz")
    else:
        values = lottery.start_weights(
            run_dir, recipe, trial, round_index, variant,
            lambda seed: masking.get_weights(build(run_dir, recipe, seed)),
        )
    for layer, mask in masks.items():
        values[f"{layer}/kernel"] = values[f"{layer}/kernel"] * mask
    return recipe, values


def build(run_dir, recipe, seed=0):
    shape = storage.read_json(Path(run_dir) / "model.json")
    return models.build(recipe.model, shape["input_shape"], shape["num_classes"], seed)


def export(run_dir, round_index, out, trial=0, variant="ticket", weights="trained"):
    """Write a SavedModel of one trial/round/variant to ``out``; return the Keras model."""
    recipe, values = ticket_weights(run_dir, round_index, trial, variant, weights)
    model = build(run_dir, recipe)
    masking.set_weights(model, values)
    model.save(str(out), save_format="tf")
    return model
