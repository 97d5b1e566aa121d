"""Reports: the paper's tables and figures from the results files of run directories.

``write(run_dirs, out)`` reads each run's ``results.json`` (or ``results.csv``) and
its ``curve.csv`` files and writes into ``out``:

- ``report.md``: per run, the dense network (round 0); per variant, % of weights
  remaining against early-stop iteration and test accuracy at early stop (mean, min
  and max over trials); per round, whether the ticket beats the dense network and
  each control;
- the PNG figures of :mod:`keras_lottery.plots`.

It also (re)writes the run's TensorBoard summaries that are derived from finished
rounds (:func:`keras_lottery.summaries.write_rounds` and ``write_weights``).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from keras_lottery import results
from keras_lottery.lottery import rounds as sequence, variants
from keras_lottery.pruning import criteria
from keras_lottery.rundir import integrity, layout, storage
from keras_lottery.errors import UsageError

TICKET = variants.TICKET
CURVE_COUNT = 5  # rounds drawn in the training-curve figure unless chosen
AT_INIT_FIGURE = "at_init.png"


class ReportError(UsageError):
    """A run directory without results, or report options that do not fit the runs."""


@dataclass
class Stat:
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, values):
        values = np.asarray(values, dtype=float)
        return cls(float(values.mean()), float(values.min()), float(values.max()))


@dataclass
class Point:
    """One round of one variant: its sparsity and statistics over trials."""

    round: int
    remaining: float
    trials: int
    iteration: Stat
    accuracy: Stat
    start: Optional[Stat] = None  # test accuracy before training; None for rows written before it was recorded


@dataclass
class Run:
    """The results of one run directory."""

    path: Path
    rows: list
    recipe: dict = field(default_factory=dict)
    label: str = ""
    failed: list = field(default_factory=list)  # rows of variants whose training diverged

    @property
    def name(self):
        return self.recipe.get("name") or self.path.name

    @property
    def variants(self):
        present = {row["variant"] for row in self.rows}
        return [variant for variant in variants.names() if variant in present]

    @property
    def rounds(self):
        return sorted({row["round"] for row in self.rows if row["variant"] == TICKET})

    def point(self, round_index, variant):
        """Statistics of ``variant`` in ``round_index`` (round 0 is the dense network for
        every variant), or None when that round has no finished trial."""
        variant = TICKET if round_index == 0 else variant
        found = [r for r in self.rows if r["round"] == round_index and r["variant"] == variant]
        if not found:
            return None
        return Point(
            round=round_index,
            remaining=float(np.mean([r["weights_remaining"] for r in found])),
            trials=len(found),
            iteration=Stat.of([r["early_stop_iteration"] for r in found]),
            accuracy=Stat.of([r["early_stop_test_accuracy"] for r in found]),
            start=_start_stat(found),
        )

    def series(self, variant, dense=True):
        """Points of ``variant`` by round; with ``dense`` the dense round 0 starts the series."""
        points = [self.point(r, variant) for r in self.rounds if dense or r > 0]
        return [p for p in points if p is not None]

    def curve(self, round_index, variant):
        """Test accuracy against iteration for one round: (iterations, mean, min, max) over
        the trials whose curve.csv exists, or None."""
        variant = TICKET if round_index == 0 else variant
        curves = []
        for trial in sorted({row["trial"] for row in self.rows}):
            path = layout.curve(self.path, trial, round_index, variant)
            if path.is_file():
                rows = integrity.check_curve(path)  # one line naming a damaged file
                curves.append(([int(r["iteration"]) for r in rows], [float(r["test_accuracy"]) for r in rows]))
        if not curves:
            return None
        length = min(len(iterations) for iterations, _ in curves)
        values = np.array([accuracy[:length] for _, accuracy in curves])
        return np.array(curves[0][0][:length]), values.mean(0), values.min(0), values.max(0)


def _start_stat(rows):
    """Start accuracy over the rows that recorded one (older rows did not)."""
    values = [r.get("start_test_accuracy") for r in rows]
    values = [v for v in values if v is not None]
    return Stat.of(values) if values else None


def load_run(path):
    """Read one run directory's results (results.json, else results.csv)."""
    path = Path(path)
    if layout.results_json(path).is_file():
        try:
            rows = storage.read_json(layout.results_json(path))
        except json.JSONDecodeError as err:
            raise ReportError(
                f"{layout.results_json(path)} is not valid JSON ({err.msg}); rerun keras-lottery run to rewrite it"
            ) from None
        except (UnicodeDecodeError, RecursionError) as err:
            raise ReportError(
                f"{layout.results_json(path)} is unreadable ({type(err).__name__}); rerun keras-lottery run to rewrite it"
            ) from None
    elif layout.results_csv(path).is_file():
        try:
            rows = storage.read_csv(layout.results_csv(path))
        except (UnicodeDecodeError, ValueError) as err:
            raise ReportError(f"{layout.results_csv(path)} is unreadable ({type(err).__name__}); "
                              "rerun keras-lottery run to rewrite it") from None
    else:
        raise ReportError(
            f"{path} has no results.json or results.csv: pass a keras-lottery run directory "
            "with at least one finished round"
        )
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ReportError(f"{path}: the results file is not a list of result rows; rerun keras-lottery run to rewrite it")
    try:
        rows = [results.typed(row) for row in rows]
    except results.RowError as err:
        raise ReportError(f"{path}: malformed results rows ({err}); rerun keras-lottery run to rewrite them") from None
    failed = [row for row in rows if results.status(row) == results.FAILED]
    rows = [row for row in rows if results.status(row) != results.FAILED]
    if not any(row["round"] == 0 and row["variant"] == TICKET for row in rows):
        if any(row["round"] == 0 and row["variant"] == TICKET for row in failed):
            error = next(r.get("error") for r in failed if r["round"] == 0 and r["variant"] == TICKET)
            raise ReportError(
                f"{path}: the dense network (round 0) failed ({error}), so there is nothing to compare; "
                "change the recipe (e.g. a lower training.learning_rate) and run it again"
            )
        raise ReportError(f"{path}: the dense network (round 0) has not finished yet; nothing to report")
    recipe = integrity.read_json(layout.recipe_file(path)) if layout.recipe_file(path).is_file() else {}
    if not isinstance(recipe, dict):
        raise ReportError(f"{layout.recipe_file(path)} is damaged: not a JSON object; restore it")
    return Run(path=path, rows=rows, recipe=recipe, failed=failed)


