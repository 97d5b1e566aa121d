"""Analyses of finished runs, as open_lth's branches: one registered object each.

An analysis reads a run directory's finished rounds and writes only into its own
folder, ``<run>/analyses/<name>/``. It has its own options (a dataclass whose fields
become ``keras-lottery analyze NAME RUN_DIR --option VALUE`` flags), and it adds a
section to the run's report. Adding one is one module in this package plus its tests::

    @dataclass(frozen=True)
    class Options:
        rounds: str = ""          # every field needs a default; int, float, str or bool

    @register
    class MyAnalysis(Analysis):
        name = "my_analysis"
        description = "one line for --help"
        Options = Options

        def run(self, run, options, folder, log):
            ...                    # read run.path / run.recipe / run.rows, write into folder

        def section(self, folder, link):
            return f"![figure]({link('figure.png')})"   # markdown for the report, or None

Modules of this package are imported (and so registered) on first use of the registry.
:func:`analyze` checks the options first (``check``, so a bad option is refused as such),
holds the run directory's lock while an analysis runs and saves its options in
``options.json``. An analysis that brings what its folder holds in line with new options
itself (recomputing what they change, adding what they extend: more rounds or rewind
points) sets ``adapts = True``; for any other, a folder holding the results of other
options is refused. An analysis resumes by skipping the work whose files already exist in
its folder (write them with :mod:`keras_lottery.rundir.storage`, atomically).
"""

import dataclasses
import importlib
import pkgutil
import typing
from dataclasses import dataclass
from pathlib import Path

from keras_lottery.registry import Registry
from keras_lottery.rundir import layout, storage
from keras_lottery.errors import UsageError

REGISTRY = Registry("analysis")



class AnalysisError(UsageError):
    """An analysis that cannot run: unknown name, bad options, or a run it cannot use."""


@dataclass(frozen=True)
class NoOptions:
    pass


@dataclass
class Run:
    """What an analysis reads: the run directory, its resolved recipe and results rows."""

    path: Path
    recipe: object
    rows: list


class Analysis:
    name = ""
    description = ""
    Options = NoOptions
    adapts = False  # True: run() reuses, recomputes or extends outputs of other options itself

    def check(self, run, options):
        """Refuse options that do not fit ``run`` (raise :class:`AnalysisError`). Called
        before the folder and its ``options.json`` are written, so a refused command leaves
        nothing behind and a corrected one is not refused as "other options"."""

    def run(self, run, options, folder, log):
        """Compute the analysis of ``run`` into ``folder``; skip what is already there."""
        raise NotImplementedError

    def section(self, folder, link):
        """The report's markdown for this analysis, or None. ``folder`` holds its outputs;
        ``link(file_name)`` is the path to one of them from the report's folder."""
        return None


register = REGISTRY.register_class  # class decorator: registers the analysis by its ``name``


def _discover():
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_discovered = False


def _registry():
    global _discovered
    if not _discovered:
        _discovered = True
        _discover()
    return REGISTRY


def names():
    return tuple(_registry())


def get(name):
    found = _registry().get(name)
    if found is None:
        known = ", ".join(names()) or "none registered"
        raise AnalysisError(f"no analysis named {name!r}; known analyses: {known}")
    return found


def option_fields(analysis):
    """``(name, type, default)`` of each option of ``analysis``."""
    hints = typing.get_type_hints(analysis.Options)
    return [(f.name, hints[f.name], f.default) for f in dataclasses.fields(analysis.Options)]


def parse_options(analysis, values):
    """``analysis.Options`` from a dict of values, refusing unknown names and wrong types."""
    fields = {name: kind for name, kind, _ in option_fields(analysis)}
    for key, value in values.items():
        if key not in fields:
            raise AnalysisError(
                f"analysis {analysis.name}: unknown option '{key}'; options are {', '.join(fields) or 'none'}"
            )
        kind = fields[key]
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise AnalysisError(f"analysis {analysis.name}: option '{key}' must be {kind.__name__}, got {value!r}")
    return analysis.Options(**values)


def folder(run_dir, name):
    return layout.analysis_dir(run_dir, name)


def _load_run(run_dir):
    from keras_lottery import results
    from keras_lottery.config.recipe import RecipeError, parse

    from keras_lottery.rundir import integrity

    run_dir = Path(run_dir)
    try:
        recipe = parse(integrity.read_json(layout.recipe_file(run_dir)))
    except FileNotFoundError:
        raise AnalysisError(f"{run_dir} is not a keras-lottery run directory (no {layout.RECIPE})") from None
    except (RecipeError, AttributeError, TypeError) as err:
        raise AnalysisError(f"{layout.recipe_file(run_dir)} is not a readable recipe ({err})") from None
    integrity.check_summaries(run_dir, recipe)  # the check run repairs by: one line naming a damaged file
    return Run(path=run_dir, recipe=recipe, rows=results.collect(run_dir, recipe))


def analyze(name, run_dir, values=None, log=print):
    """Run analysis ``name`` on ``run_dir`` with option ``values``; return its folder."""
    from keras_lottery.rundir import locking

    analysis = get(name)
    options = parse_options(analysis, dict(values or {}))
    run = _load_run(run_dir)
    out = folder(run.path, name)
    saved_options = out / layout.ANALYSIS_OPTIONS
    wanted = dataclasses.asdict(options)
    analysis.check(run, options)  # a bad option is refused as such, whatever the folder holds
    with locking.hold(run.path):
        if not analysis.adapts and saved_options.is_file() and storage.read_json(saved_options) != wanted:
            raise AnalysisError(
                f"{out} holds results of other options ({storage.read_json(saved_options)}); "
                f"rerun with those options, or remove {out} to start afresh"
            )
        out.mkdir(parents=True, exist_ok=True)
        storage.write_json(saved_options, wanted)
        analysis.run(run, options, out, log)
    return out


def sections(run_dir, report_dir):
    """``(name, markdown)`` of every analysis that has a folder in ``run_dir``, with links
    relative to ``report_dir``."""
    import os

    found = []
    for name in names():
        out = folder(run_dir, name)
        if out.is_dir():
            text = get(name).section(out, lambda file_name, out=out: os.path.relpath(out / file_name, report_dir))
            if text:
                found.append((name, text))
    return found
