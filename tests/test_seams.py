"""The seams: a new control, criterion or analysis is one registered object.

Each test registers its object (for the test only) and checks that the recipe
validator, the run, the results, the report and the command line pick it up without
any other change; the last tests check that no other module spells out the names the
registries and the run-directory layout own.
"""

import re
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, TINY, merge
from keras_lottery import analyses, results
from keras_lottery.analyses import Analysis
from keras_lottery.cli import main
from keras_lottery.config import recipe as recipes
from keras_lottery.lottery import rewinding, variants
from keras_lottery.pruning import criteria
from keras_lottery.rundir import layout, storage

SMALL = merge(TINY, {"training": {"iterations": 40}, "pruning": {"rounds": 2}})


class Halved(variants.Variant):
    """A control for the test: the ticket's mask, every weight at half its rewound value."""

    name = "halved"
    label = "halved weights"
    style = {"linestyle": "-.", "marker": "D"}

    def start_weights(self, round_):
        return {key: value * 0.5 for key, value in round_.rewound_weights().items()}


@pytest.fixture
def halved(monkeypatch):
    monkeypatch.setitem(variants.REGISTRY, Halved.name, Halved())
    return Halved.name


def test_a_registered_control_is_validated_trained_reported_and_exported(tmp_path, halved):
    from keras_lottery import export, lottery
    from keras_lottery.reporting import report

    with pytest.raises(recipes.RecipeError, match="halved"):  # listed among the allowed controls
        recipes.parse(merge(SMALL, {"controls": ["nonexistent"]}))
    recipe = recipes.parse(merge(SMALL, {"controls": [halved]}))
    run_dir, rows = lottery.run(recipe, tmp_path / "run", log=lambda _: None)
    assert {(row["round"], row["variant"]) for row in rows} == {(0, "ticket"), (1, "ticket"), (1, halved)}
    assert all(results.status(row) == results.OK for row in rows)
    table = results.table(rows, recipe.variants)
    assert "halved ES iter" in table.splitlines()[0]
    # it trained the ticket's mask from half of θ0, as the one class says
    _, start = export.ticket_weights(run_dir, 1, variant=halved, weights="init")
    theta0 = storage.load_arrays(layout.init_weights(run_dir, 0))
    masks = storage.load_arrays(layout.mask(run_dir, 0, 1, halved))
    ticket_masks = storage.load_arrays(layout.mask(run_dir, 0, 1, "ticket"))
    for layer, mask in masks.items():
        assert np.array_equal(mask, ticket_masks[layer])
        assert np.array_equal(start[f"{layer}/kernel"], theta0[f"{layer}/kernel"] * 0.5 * mask)
    text = report.write([run_dir]).read_text()
    assert "### halved" in text and "beats halved" in text


@pytest.fixture
def smallest(monkeypatch):
    monkeypatch.setitem(criteria.REGISTRY, "test_small_final", lambda w_init, w_final: -np.abs(w_final))
    return "test_small_final"


def test_a_registered_criterion_chooses_the_mask(tmp_path, smallest):
    from keras_lottery import lottery

    recipe = recipes.parse(merge(SMALL, {"controls": [], "pruning": {"criterion": smallest}}))
    run_dir, _ = lottery.run(recipe, tmp_path / "run", log=lambda _: None)
    trained = storage.load_arrays(layout.final(run_dir, 0, 0, "ticket"))
    masks = storage.load_arrays(layout.mask(run_dir, 0, 1, "ticket"))
    for layer, mask in masks.items():
        magnitude = np.abs(trained[f"{layer}/kernel"])
        kept, pruned = magnitude[mask == 1], magnitude[mask == 0]
        assert kept.max() <= pruned.min()  # the smallest trained weights survive
    with pytest.raises(recipes.RecipeError, match="pruning.criterion"):
        recipes.parse(merge(SMALL, {"pruning": {"criterion": "nonexistent"}}))


@dataclass(frozen=True)
class CountOptions:
    scale: float = 1.0
    label: str = "rows"


class CountRows(Analysis):
    """An analysis for the test: counts the finished rows of each variant, times ``scale``."""

    name = "test_count_rows"
    description = "count finished rows per variant"
    Options = CountOptions

    def run(self, run, options, folder, log):
        counts = {}
        for row in run.rows:
            counts[row["variant"]] = counts.get(row["variant"], 0) + options.scale
        storage.write_json(folder / "counts.json", counts)
        log(f"counted {len(run.rows)} {options.label}")

    def section(self, folder, link):
        counts = storage.read_json(folder / "counts.json")
        return f"counts: {counts} ([data]({link('counts.json')}))"


@pytest.fixture
def count_rows(monkeypatch):
    analyses.names()  # discover the package's own analyses first
    monkeypatch.setitem(analyses.REGISTRY, CountRows.name, CountRows())
    return CountRows.name


