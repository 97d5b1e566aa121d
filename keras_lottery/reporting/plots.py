"""Figures like the paper's, drawn with matplotlib's Agg backend (no display needed).

- early-stop iteration vs % weights remaining (the paper's Figures 1 and 4, left);
- test accuracy at early stop vs % weights remaining, ticket and controls with min/max
  bars over trials (Figure 4, middle);
- test accuracy vs training iteration for chosen rounds (Figure 3);
- test accuracy before training vs % weights remaining (for a ticket masked by
  ``large_final_same_sign`` from θ0, the supermask of Zhou et al. 2019);
- pruning at initialization: every method (run) and its ablations on one axis.

The % weights remaining axis is logarithmic and decreases from left to right, so
pruning proceeds to the right as in the paper. Several runs share one figure: each
run has its own colour and each variant its own line style and marker.
"""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from keras_lottery.lottery import variants

MIN_TICK_RATIO = 1.25  # neighbouring tick labels on the log axis at least this far apart


def _colour(index):
    return f"C{index % 10}"


def _save(figure, path):
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=120)
    return path


def remaining_axis(axis, values):
    """Log axis of % weights remaining, 100 on the left, ticks at the rounds' values."""
    axis.set_xscale("log")
    positive = [value for value in values if value > 0] or [100.0]  # 0% has no place on a log axis
    ticks = []
    for value in sorted(set(np.round(positive, 1)), reverse=True):
        if value > 0 and (not ticks or ticks[-1] / value >= MIN_TICK_RATIO):
            ticks.append(value)
    axis.xaxis.set_major_locator(FixedLocator(ticks))
    axis.xaxis.set_minor_locator(NullLocator())
    axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}" if v >= 99.95 else f"{v:.1f}"))
    high, low = max(positive), min(positive)
    axis.set_xlim(high * 1.08, low / 1.08)  # decreasing from left to right
    axis.set_xlabel("% of weights remaining (log scale)")
    axis.grid(True, which="major", alpha=0.3)


def _by_remaining(runs, path, value, ylabel, title, label_of=None):
    """One line per run and variant of ``value(point)`` (a Stat, or None where the point
    has no such value); None when no point has one. ``label_of(run, variant)`` names a
    line (default: the variant's label, after the run's when there are several)."""
    several = len(runs) > 1
    figure = Figure(figsize=(7.5, 4.8))
    axis = figure.add_subplot()
    remaining = []
    for index, run in enumerate(runs):
        for number, variant in enumerate(run.variants):
            points = [p for p in run.series(variant) if value(p) is not None]
            if not points:
                continue
            stats = [value(p) for p in points]
            x = np.array([p.remaining for p in points])
            mean = np.array([s.mean for s in stats])
            errors = np.array([[s.mean - s.min for s in stats], [s.max - s.mean for s in stats]])
            style = variants.get(variant).style
            label = variants.get(variant).label
            if label_of is not None:
                label = label_of(run, variant)
            elif several:
                label = f"{run.label}: {label}"
            axis.errorbar(
                x, mean, yerr=errors, capsize=3, markersize=5, linewidth=1.4,
                color=_colour(index if several else number), label=label, **style,
            )
            remaining.extend(x)
    if not remaining:
        return None
    remaining_axis(axis, remaining)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def early_stop_iteration(runs, path):
    return _by_remaining(
        runs, path, lambda p: p.iteration, "early-stop iteration",
        "Early-stop iteration (lowest validation loss) vs sparsity",
    )


def test_accuracy(runs, path):
    return _by_remaining(
        runs, path, lambda p: p.accuracy, "test accuracy at early stop",
        "Test accuracy at early stop vs sparsity (bars: min/max over trials)",
    )


def start_accuracy(runs, path):
    """Test accuracy of the network each variant starts from, before any update; None
    when no run recorded it."""
    return _by_remaining(
        runs, path, lambda p: p.start, "test accuracy before training",
        "Test accuracy before training vs sparsity (bars: min/max over trials)",
    )


