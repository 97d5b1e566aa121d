"""The recipe catalog: the recipes shipped with the package, listed without loading data.

The recipes are package data (``keras_lottery/recipes/*.json``, read through
:mod:`importlib.resources`), so an installed keras-lottery runs them by name from any
folder; in a source checkout the top-level ``recipes`` is a link to the same folder.

Each row names the recipe, its model and dataset, the model's kernel weight count on
the dataset's input shape (the count the paper reports) and a one-line description.
"""

import difflib
import importlib.resources
import json
import os
from pathlib import Path

from keras_lottery.config import recipe as recipes


# A pathlib.Path: pip installs packages as folders (a zipped package would not list here).
RECIPES_DIR = importlib.resources.files("keras_lottery") / "recipes"
# Input shape and classes of each named dataset, so models can be built without data.
DATASET_SHAPES = {"mnist": ((28, 28, 1), 10), "cifar10": ((32, 32, 3), 10), "digits": ((8, 8, 1), 10)}
TEXT_CLASSES = {"tfds:imdb_reviews": 2}  # text datasets: ids shaped (dataset.sequence_length,)


def dataset_shape(dataset):
    """``(input shape, classes)`` of a recipe's ``dataset`` section, known without its data, or None."""
    if dataset.name in DATASET_SHAPES:
        return DATASET_SHAPES[dataset.name]
    if dataset.name in TEXT_CLASSES:
        return (dataset.sequence_length,), TEXT_CLASSES[dataset.name]
    return None


def recipe_paths(directory=None):
    """The ``*.json`` recipe files of ``directory`` (default: the shipped recipes), by name."""
    directory = Path(directory) if directory else RECIPES_DIR
    if not isinstance(directory, Path) or not directory.is_dir():
        raise recipes.RecipeError(f"recipe folder not found: {directory}; pass --dir to the folder holding recipes")
    return sorted(directory.glob("*.json"))


def shipped_paths():
    """The shipped recipe files by name (the file name without .json)."""
    return {path.stem: path for path in recipe_paths()}


def find(name, directory=None):
    """The recipe file ``name`` stands for: an existing file, else the recipe of that name
    (with or without .json) in ``directory`` (default: the shipped recipes)."""
    path = Path(name)
    if path.is_file():
        return path
    paths = {p.stem: p for p in recipe_paths(directory)}
    if len(path.parts) == 1 and path.name.removesuffix(".json") in paths:
        return paths[path.name.removesuffix(".json")]
    if str(name).endswith(".json") or os.sep in str(name) or "/" in str(name):
        raise recipes.RecipeError(
            f"recipe file not found: {name}; pass a recipe file, or one of the names "
            f"{', '.join(paths)}"
        )
    close = difflib.get_close_matches(str(name), list(paths), n=1)
    listed = ", ".join(paths)
    problem = f"no recipe named {name!r} (it is not a file, nor a recipe `keras-lottery recipes` lists)"
    if close:
        raise recipes.RecipeError(f"{problem}: did you mean {close[0]!r}? (the recipes are {listed})")
    raise recipes.RecipeError(f"{problem}; the recipes are {listed}")


def headline(description):
    """The description up to its citation: the text before the first '): ', else all of it."""
    head, found, _ = description.partition("): ")
    return head + ")" if found else description


def kernel_weight_count(recipe):
    """The model's kernel weights on the dataset's input shape, or None for npz data and for a
    model of the user's own (listing recipes never runs the code they name)."""
    from keras_lottery import models

    if dataset_shape(recipe.dataset) is None or recipe.model.name not in models.BUILTIN:
        return None
    shape, classes = dataset_shape(recipe.dataset)
    return models.kernel_weight_count(models.build(recipe.model, shape, classes, seed=0))


def loaded(directory=None):
    """``(path, recipe)`` of every recipe file (shipped, or ``directory``'s); a file that does
    not parse is refused naming it."""
    for path in recipe_paths(directory):
        try:
            yield path, recipes.load(path)
        except recipes.RecipeError as err:
            raise recipes.RecipeError(f"{path}: {err}") from None