IGNORED_KEYS = ("name", "description", "controls", "trials", "dataset.path", "dataset.data_dir")


def _flat(data, prefix=""):
    items = {}
    for key, value in data.items():
        if isinstance(value, dict) and value and key != "rates":
            items.update(_flat(value, f"{prefix}{key}."))
        else:
            items[f"{prefix}{key}"] = json.dumps(value, sort_keys=True).strip('"')
    return items


def _differences(runs):
    """Per run, the recipe fields that differ between runs, e.g. 'method=oneshot'."""
    flat = [_flat(run.recipe) for run in runs]
    keys = sorted(set().union(*flat) - set(IGNORED_KEYS))
    differing = [k for k in keys if len({f.get(k) for f in flat}) > 1]
    if len(differing) > 3:  # too long for a legend
        return [""] * len(runs)
    return [", ".join(f"{k.split('.')[-1]}={f.get(k, '-')}" for k in differing) for f in flat]


def load_runs(paths):
    """Load runs and label them: by recipe name; when names repeat, by the recipe fields
    that differ (e.g. 'method=oneshot'); else by directory."""
    runs = [load_run(p) for p in paths]
    candidates = (
        lambda: [run.name for run in runs],
        lambda: _differences(runs),
        lambda: [run.path.name for run in runs],
        lambda: [str(run.path) for run in runs],
    )
    for candidate in candidates:
        labels = candidate()
        if all(labels) and len(set(labels)) == len(labels):
            break
    for run, label in zip(runs, labels):
        run.label = label
    return runs


