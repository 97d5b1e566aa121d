"""What pruning forgets (Hooker, Courville, Clark, Dauphin & Frome, 2019, "What Do Compressed
Deep Neural Networks Forget?"; Hooker et al. 2020, "Characterising Bias in Compressed Models").

Every variant trained by keras-lottery 0.2 or later stores the predicted class of every test
example at its early-stop iteration (``predictions.npz``), and the run stores the test labels
once (``test_labels.npz``). The *dense population* is round 0 of every trial; the *sparse
population* of a sparsity is the chosen variant (``--variant``, the ticket by default) of
one pruned round in every trial. For each pruned round this analysis writes
``round_<rr>.json``:

- per class, test accuracy of each population (mean over trials) and its change against the
  overall change: ``relative = Δ class accuracy − Δ overall accuracy``; the classes with the
  largest ``|relative|`` are the ones pruning treats most unequally;
- with 2 or more trials in each population, Welch's t-test per class on
  ``class accuracy − overall accuracy`` between the dense and the sparse trials (unequal
  variances; two-sided); classes with ``p < --alpha`` are marked significant;
- Pruning Identified Exemplars (PIEs): test examples whose most common prediction in the
  sparse population differs from the most common prediction in the dense population (ties
  go to the lower class), their count and their count per true class.

``summary.json`` collects the rounds, and ``pies.png`` shows up to ``--grid`` PIEs of the
sparsest round (true label, dense and sparse predictions). The images come from the run's
dataset, loaded again from its recipe; when it cannot be loaded or is not the data the run
trained on (its fingerprint in ``identity.json`` differs), the grid is left out with a note.

Rounds trained before 0.2 have no predictions; they are left out, with a note. A round file
is recomputed only when the trials it was made from, ``--variant`` or ``--alpha`` change, so a
killed analysis resumes and a call with other options reuses what they do not change.
"""

from dataclasses import dataclass

import numpy as np

from keras_lottery import results
from keras_lottery.analyses import Analysis, AnalysisError, register
from keras_lottery.lottery import variants
from keras_lottery.rundir import integrity, layout, storage

SUMMARY = "forgetting.json"
GRID = "pies.png"
GRID_INFO = "pies.json"
OLD = "no predictions stored for rounds made before 0.2"


MAX_TOP = 1000  # classes listed per sparsity: more than any classification dataset's table can show
MAX_GRID = 400  # PIE images in the grid: a larger figure is unreadable (and slow to draw)


@dataclass(frozen=True)
class Options:
    variant: str = variants.TICKET  # the sparse population
    alpha: float = 0.05  # significance level of Welch's t-test
    top: int = 3  # classes listed per sparsity
    grid: int = 24  # PIE images in the grid (0: none)


def round_file(folder, round_index):
    return folder / f"{layout.round_name(round_index)}.json"


# ---- statistics (pure numpy) ---------------------------------------------------------------


def welch(a, b):
    """Welch's unequal-variance t-test of samples ``a`` and ``b`` along axis 0 (two-sided).

    Returns ``(t, p)``, NaN where both samples have no variance (as scipy does)."""
    from scipy.special import stdtr

    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = len(a), len(b)
    va, vb = a.var(0, ddof=1) / na, b.var(0, ddof=1) / nb
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (a.mean(0) - b.mean(0)) / np.sqrt(va + vb)
        df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
        p = 2 * stdtr(df, -np.abs(t))
    return t, p


def modal(predictions, num_classes):
    """The most common prediction per example over a population (rows: trials); ties go to
    the lower class."""
    predictions = np.asarray(predictions, np.int64)
    counts = np.zeros((predictions.shape[1], num_classes), np.int64)
    for row in predictions:
        counts[np.arange(len(row)), row] += 1
    return counts.argmax(1)


def pies(dense, sparse, num_classes):
    """Indices of the Pruning Identified Exemplars: the modal predictions of the dense and
    sparse populations (arrays shaped trials × examples) differ. Returns ``(indices,
    dense modal, sparse modal)``."""
    dense_modal, sparse_modal = modal(dense, num_classes), modal(sparse, num_classes)
    return np.flatnonzero(dense_modal != sparse_modal), dense_modal, sparse_modal