def at_init(runs, path, title_of, label_of, references=()):
    """Pruning at initialization judged by its ablations (Frankle et al. 2021): one panel per
    run (method), test accuracy at early stop vs % weights remaining of its ticket and each
    ablation, with the tickets of the ``references`` (the IMP ticket, random pruning) in
    grey on the same axes. ``title_of(run)`` names a panel, ``label_of(run, variant)`` a line."""
    columns = min(3, len(runs))
    rows = -(-len(runs) // columns)
    figure = Figure(figsize=(4.4 * columns, 3.6 * rows))
    drawn = False
    for index, run in enumerate(runs):
        axis = figure.add_subplot(rows, columns, index + 1)
        remaining = []
        for number, reference in enumerate(r for r in references if r is not run):
            points = reference.series(variants.TICKET)
            x = [p.remaining for p in points]
            axis.plot(x, [p.accuracy.mean for p in points], color=f"{0.25 + 0.25 * (number % 3):.2f}",
                      linewidth=1.0, marker=".", label=f"{title_of(reference)} (reference)")
            remaining.extend(x)
        for number, variant in enumerate(run.variants):
            points = run.series(variant)
            if not points:
                continue
            stats = [p.accuracy for p in points]
            x = np.array([p.remaining for p in points])
            mean = np.array([s.mean for s in stats])
            errors = np.array([[s.mean - s.min for s in stats], [s.max - s.mean for s in stats]])
            axis.errorbar(x, mean, yerr=errors, capsize=2, markersize=4, linewidth=1.3, color=_colour(number),
                          label=label_of(run, variant), **variants.get(variant).style)
            remaining.extend(x)
            drawn = True
        remaining_axis(axis, remaining)
        axis.set_title(title_of(run), fontsize=10)
        axis.set_ylabel("test accuracy at early stop", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.xaxis.label.set_size(8)
        axis.legend(fontsize=6)
    if not drawn:
        return None
    figure.suptitle("Pruning at initialization and its ablations (bars: min/max over trials)", fontsize=11)
    figure.tight_layout()
    return _save(figure, path)


def training_curves(runs, rounds, path):
    """Test accuracy vs iteration: one row of panels per run, one panel per variant,
    one line per chosen round (mean over trials, min/max band when trials > 1)."""
    columns = max(len(run.variants) for run in runs)
    figure = Figure(figsize=(4.2 * columns, 3.6 * len(runs)))
    axes = figure.subplots(len(runs), columns, squeeze=False, sharey=True)
    colours = {r: f"C{i % 10}" for i, r in enumerate(rounds)}
    low, high = [], []
    for row, run in enumerate(runs):
        for column in range(columns):
            axis = axes[row][column]
            if column >= len(run.variants):
                axis.set_visible(False)
                continue
            variant = run.variants[column]
            for round_index in rounds:
                curve = run.curve(round_index, variant)
                point = run.point(round_index, variant)
                if curve is None or point is None:
                    continue
                iterations, mean, lowest, highest = curve
                axis.plot(iterations, mean, color=colours[round_index], linewidth=1.3,
                          label=f"round {round_index}: {point.remaining:.1f}%")
                if point.trials > 1:
                    axis.fill_between(iterations, lowest, highest, color=colours[round_index], alpha=0.15)
                tail = iterations >= iterations[-1] * 0.2  # the paper's zoom: skip the first steps
                low.append(lowest[tail].min())
                high.append(highest.max())
            title = variants.get(variant).label
            axis.set_title(f"{run.label}: {title}" if len(runs) > 1 else title, fontsize=10)
            axis.set_xlabel("training iteration")
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=7, loc="lower right")
        axes[row][0].set_ylabel("test accuracy")
    if low:
        margin = 0.05 * max(max(high) - min(low), 0.01)
        axes[0][0].set_ylim(min(low) - margin, min(1.0, max(high) + margin))
    figure.tight_layout()
    return _save(figure, path)