def curve_rounds(runs, chosen=None):
    """Rounds for the training-curve figure: ``chosen`` (checked), else up to
    CURVE_COUNT rounds spread from the dense network to the sparsest finished round."""
    available = sorted(set().union(*(run.rounds for run in runs)))
    if chosen:
        missing = sorted(set(chosen) - set(available))
        if missing:
            raise ReportError(
                f"--curve-rounds {','.join(map(str, missing))}: no finished round with that number; "
                f"finished rounds are {','.join(map(str, available))}"
            )
        return sorted(set(chosen))
    picks = np.linspace(0, len(available) - 1, min(CURVE_COUNT, len(available)))
    return sorted({available[int(round(i))] for i in picks})


# ---- report.md ------------------------------------------------------------------------


def _pct(value):
    return f"{value:.1f}"


def _acc(stat):
    return f"{stat.mean:.4f} | {stat.min:.4f} | {stat.max:.4f}"


def _iters(stat):
    return f"{stat.mean:.0f} | {stat.min:.0f} | {stat.max:.0f}"


def _describe(recipe):
    if not recipe:
        return ""
    pruning, training = recipe.get("pruning", {}), recipe.get("training", {})
    if pruning.get("target_weights") is None:
        rates = ", ".join(f"{k} {v:.0%}" for k, v in pruning.get("rates", {}).items()) + " per round"
    else:
        rates = "to " + sequence.describe_levels(pruning["target_weights"], pruning["rounds"])
    return (
        f"Recipe {recipe.get('name')}: {recipe.get('model', {}).get('name')} on {recipe.get('dataset', {}).get('name')}; "
        f"{pruning.get('method')} {pruning.get('scope')} pruning ({rates}), "
        f"{training.get('optimizer')} lr {training.get('learning_rate')}, "
        f"{training.get('iterations')} iterations per round, rewind to iteration "
        f"{recipe.get('rewind', {}).get('iteration', 0)}, {recipe.get('trials', 1)} trial(s)"
    )


STAT_HEADER = (
    "ES iteration mean | ES iter min | ES iter max | ES test acc mean | acc min | acc max | start test acc (before training)"
)
STAT_ALIGN = "---:|" * 7


def _start(point):
    return "-" if point.start is None else f"{point.start.mean:.4f}"


def variant_table(run, variant):
    lines = [
        f"| round | % weights remaining | trials | {STAT_HEADER} |",
        "|---:|---:|---:|" + STAT_ALIGN,
    ]
    for p in run.series(variant, dense=False):
        lines.append(
            f"| {p.round} | {_pct(p.remaining)} | {p.trials} | {_iters(p.iteration)} | {_acc(p.accuracy)} | {_start(p)} |"
        )
    return "\n".join(lines)


def _versus(ticket, other):
    if other is None:
        return "-"
    delta = 100 * (ticket.accuracy.mean - other.accuracy.mean)
    verdict = "tie" if abs(delta) < 1e-9 else "yes" if delta > 0 else "no"
    return f"{verdict} ({delta:+.2f} pp)"


def _earlier(ticket, other):
    if other is None:
        return "-"
    mine, theirs = ticket.iteration.mean, other.iteration.mean
    verdict = "tie" if mine == theirs else "yes" if mine < theirs else "no"
    return f"{verdict} ({mine:.0f} vs {theirs:.0f})"