def compare(dense, sparse, labels, num_classes, alpha=0.05):
    """The comparison of one sparsity: ``dense`` and ``sparse`` are trials × examples."""
    labels = np.asarray(labels, np.int64)
    dense, sparse = np.asarray(dense, np.int64), np.asarray(sparse, np.int64)
    overall = {name: (p == labels).mean(1) for name, p in (("dense", dense), ("sparse", sparse))}
    classes = {name: np.array([results.class_accuracy(row, labels, num_classes) for row in p])
               for name, p in (("dense", dense), ("sparse", sparse))}
    delta_overall = overall["sparse"].mean() - overall["dense"].mean()
    delta_class = classes["sparse"].mean(0) - classes["dense"].mean(0)
    relative = delta_class - delta_overall
    out = {
        "overall_dense": overall["dense"].mean(), "overall_sparse": overall["sparse"].mean(),
        "delta_overall": delta_overall,
        "class_dense": classes["dense"].mean(0), "class_sparse": classes["sparse"].mean(0),
        "relative": relative, "t": None, "p": None, "significant": None,
    }
    if len(dense) >= 2 and len(sparse) >= 2:
        t, p = welch(classes["dense"] - overall["dense"][:, None], classes["sparse"] - overall["sparse"][:, None])
        out.update(t=t, p=p, significant=np.nan_to_num(p, nan=1.0) < alpha)
    indices, dense_modal, sparse_modal = pies(dense, sparse, num_classes)
    out.update(
        pies=len(indices), pies_by_class=np.bincount(labels[indices], minlength=num_classes),
        pie_indices=indices, pie_dense=dense_modal[indices], pie_sparse=sparse_modal[indices],
    )
    return out