def rows(directory=None):
    """One dict per recipe file: name, model, dataset, weights, description."""
    counts = {}
    result = []
    for path, recipe in loaded(directory):
        key = json.dumps([recipe.model.name, recipe.model.hidden, recipe.dataset.name])
        if key not in counts:
            counts[key] = kernel_weight_count(recipe)
        result.append({
            "name": recipe.name, "model": recipe.model.name, "dataset": recipe.dataset.name,
            "weights": counts[key], "description": headline(recipe.description),
        })
    return result


def table(catalog_rows):
    """A plain-text table of :func:`rows`, one recipe per line."""
    header = ("recipe", "model", "dataset", "weights", "description")
    lines = [[r["name"], r["model"], r["dataset"], "?" if r["weights"] is None else f"{r['weights']:,}",
              r["description"]] for r in catalog_rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    fmt = lambda cells: "  ".join(  # noqa: E731
        str(c).rjust(w) if i == 3 else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
    ).rstrip()
    return "\n".join([fmt(header)] + [fmt(line) for line in lines])


def citation(description):
    """The paper, section and figure a recipe's description cites: the parenthesis that ends
    its :func:`headline` (e.g. ``Frankle & Carbin 2019, Section 2, Figures 1, 3 and 4``), or
    None when it cites nothing."""
    head = headline(description)
    if not head.endswith(")"):
        return None
    depth = 0
    for at in range(len(head) - 1, -1, -1):  # the "(" matching the final ")"
        depth += {")": 1, "(": -1}.get(head[at], 0)
        if depth == 0:
            return head[at + 1:-1]
    return None


def _settings(recipe):
    """The settings of a recipe that set experiments apart, in one line."""
    training, pruning = recipe.training, recipe.pruning
    schedule = f"{training.optimizer} {training.learning_rate:g}"
    if training.momentum:
        schedule += f" momentum {training.momentum:g}"
    if training.warmup_iterations:
        schedule += f", warmup {training.warmup_iterations:,}"
    if training.lr_drops:
        schedule += f", ×{training.lr_drop_factor:g} at {', '.join(f'{d:,}' for d in training.lr_drops)}"
    rates = ", ".join(f"{kind} {rate:.0%}" for kind, rate in pruning.rates.items())
    rewind = f"θ{recipe.rewind.iteration}" if recipe.rewind.iteration else "θ0"
    return (f"{schedule}, batch {training.batch_size}, {training.iterations:,} iterations; {pruning.method} "
            f"{pruning.scope} pruning ({rates} per round, criterion {pruning.criterion}), {pruning.rounds} rounds; "
            f"rewind: {recipe.rewind.mode} to {rewind}; controls: {', '.join(recipe.controls) or 'none'}; "
            f"{recipe.trials} trial{'s' if recipe.trials > 1 else ''}")


def markdown(directory=None):
    """The shipped recipes (or ``directory``'s) as Markdown: a table of every recipe with the
    paper, section and figure it reproduces, then one section per recipe with its description
    and settings. The documentation site's recipe page is built from it, so a new recipe file
    appears there without editing the documentation. TensorFlow-free."""
    found = []
    for path, recipe in loaded(directory):
        raw = json.loads(path.read_text())
        found.append((path.stem, recipe, raw.get("extends") if isinstance(raw, dict) else None))
    lines = ["| recipe | model | dataset | paper, section, figure |", "| --- | --- | --- | --- |"]
    for name, recipe, _ in found:
        cited = citation(recipe.description) or "-"
        lines.append(f"| [`{name}`](#{name}) | `{recipe.model.name}` | `{recipe.dataset.name}` | {cited} |")
    for name, recipe, extends in found:
        lines += ["", f"### `{name}`", "", recipe.description, ""]
        lines.append(f"- **Settings**: {_settings(recipe)}.")
        if extends:
            lines.append(f"- **Extends** `{extends}` and states only what differs.")
        lines += [f"- **Run it**: `keras-lottery run {name}`; print it resolved: `keras-lottery recipes show {name}`."]
    return "\n".join(lines) + "\n"