def comparison_table(run):
    """Per pruned round: does the ticket's mean test accuracy at early stop beat the dense
    network's and each control's, and does it stop earlier?"""
    controls = [v for v in run.variants if v != TICKET]
    others = ["dense"] + controls
    lines = [
        "| round | % weights remaining | ticket ES test acc | "
        + " | ".join(f"beats {o} (acc)" for o in others) + " | "
        + " | ".join(f"earlier ES than {o}" for o in others) + " |",
        "|---:|---:|---:|" + ":--|" * (2 * len(others)),
    ]
    dense = run.point(0, TICKET)
    for round_index in run.rounds:
        ticket = run.point(round_index, TICKET)
        if round_index == 0 or ticket is None:
            continue
        compared = [dense] + [run.point(round_index, c) for c in controls]
        lines.append(
            f"| {round_index} | {_pct(ticket.remaining)} | {ticket.accuracy.mean:.4f} | "
            + " | ".join(_versus(ticket, o) for o in compared) + " | "
            + " | ".join(_earlier(ticket, o) for o in compared) + " |"
        )
    return "\n".join(lines)


def cost_table(run):
    """Per round of the ticket: % of weights and of multiply-accumulates remaining (mean over
    trials; computed from the masks for rows made before ``flops_remaining`` was recorded),
    and the size of the exported ticket of the first trial that finished the round, as
    stored densely, gzip-compressed, as bitmask plus values and as indices plus values
    (:mod:`keras_lottery.costs`). None when the run's model cannot be rebuilt."""
    from keras_lottery import costs, export

    try:
        recipe = export.read_recipe(run.path)
        positions = costs.positions(export.build(run.path, recipe))
    except (UsageError, OSError, ValueError, KeyError, TypeError):
        return None
    lines = [
        "| round | % weights remaining | % multiply-accumulates remaining | MACs per example | dense | gzip | "
        "bitmask + values | indices + values |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for round_index in run.rounds:
        found = [r for r in run.rows if r["round"] == round_index and r["variant"] == TICKET]
        flops = [r["flops_remaining"] for r in found if r.get("flops_remaining") is not None]
        trial = min(r["trial"] for r in found)
        try:
            cost = export.costs_of(run.path, round_index, trial, positions=positions)
        except (UsageError, OSError, ValueError, KeyError):
            cost = None
        if not flops and cost is not None:
            flops = [cost["flops_remaining"]]
        shown = f"{np.mean(flops):.1f}" if flops else "-"
        if cost is None:
            lines.append(f"| {round_index} | {_pct(np.mean([r['weights_remaining'] for r in found]))} | {shown} | "
                         "- | - | - | - | - |")
            continue
        sizes = cost["sizes"]
        lines.append(
            f"| {round_index} | {_pct(np.mean([r['weights_remaining'] for r in found]))} | {shown} | "
            f"{cost['macs']:,} | " + " | ".join(costs.human(sizes[k]) for k in costs.SIZE_KINDS) + " |"
        )
    return "\n".join(lines)


def _deployment(run_dir):
    """The section of ``export --format tflite --benchmark`` (:mod:`keras_lottery.export_tflite`), or None."""
    from keras_lottery.rundir import layout

    if not layout.export_benchmark(run_dir).is_file():
        return None
    from keras_lottery import export_tflite

    return export_tflite.section(run_dir)


def markdown(runs, figures, out=Path(".")):
    """The report text for ``runs`` written into ``out``; ``figures`` maps a caption to
    a PNG file name."""
    from keras_lottery import analyses

    lines = ["# Lottery ticket report", ""]
    lines.append(
        "ES = early stop: the evaluation with the lowest validation loss. Accuracy is test accuracy "
        "at early stop. Mean, min and max are over trials. pp = percentage points. Start test acc: the "
        "network a variant starts from, evaluated before any update (mean over trials; - where not recorded)."
    )
    for run in runs:
        lines += ["", f"## {run.label}", "", f"Run directory: `{run.path}`"]
        description = _describe(run.recipe)
        if description:
            lines += ["", description + "."]
        dense = run.point(0, TICKET)
        lines += [
            "", "### Dense network (round 0)", "",
            f"| % weights remaining | trials | {STAT_HEADER} |",
            "|---:|---:|" + STAT_ALIGN,
            f"| {_pct(dense.remaining)} | {dense.trials} | {_iters(dense.iteration)} | {_acc(dense.accuracy)} | "
            f"{_start(dense)} |",
        ]
        if len(run.rounds) < 2:
            lines += ["", "No pruned round has finished yet."]
            continue
        for variant in run.variants:
            lines += ["", f"### {variant}", "", variant_table(run, variant)]
        lines += ["", "### Does the ticket win?", "", comparison_table(run)]
        costs_text = cost_table(run)
        if costs_text:
            lines += [
                "", "### What the ticket costs", "",
                "Multiply-accumulates of one forward pass of the masked network (kernels only; a conv weight counts "
                "once per output position), as % of the dense network's. Sizes of the exported ticket (trained "
                "weights, first trial; every weight array as float32): dense; gzip-compressed npz; a bitmask per "
                "masked kernel plus its kept values; flat indices (uint16/uint32) plus values.",
                "", costs_text,
            ]
        if run.failed:
            lines += ["", "### Failed (left out of the tables and figures)", "",
                      "| trial | round | variant | error |", "|---:|---:|:--|:--|"]
            lines += [f"| {r['trial']} | {r['round']} | {r['variant']} | {r.get('error', '')} |" for r in run.failed]
        for name, text in analyses.sections(run.path, out):
            lines += ["", f"### Analysis: {name}", "", text]
        deployed = _deployment(run.path)
        if deployed:
            lines += ["", "### Deployed with LiteRT", "", deployed]
    if at_init_runs(runs):
        lines += [
            "", "## Pruning at initialization and its ablations", "",
            "Test accuracy at early stop (mean over trials) of each method at each sparsity and of its ablations "
            "(Frankle et al. 2021): layer shuffle (random_prune: the mask permuted within each layer), reinit "
            "(random_reinit: the mask, weights drawn afresh) and inverted (the criterion's lowest-ranked weights "
            "at the same per-layer counts). IMP is the lottery ticket (pruned after training).",
            "", at_init_table(runs),
        ]
    if figures:
        lines += ["", "## Figures", ""]
        for caption, name in figures.items():
            lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    return "\n".join(lines).rstrip() + "\n"


# ---- pruning at initialization ----------------------------------------------------------


def method_of(run):
    """What a run prunes with, as the comparison of pruning at initialization names it: the
    criterion at initialization, else the IMP ticket (its criterion when not the paper's)."""
    pruning = run.recipe.get("pruning", {})
    criterion = pruning.get("criterion", criteria.DEFAULT)
    if pruning.get("method") == sequence.AT_INIT:
        return criterion
    return "IMP" if criterion == criteria.DEFAULT else f"IMP ({criterion})"


def ablation_label(run, variant):
    """A line of the at-init figure: the method (its ticket) or the ablation's name."""
    return method_of(run) if variant == TICKET else variants.ABLATIONS.get(variant, variants.get(variant).label)


def is_reference(run):
    """Whether ``run`` is drawn beside every method of the at-init figure: the IMP ticket
    (pruned after training) or random pruning at initialization."""
    pruning = run.recipe.get("pruning", {})
    criterion = pruning.get("criterion", criteria.DEFAULT)
    return pruning.get("method") != sequence.AT_INIT or (
        criterion in criteria.REGISTRY and criteria.needs(criterion) == criteria.SEED)


def at_init_runs(runs):
    """Whether any of ``runs`` prunes at initialization."""
    return any(run.recipe.get("pruning", {}).get("method") == sequence.AT_INIT for run in runs)


def at_init_table(runs):
    """Test accuracy at early stop (mean over trials) of every method at each of its
    sparsities, beside its ablations (- where a run has not trained one)."""
    ablations = list(variants.ABLATIONS)
    lines = ["| method | % weights | ticket | " + " | ".join(variants.ABLATIONS[a] for a in ablations) + " |",
             "|:--|---:|---:|" + "---:|" * len(ablations)]
    for run in runs:
        for round_index in run.rounds:
            ticket = run.point(round_index, TICKET)
            if round_index == 0 or ticket is None:
                continue
            cells = []
            for ablation in ablations:
                point = run.point(round_index, ablation) if ablation in run.variants else None
                cells.append("-" if point is None else f"{point.accuracy.mean:.4f}")
            lines.append(f"| {method_of(run)} | {_pct(ticket.remaining)} | {ticket.accuracy.mean:.4f} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- everything -----------------------------------------------------------------------


def default_out(run_dirs, out=None):
    """``out`` if given; RUN_DIR/report for one run; several runs need an explicit out."""
    if out:
        return Path(out)
    if len(run_dirs) == 1:
        return layout.report_dir(run_dirs[0])
    raise ReportError("several run directories: pass --out DIR for the comparison report")


def reported_runs(report_file):
    """The run directories (resolved) an earlier report.md reports on, or None."""
    try:
        text = Path(report_file).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    marker = "Run directory: `"
    return {str(Path(line[len(marker):].rstrip("`")).resolve()) for line in text.splitlines() if line.startswith(marker)}


def check_out(run_dirs, out, force=False):
    """Refuse a non-empty ``out`` unless it holds an earlier report of the same runs (or ``force``)."""
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} exists and is not a folder; choose another --out")
    if force or not out.is_dir() or not any(out.iterdir()):
        return
    if reported_runs(out / "report.md") == {str(Path(p).resolve()) for p in run_dirs}:
        return  # rebuilding the same report
    raise ReportError(
        f"--out {out} is not empty and does not hold a report of these runs; choose a new or empty folder, "
        "or pass --force to write over it"
    )


def write(run_dirs, out=None, chosen_rounds=None, tensorboard=None, force=False):
    """Write report.md and the figures for ``run_dirs`` into ``out``; return report.md's path.

    Run directories are only read, except that the report of one run into its own
    ``report/`` folder also rewrites the run's derived TensorBoard summaries (``tensorboard``
    None); an ``out`` elsewhere never writes into a run directory."""
    from keras_lottery.reporting import plots, summaries
    from keras_lottery.rundir import safety

    if tensorboard is None:
        tensorboard = not out or all(Path(out).resolve() == layout.report_dir(p).resolve() for p in run_dirs)
    for path in run_dirs:
        if tensorboard or (out and safety.inside(path, out)):  # writing into this run directory
            safety.check(path)
    own = not out and len(run_dirs) == 1  # the run's own report folder is always rebuilt
    out = default_out(run_dirs, out)
    check_out(run_dirs, out, force or own)
    runs = load_runs(run_dirs)
    rounds = curve_rounds(runs, chosen_rounds)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "Early-stop iteration vs % weights remaining": plots.early_stop_iteration(runs, out / "early_stop_iteration.png"),
        "Test accuracy at early stop vs % weights remaining": plots.test_accuracy(runs, out / "test_accuracy.png"),
        "Test accuracy before training vs % weights remaining": plots.start_accuracy(runs, out / "start_accuracy.png"),
        "Test accuracy during training, selected rounds": plots.training_curves(runs, rounds, out / "training_curves.png"),
    }
    if at_init_runs(runs):
        figures["Pruning at initialization and its ablations: test accuracy vs % weights remaining"] = \
            plots.at_init(runs, out / AT_INIT_FIGURE, method_of, ablation_label, [r for r in runs if is_reference(r)])
    figures = {caption: path.name for caption, path in figures.items() if path is not None}
    report = out / "report.md"
    storage.write_text(report, markdown(runs, figures, out))
    if tensorboard:
        for run in runs:
            summaries.write_rounds(run.path, run.rows)
            summaries.write_weights(run.path, run.recipe)
    return report