def test_a_registered_analysis_has_a_command_a_folder_and_a_report_section(tmp_path, count_rows):
    from keras_lottery import lottery

    recipe = recipes.parse(merge(SMALL, {"controls": ["random_reinit"]}))
    run_dir, _ = lottery.run(recipe, tmp_path / "run", log=lambda _: None)
    runner = CliRunner()
    result = runner.invoke(main, ["analyze", count_rows, str(run_dir), "--scale", "2", "--label", "variants"])
    assert result.exit_code == 0, result.output
    assert "counted 3 variants" in result.output
    folder = layout.analysis_dir(run_dir, count_rows)
    assert storage.read_json(folder / "counts.json") == {"ticket": 4.0, "random_reinit": 2.0}
    assert storage.read_json(folder / layout.ANALYSIS_OPTIONS) == {"scale": 2.0, "label": "variants"}

    result = runner.invoke(main, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    text = (layout.report_dir(run_dir) / "report.md").read_text()
    assert f"### Analysis: {count_rows}" in text
    assert "counts: {'ticket': 4.0, 'random_reinit': 2.0}" in text
    assert f"(../{layout.ANALYSES}/{count_rows}/counts.json)" in text  # links work from the report folder

    # other options would mix results in the same folder: refused, nothing changed
    result = runner.invoke(main, ["analyze", count_rows, str(run_dir), "--scale", "3"])
    assert result.exit_code == 2 and "other options" in result.output
    assert storage.read_json(folder / "counts.json") == {"ticket": 4.0, "random_reinit": 2.0}
    result = runner.invoke(main, ["analyze", count_rows, str(run_dir), "--scale", "many"])
    assert result.exit_code == 2
    with pytest.raises(analyses.AnalysisError, match="unknown option 'colour'"):
        analyses.analyze(count_rows, run_dir, {"colour": "red"})
    with pytest.raises(analyses.AnalysisError, match="no analysis named"):
        analyses.get("nonexistent")


def test_analysis_of_a_folder_that_is_not_a_run_is_refused(tmp_path, count_rows):
    result = CliRunner().invoke(main, ["analyze", count_rows, str(tmp_path)])
    assert result.exit_code == 2 and "not a keras-lottery run directory" in result.output
    assert not any(tmp_path.iterdir())


# ---- names live in one place ---------------------------------------------------------------

PACKAGE = ROOT / "keras_lottery"
OWNERS = {
    "variant": ({"lottery/variants.py"}, [f'"{name}"' for name in variants.names()]),
    "criterion": ({"pruning/criteria.py"}, [f'"{name}"' for name in criteria.names()]),
    # names that are also ordinary words or recipe keys ("weights", "learning_rate") are left out
    "rewinding mode": ({"lottery/rewinding.py"}, [
        f'"{name}"' for name in rewinding.names()
        if name != rewinding.DEFAULT and name not in {f.name for f in fields(recipes.TrainingConfig)}]),
    "run-directory file": (
        {"rundir/layout.py"},
        [f'"{getattr(layout, n)}"' for n in dir(layout) if n.isupper() and isinstance(getattr(layout, n), str)
         and "." in getattr(layout, n)] + ['"tensorboard"', '"checkpoints"'],
    ),
}


@pytest.mark.parametrize("kind", sorted(OWNERS))
def test_no_other_module_spells_out_names_a_registry_or_the_layout_owns(kind):
    owners, literals = OWNERS[kind]
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in owners:
            continue
        code = re.sub(r'""".*?"""', "", path.read_text(), flags=re.S)  # docstrings may explain
        offenders += [f"{relative}: {literal}" for literal in literals if literal in code]
    assert not offenders, f"{kind} names outside {owners}: {offenders}"


def test_every_rule_of_the_sequence_lives_in_rounds():
    # which variants a round trains, and which round a ticket is pruned from
    code = {p.relative_to(PACKAGE).as_posix(): p.read_text() for p in PACKAGE.rglob("*.py")}
    for pattern in (r"round_index\s*-\s*1", r"if round_index else", r"method\s*==\s*\"iterative\""):
        found = [name for name, text in code.items() if re.search(pattern, text) and name != "lottery/rounds.py"]
        assert not found, f"{pattern} outside lottery/rounds.py: {found}"


def test_recipe_defaults_do_not_change_the_hash_of_existing_recipes():
    """Every field left at its default is out of the identity: the shipped Lenet recipe,
    which is all defaults, has an empty recipe identity."""
    from keras_lottery.config import identity

    lenet = recipes.load(PACKAGE / "recipes" / "lenet300_mnist.json")
    assert identity.recipe_identity(lenet) == {}
    assert Path(PACKAGE / "recipes").is_dir()