def _plain(value):
    """JSON-ready: arrays to lists, NaN to None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, list, tuple)):
        return [_plain(v) for v in np.asarray(value).tolist()] if isinstance(value, np.ndarray) else \
            [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


# ---- the analysis --------------------------------------------------------------------------


@register
class Forgetting(Analysis):
    name = "forgetting"
    description = ("What pruning forgets (Hooker et al. 2019): per-class accuracy change against the overall "
                   "change, Welch's t-test per class, Pruning Identified Exemplars")
    Options = Options
    adapts = True  # a round file made with another --variant or --alpha is recomputed; --top and --grid redraw

    def check(self, run, options):
        allowed = [v for v in variants.names() if v == variants.TICKET or v in run.recipe.variants]
        if options.variant not in allowed:
            raise AnalysisError(f"analysis forgetting: --variant {options.variant!r} is not a variant of this run; "
                                f"choose one of {', '.join(allowed)}")
        if not 0.0 < options.alpha < 1.0:
            raise AnalysisError(f"analysis forgetting: --alpha {options.alpha} must lie between 0 and 1, e.g. 0.05")
        if not 1 <= options.top <= MAX_TOP:
            raise AnalysisError(f"analysis forgetting: --top {options.top} must be from 1 to {MAX_TOP}")
        if not 0 <= options.grid <= MAX_GRID:
            raise AnalysisError(f"analysis forgetting: --grid {options.grid} must be from 0 (no grid) to {MAX_GRID}")

    def run(self, run, options, folder, log):
        self.check(run, options)
        labels_path = layout.test_labels(run.path)
        ok = [row for row in run.rows if results.status(row) == results.OK]
        notes = []
        if not labels_path.is_file():
            notes.append(f"{OLD} (the run has no {layout.TEST_LABELS}); rerun keras-lottery run with 0.2 or later "
                         "in a new run directory to analyze it")
            storage.write_json(folder / SUMMARY, {"variant": options.variant, "rounds": [], "notes": notes})
            log(f"forgetting: {notes[0]}")
            return
        labels = integrity.read_arrays(labels_path)["labels"].astype(np.int64)

        def population(round_index, variant):
            found, missing = {}, []
            for row in ok:
                if row["round"] == round_index and row["variant"] == variant:
                    path = layout.predictions(run.path, row["trial"], round_index, variant)
                    if path.is_file():
                        found[row["trial"]] = integrity.read_arrays(path)["predictions"].astype(np.int64)
                    else:
                        missing.append(row["trial"])
            return found, missing

        dense, missing = population(0, variants.TICKET)
        if missing:
            notes.append(f"round 0: {OLD} (trials {', '.join(map(str, missing))})")
        num_classes = int(max([labels.max()] + [p.max() for p in dense.values()]) + 1)
        summary = []
        rounds = sorted({row["round"] for row in ok if row["variant"] == options.variant and row["round"] > 0})
        for round_index in rounds:
            sparse, missing = population(round_index, options.variant)
            if missing:
                notes.append(f"round {round_index}: {OLD} (trials {', '.join(map(str, missing))})")
            if not dense or not sparse:
                continue
            path = round_file(folder, round_index)
            trials = {"dense": sorted(dense), "sparse": sorted(sparse)}
            saved = storage.read_json(path) if path.is_file() else None
            if saved is None or saved.get("trials") != trials or saved.get("variant") != options.variant \
                    or saved.get("alpha") != options.alpha:  # made with other options: recomputed
                found = [row for row in ok if row["round"] == round_index and row["variant"] == options.variant]
                flops = [row.get("flops_remaining") for row in found if row.get("flops_remaining") is not None]
                num = int(max([num_classes] + [p.max() + 1 for p in sparse.values()]))
                compared = compare([dense[t] for t in trials["dense"]], [sparse[t] for t in trials["sparse"]],
                                   labels, num, options.alpha)
                saved = _plain({
                    "round": round_index, "variant": options.variant, "alpha": options.alpha, "trials": trials,
                    "weights_remaining": float(np.mean([row["weights_remaining"] for row in found])),
                    "flops_remaining": float(np.mean(flops)) if flops else None,
                    **compared,
                })
                storage.write_json(path, saved)
            summary.append(saved)
            log(f"forgetting: round {round_index} ({saved['weights_remaining']:.1f}% of weights): "
                f"{_line(saved, options.top)}")
        if not dense:
            notes.append("no dense round (round 0) with stored predictions: nothing to compare")
        storage.write_json(folder / SUMMARY, {
            "variant": options.variant, "alpha": options.alpha, "top": options.top,
            "num_classes": num_classes, "test_examples": int(len(labels)),
            "rounds": [{k: v for k, v in s.items() if not k.startswith("pie_")} for s in summary],
            "notes": notes,
        })
        for note in notes:
            log(f"forgetting: note: {note}")
        if summary:
            for line in table(summary, options.top):
                log(line)
            self._grid(run, summary[-1], labels, options, folder, log)

    def _grid(self, run, last, labels, options, folder, log):
        info_path = folder / GRID_INFO
        wanted = {"round": last["round"], "variant": options.variant, "trials": last["trials"], "grid": options.grid}
        if options.grid == 0 or not last["pie_indices"]:
            storage.write_json(info_path, {**wanted, "note": "no PIEs to show" if options.grid else "grid off"})
            return
        if info_path.is_file() and {k: v for k, v in storage.read_json(info_path).items() if k in wanted} == wanted:
            return
        images, note = test_images(run, labels)
        if images is None:
            storage.write_json(info_path, {**wanted, "note": note})
            log(f"forgetting: note: no image grid: {note}")
            return
        chosen = last["pie_indices"][: options.grid]
        draw_grid(folder / GRID, images[chosen], labels[chosen], last["pie_dense"][: len(chosen)],
                  last["pie_sparse"][: len(chosen)],
                  f"PIEs at {last['weights_remaining']:.1f}% of weights (round {last['round']}): "
                  f"{last['pies']} of {len(labels)} test examples")
        storage.write_json(info_path, {**wanted, "note": None, "shown": len(chosen)})
        log(f"forgetting: {len(chosen)} PIEs drawn in {folder / GRID}")

    def section(self, folder, link):
        path = folder / SUMMARY
        if not path.is_file():
            return None
        summary = storage.read_json(path)
        lines = []
        if summary["rounds"]:
            lines += [
                f"Dense population: round 0; sparse population: `{summary['variant']}`, each trial one sample. "
                "Δ = change of test accuracy at early stop (mean over trials, percentage points); classes listed "
                "by |class Δ − overall Δ|, largest first; * = Welch's t-test on (class accuracy − overall accuracy), "
                f"dense vs sparse trials, p < {summary.get('alpha', 0.05)}. PIEs: test examples whose most common "
                "prediction differs between the two populations.",
                "",
                *table(summary["rounds"], summary.get("top", 3)),
            ]
        info = folder / GRID_INFO
        if (folder / GRID).is_file():
            lines += ["", f"![Pruning Identified Exemplars]({link(GRID)})"]
        elif info.is_file() and storage.read_json(info).get("note"):
            lines += ["", f"No image grid: {storage.read_json(info)['note']}."]
        for note in summary.get("notes", []):
            lines += ["", f"Note: {note}."]
        return "\n".join(lines) if lines else None


def _moving(saved, top):
    relative = np.array([np.nan if v is None else v for v in saved["relative"]], float)
    order = [int(c) for c in np.argsort(-np.nan_to_num(np.abs(relative), nan=-1.0), kind="stable")[:top]]
    significant = saved.get("significant") or [False] * len(relative)
    return ", ".join(f"{c}{'*' if significant[c] else ''} ({100 * relative[c]:+.2f})" for c in order)


def _line(saved, top):
    significant = [c for c, s in enumerate(saved.get("significant") or []) if s]
    tested = "not tested (1 trial)" if saved.get("p") is None else (", ".join(map(str, significant)) or "none")
    return (f"overall Δ {100 * saved['delta_overall']:+.2f} pp; most moved classes {_moving(saved, top)}; "
            f"significant {tested}; {saved['pies']} PIEs")


def table(rounds, top):
    """Markdown lines of the forgetting summary: one row per pruned round."""
    lines = [
        "| round | % weights | % MACs | trials (dense/sparse) | overall acc dense → sparse | overall Δ pp | "
        "classes moving most against it (class Δ − overall Δ, pp) | significant (p < α) | PIEs | PIEs by true class |",
        "|---:|---:|---:|:--|:--|---:|:--|:--|---:|:--|",
    ]
    for saved in rounds:
        significant = [c for c, s in enumerate(saved.get("significant") or []) if s]
        tested = "- (1 trial)" if saved.get("p") is None else (", ".join(map(str, significant)) or "none")
        flops = "-" if saved.get("flops_remaining") is None else f"{saved['flops_remaining']:.1f}"
        by_class = " ".join(f"{c}:{n}" for c, n in enumerate(saved["pies_by_class"]) if n)
        lines.append(
            f"| {saved['round']} | {saved['weights_remaining']:.1f} | {flops} | "
            f"{len(saved['trials']['dense'])}/{len(saved['trials']['sparse'])} | "
            f"{saved['overall_dense']:.4f} → {saved['overall_sparse']:.4f} | {100 * saved['delta_overall']:+.2f} | "
            f"{_moving(saved, top)} | {tested} | {saved['pies']} | {by_class or '-'} |"
        )
    return lines


# ---- images ------------------------------------------------------------------------------


def test_images(run, labels):
    """``(test images, None)`` of the run's data, or ``(None, why not)``: no images when the
    inputs are several arrays (a tuple or dict) or integer ids (tokens)."""
    from keras_lottery import data

    try:
        saved = integrity.read_json(layout.identity_file(run.path))
        splits = data.load(run.recipe.dataset)
    except Exception as err:  # no data file here, offline, a dataset given from Python
        first = (str(err).splitlines() or [type(err).__name__])[0][:160]
        return None, f"the run's test images could not be loaded ({first})"
    expected = (saved.get("identity") or {}).get("data") if isinstance(saved, dict) else None
    if expected and splits.fingerprint != expected:
        return None, "the data the recipe names now is not the data the run trained on (fingerprint differs)"
    if len(splits.y_test) != len(labels) or not np.array_equal(np.asarray(splits.y_test).astype(np.int64), labels):
        return None, "the test labels of the loaded data differ from the run's"
    if data.inputs.structured(splits.x_test):
        return None, f"the run's inputs are not images (a {data.inputs.form(splits.x_test)} arrays)"
    if not np.issubdtype(np.asarray(splits.x_test).dtype, np.floating):
        return None, "the run's inputs are not images (integer ids)"
    return np.asarray(splits.x_test), None


def _displayable(image):
    image = np.asarray(image, float)
    if image.ndim == 1:
        side = int(round(np.sqrt(image.size)))
        if side * side != image.size:
            return None
        image = image.reshape(side, side)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        return None
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def draw_grid(path, images, labels, dense, sparse, title):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(8, len(images))
    rows = int(np.ceil(len(images) / columns))
    figure = Figure(figsize=(1.5 * columns, 1.75 * rows + 0.5))
    FigureCanvasAgg(figure)
    for i, image in enumerate(images):
        axis = figure.add_subplot(rows, columns, i + 1)
        shown = _displayable(image)
        if shown is not None:
            axis.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        axis.set_title(f"y={labels[i]} d={dense[i]} s={sparse[i]}", fontsize=7)
        axis.axis("off")
    figure.suptitle(f"{title}\n(y: true class, d: dense population's prediction, s: sparse population's)", fontsize=8)
    figure.tight_layout()
    storage.atomic_write_bytes(path, _png(figure))


def _png(figure):
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
