"""Export a ticket to LiteRT (TFLite) with sparse weight encoding, and measure what it gains.

``keras-lottery export RUN --round R --format tflite`` writes ``model.tflite`` into ``--out``:

- converted with ``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``, so pruned kernels are stored
  sparse; with ``--quantize int8`` also fully integer-quantized (inputs and outputs stay
  float32), calibrated on the run's own training data (checked by its fingerprint);
- tf_keras models are converted directly; Keras 3 models through the SavedModel of
  their forward pass that :func:`keras_lottery.export.save` writes (on JAX, via jax2tf).

:func:`sparsity` reads the flatbuffer and says which kernels were stored sparse, and how
the runtime will run each of them: LiteRT's FULLY_CONNECTED has sparse kernels for 1x4
blocks (float32) and 1x16 blocks (int8) only; any other sparse kernel is densified (once,
by a DENSIFY op, or at each call by the reference kernel). Pruning in blocks
(``pruning.structure`` ``[4, 1]``, :mod:`keras_lottery.pruning.blocks`) gives the layout
that runs sparse.

:func:`benchmark` compares the dense round 0 with the ticket, converted the same way: file
and gzip size, batch-1 and batch-32 latency (1 thread, median of warm calls, measured in
alternation so a busy machine slows both alike), and the test accuracy of each ``.tflite``
next to the Keras model's. It is written to ``<run>/export/benchmark.json`` and the report.

The interpreter is ``ai-edge-litert``'s (``tf.lite.Interpreter`` is deprecated).
"""

import gzip
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from keras_lottery import export as exporting
from keras_lottery.lottery import variants
from keras_lottery.rundir import layout, storage

TFLITE_FILE = exporting.TFLITE_FILE
FORMATS = ("savedmodel", "tflite")
QUANTIZE = ("int8",)
INSTALL = 'pip install ai-edge-litert (or pip install "keras-lottery[litert]")'
CALIBRATION_EXAMPLES = 200  # training examples that calibrate int8 quantization
EVAL_BATCH = 256  # test examples per interpreter call when measuring accuracy
BATCHES = (1, 32)  # batch sizes whose latency is measured
DEFAULT_CALLS = 1000


class TFLiteError(exporting.ExportError):
    """A tflite export that cannot be done as asked."""


def interpreter_class():
    """LiteRT's Interpreter, or one line saying what to install."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise TFLiteError(f"--format tflite needs the LiteRT interpreter, which is not installed: {INSTALL}") from None
    return Interpreter


def _schema():
    interpreter_class()  # the one-line message when ai-edge-litert is missing
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


# ---- the data ----------------------------------------------------------------------------


def run_data(run_dir, recipe, data_path=None):
    """The run's data (``data_path``: where its file is now), refused unless its content has
    the run's fingerprint (:func:`keras_lottery.rundir.integrity.run_data`)."""
    from keras_lottery.rundir import integrity

    return integrity.run_data(run_dir, recipe.dataset, data_path)


# ---- conversion ---------------------------------------------------------------------------


def convert(model, quantize=None, calibration=None, scratch=None):
    """The ``.tflite`` bytes of a Keras ``model``, kernels stored sparse where they are sparse.

    ``quantize="int8"``: full-integer quantization calibrated on ``calibration`` (input
    examples); inputs and outputs stay float32. ``scratch``: a folder for the Keras 3
    SavedModel the conversion reads (a temporary folder inside it, removed after).
    """
    from keras_lottery.backend import BACKEND, LEGACY, tf

    if BACKEND == "torch":
        raise TFLiteError(f"TFLite export on the torch backend is not possible: {exporting.SAVED_MODEL_ON_TORCH}")
    if len(model.inputs) != 1:  # the benchmark feeds, and calibrates, one input array
        raise TFLiteError(
            f"TFLite export takes a model with one input, and this one has {len(model.inputs)}; "
            "export it as a SavedModel instead (keras-lottery export)"
        )
    if quantize is not None and quantize not in QUANTIZE:
        raise TFLiteError(f"--quantize {quantize}: one of {', '.join(QUANTIZE)}")
    if quantize and (calibration is None or len(calibration) == 0):
        raise TFLiteError("int8 quantization needs calibration examples (the run's training data)")
    if LEGACY:
        return _convert(tf.lite.TFLiteConverter.from_keras_model(model), quantize, calibration)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=".savedmodel-") as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        return _convert(tf.lite.TFLiteConverter.from_saved_model(folder), quantize, calibration)


def _convert(converter, quantize, calibration):
    from keras_lottery.backend import tf

    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if quantize == "int8":
        converter.optimizations.append(tf.lite.Optimize.DEFAULT)
        examples = np.asarray(calibration, np.float32)

        def representative():
            for example in examples:
                yield [example[None]]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


# ---- what the flatbuffer holds ------------------------------------------------------------

SPARSE_KERNELS = {"FLOAT32": 4, "INT8": 16}  # FULLY_CONNECTED's sparse kernels: block width per weight type


def _names(enum):
    return {value: name for name, value in vars(enum).items() if not name.startswith("_")}


def _text(name):
    return name.decode() if isinstance(name, bytes) else str(name)


def sparsity(buffer):
    """One dict per kernel of a FULLY_CONNECTED or CONV_2D op in the ``.tflite`` ``buffer``:
    ``tensor`` (its name), ``op``, ``shape``, ``type``, ``sparse`` (stored sparse),
    ``block`` (the stored block width along the input, 1 without blocks) and ``runs``:
    ``"sparse 1x4"``/``"sparse 1x16"`` (a sparse kernel reads it), ``"densified"`` (a
    DENSIFY op or the kernel turns it dense) or ``"dense"`` (stored dense)."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(buffer), 0)
    ops, types = _names(schema.BuiltinOperator), _names(schema.TensorType)
    graph = model.subgraphs[0]

    def op_name(op):
        code = model.operatorCodes[op.opcodeIndex]
        return ops.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")

    producer = {int(out): op for op in graph.operators for out in op.outputs}
    found = []
    for op in graph.operators:
        name = op_name(op)
        if name not in ("FULLY_CONNECTED", "CONV_2D") or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        index = int(op.inputs[1])
        densify = producer.get(index)
        if densify is not None and op_name(densify) == "DENSIFY":
            index, via = int(densify.inputs[0]), "densified"
        else:
            via = None
        tensor = graph.tensors[index]
        kind = types.get(tensor.type, "?")
        sparse = tensor.sparsity is not None
        dims = tensor.sparsity.dimMetadata if sparse else []
        block = int(dims[2].denseSize) if sparse and len(dims) == 3 else 1
        if not sparse:
            runs = "dense"
        elif via is None and name == "FULLY_CONNECTED" and SPARSE_KERNELS.get(kind) == block:
            runs = f"sparse 1x{block}"
        else:
            runs = "densified"
        found.append({
            "tensor": _text(tensor.name).split(";")[0], "op": name, "shape": [int(n) for n in tensor.shape],
            "type": kind, "sparse": sparse, "block": block, "runs": runs,
        })
    return found


def describe_sparsity(found):
    """Lines saying, for each kernel :func:`sparsity` found, how it is stored and run."""
    lines = []
    for entry in found:
        shape = "x".join(map(str, entry["shape"]))
        if not entry["sparse"]:
            stored = "stored dense"
        else:
            stored = "stored sparse" + (f" in 1x{entry['block']} blocks" if entry["block"] > 1 else "")
        runs = {
            "dense": "runs dense",
            "densified": "densified at run time (runs dense)",
        }.get(entry["runs"], f"runs sparse (the {entry['runs'][len('sparse '):]} sparse kernel)")
        lines.append(f"  {entry['tensor']} ({entry['op']} {entry['type'].lower()} {shape}): {stored}, {runs}")
    return lines


# ---- running it ---------------------------------------------------------------------------


class Runner:
    """A ``.tflite`` model in LiteRT's interpreter, 1 thread, at a fixed batch size. The
    default XNNPACK delegate is used where it accepts the model, else the built-in kernels
    (``delegate`` says which)."""

    def __init__(self, buffer, batch=1):
        from ai_edge_litert.interpreter import OpResolverType

        Interpreter = interpreter_class()
        self.delegate = "xnnpack"
        for options in ({}, {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}):
            interpreter = Interpreter(model_content=bytes(buffer), num_threads=1, **options)
            detail = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
            try:
                interpreter.allocate_tensors()
                break
            except RuntimeError:
                self.delegate = "builtin"
        else:
            raise TFLiteError("LiteRT cannot run the exported model (allocate_tensors failed with and without XNNPACK)")
        self.interpreter, self.batch = interpreter, batch
        self.input = interpreter.get_input_details()[0]
        self.output = interpreter.get_output_details()[0]

    def __call__(self, x):
        self.interpreter.set_tensor(self.input["index"], np.asarray(x, self.input["dtype"]))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def predict(self, x):
        """Outputs for all of ``x``, ``self.batch`` examples per call (the last padded)."""
        x = np.asarray(x, np.float32)
        outputs = []
        for start in range(0, len(x), self.batch):
            part = x[start: start + self.batch]
            padded = np.concatenate([part, np.zeros((self.batch - len(part), *x.shape[1:]), np.float32)])
            outputs.append(self(padded)[: len(part)])
        return np.concatenate(outputs)


def latencies(runners, calls=DEFAULT_CALLS, chunk=100, warmup=50):
    """Median seconds of one call of each runner (``{key: Runner}``), over ``calls`` calls
    after ``warmup`` calls; the runners take turns ``chunk`` calls at a time, so a change in
    the machine's load falls on all of them alike."""
    rng = np.random.default_rng(0)
    inputs = {key: rng.random(tuple(r.input["shape"])).astype(np.float32) for key, r in runners.items()}
    times = {key: [] for key in runners}
    for key, runner in runners.items():
        runner.interpreter.set_tensor(runner.input["index"], inputs[key])
        for _ in range(warmup):
            runner.interpreter.invoke()
    done = 0
    while done < calls:
        step = min(chunk, calls - done)
        for key, runner in runners.items():
            invoke, clock, record = runner.interpreter.invoke, time.perf_counter, times[key].append
            for _ in range(step):
                start = clock()
                invoke()
                record(clock() - start)
        done += step
    return {key: float(np.median(values)) for key, values in times.items()}


def load_average():
    """The 1-minute load average, or None where the system does not say."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


# ---- export and benchmark -----------------------------------------------------------------


def _keras_outputs(model, x):
    return np.asarray(model.predict(np.asarray(x, np.float32), batch_size=EVAL_BATCH, verbose=0))


def export_tflite(run_dir, round_index, out, trial=0, variant=variants.TICKET, weights="trained", force=False,
                  quantize=None, data_path=None):
    """Write one trial/round/variant of ``run_dir`` to ``out/model.tflite`` (see the module);
    return ``(path, sparsity(...), model)``."""
    exporting.check_out(run_dir, out, force)
    interpreter_class()
    model = exporting.ticket_model(run_dir, round_index, trial, variant, weights)
    calibration = None
    if quantize:
        calibration = calibration_examples(run_data(run_dir, exporting.read_recipe(run_dir), data_path))
    out = Path(out)
    if force:
        exporting.clear_earlier_export(out)
    out.mkdir(parents=True, exist_ok=True)
    buffer = convert(model, quantize, calibration, scratch=out)
    path = out / TFLITE_FILE
    storage.atomic_write_bytes(path, buffer)
    return path, sparsity(buffer), model


def calibration_examples(splits, count=CALIBRATION_EXAMPLES):
    """The first ``count`` training examples (fixed, so a conversion is reproducible)."""
    return np.asarray(splits.x_train[:count], np.float32)


def _measure(model, buffer, splits):
    """Size, accuracy and agreement of one converted model (latency is measured together)."""
    runner = Runner(buffer, EVAL_BATCH)
    lite = runner.predict(splits.x_test)
    keras_out = _keras_outputs(model, splits.x_test)
    labels = np.asarray(splits.y_test).reshape(-1)
    kernels = sparsity(buffer)
    return {
        "bytes": len(buffer), "gzip_bytes": len(gzip.compress(bytes(buffer), 9)),
        "tflite_accuracy": float(np.mean(lite.argmax(-1) == labels)),
        "keras_accuracy": float(np.mean(keras_out.argmax(-1) == labels)),
        "agreement": float(np.mean(lite.argmax(-1) == keras_out.argmax(-1))),
        "max_abs_difference": float(np.max(np.abs(lite - keras_out))),
        "sparse_kernels": sum(entry["runs"].startswith("sparse") for entry in kernels),
        "kernels": len(kernels),
    }


def benchmark(run_dir, round_index, trial=0, variant=variants.TICKET, weights="trained", quantize=None,
              data_path=None, calls=DEFAULT_CALLS, scratch=None):
    """Compare the dense round 0 with one trial/round/variant, both converted as
    :func:`export_tflite` does; write the entry to ``<run>/export/benchmark.json`` (replacing
    one of the same trial/round/variant/weights/format) and return it."""
    from keras_lottery.models import kernel_sizes
    from keras_lottery.pruning import weights_remaining

    recipe = exporting.read_recipe(run_dir)
    interpreter_class()
    splits = run_data(run_dir, recipe, data_path)
    calibration = calibration_examples(splits) if quantize else None
    models = {"dense": exporting.ticket_model(run_dir, 0, trial, variants.TICKET, "trained"),
              "pruned": exporting.ticket_model(run_dir, round_index, trial, variant, weights)}
    buffers = {key: convert(model, quantize, calibration, scratch) for key, model in models.items()}
    found = {key: _measure(models[key], buffers[key], splits) for key in models}
    load_before = load_average()
    for batch in BATCHES:
        runners = {key: Runner(buffers[key], batch) for key in buffers}
        for key, seconds in latencies(runners, calls).items():
            found[key][f"latency_batch{batch}_us"] = round(seconds * 1e6, 2)
            found[key]["delegate"] = runners[key].delegate
    masks = storage.load_arrays(layout.mask(run_dir, trial, round_index, variant))
    sizes = kernel_sizes(models["pruned"])
    entry = {
        "trial": trial, "round": round_index, "variant": variant, "weights": weights,
        "format": quantize or "float32", "structure": _structure(recipe),
        "weights_remaining": round(weights_remaining(masks, sizes), 2),
        "calls": calls, "threads": 1, "load_average": [load_before, load_average()],
        "dense": found["dense"], "pruned": found["pruned"],  # pruned: the round exported
        "ratios": {
            "size": found["dense"]["bytes"] / found["pruned"]["bytes"],
            "gzip_size": found["dense"]["gzip_bytes"] / found["pruned"]["gzip_bytes"],
            **{f"speed_batch{b}": found["dense"][f"latency_batch{b}_us"] / found["pruned"][f"latency_batch{b}_us"]
               for b in BATCHES},
        },
    }
    save_benchmark(run_dir, entry)
    return entry


def _structure(recipe):
    from keras_lottery.pruning import blocks

    return blocks.describe(recipe.pruning.structure)


ENTRY_KEY = ("trial", "round", "variant", "weights", "format")


def read_benchmarks(run_dir):
    """The entries of ``<run>/export/benchmark.json`` (none if there is no such file)."""
    from keras_lottery.rundir import integrity

    path = layout.export_benchmark(run_dir)
    if not path.is_file():
        return []
    found = integrity.read_json(path)
    entries = found.get("entries") if isinstance(found, dict) else None
    if not (isinstance(entries, list) and all(isinstance(e, dict) and "dense" in e and "pruned" in e for e in entries)):
        raise integrity.DamagedFileError(f"{path} is damaged (no list of entries); remove it and rerun "
                                         "keras-lottery export --format tflite --benchmark")
    return entries


def save_benchmark(run_dir, entry):
    """Add ``entry`` to ``<run>/export/benchmark.json``, replacing one with the same key (a
    damaged file is replaced)."""
    from keras_lottery.rundir import integrity

    key = tuple(entry[k] for k in ENTRY_KEY)
    try:
        earlier = read_benchmarks(run_dir)
    except integrity.DamagedFileError:
        earlier = []
    entries = [e for e in earlier if tuple(e.get(k) for k in ENTRY_KEY) != key]
    entries.append(entry)
    entries.sort(key=lambda e: tuple(str(e.get(k)) for k in ENTRY_KEY))
    path = layout.export_benchmark(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage.write_json(path, {"entries": entries})


HEADER = ("| round | variant | format | % weights | kernels run sparse (runtime) | file | gzip | batch-1 µs | "
          "batch-32 µs | tflite acc | Keras acc | agree |")


def table(entries):
    """A Markdown table of benchmark ``entries``: the dense model and the pruned round of each."""
    from keras_lottery.costs import human

    lines = [HEADER, "|---:|:--|:--|---:|:--|---:|---:|---:|---:|---:|---:|---:|"]
    for entry in entries:
        for which in ("dense", "pruned"):
            found = entry[which]
            remaining = 100.0 if which == "dense" else entry["weights_remaining"]
            round_index, name = (0, "dense") if which == "dense" else (entry["round"], entry["variant"])
            lines.append(
                f"| {round_index} | {name} | {entry['format']} | {remaining:.1f} | {found['sparse_kernels']}/"
                f"{found['kernels']} ({found.get('delegate', '?')}) | {human(found['bytes'])} | {human(found['gzip_bytes'])} | "
                f"{found['latency_batch1_us']:.1f} | {found['latency_batch32_us']:.1f} | "
                f"{100 * found['tflite_accuracy']:.2f}% | {100 * found['keras_accuracy']:.2f}% | "
                f"{100 * found['agreement']:.2f}% |"
            )
    return "\n".join(lines)


def describe_benchmark(entry):
    """Lines summarizing one benchmark entry (the ratios dense / ticket)."""
    ratios = entry["ratios"]
    load = entry["load_average"]
    return [
        f"ticket vs dense ({entry['format']}, {entry['weights_remaining']:.1f}% of weights, "
        f"{entry['structure']}): file {ratios['size']:.1f}x smaller, gzip {ratios['gzip_size']:.1f}x smaller, "
        f"batch 1 {ratios['speed_batch1']:.2f}x faster, batch 32 {ratios['speed_batch32']:.2f}x faster "
        f"(1 thread, median of {entry['calls']} calls; load average {load[0]} -> {load[1]})",
        f"test accuracy: tflite {100 * entry['pruned']['tflite_accuracy']:.2f}% (Keras "
        f"{100 * entry['pruned']['keras_accuracy']:.2f}%), dense tflite {100 * entry['dense']['tflite_accuracy']:.2f}%; "
        f"the ticket's tflite and Keras predictions agree on {100 * entry['pruned']['agreement']:.2f}% of test examples",
    ]


def section(run_dir):
    """The report's Markdown for ``<run>/export/benchmark.json``, or None without one."""
    from keras_lottery.rundir import integrity

    try:
        entries = read_benchmarks(run_dir)
    except integrity.DamagedFileError as err:
        return f"Left out: {err}."
    if not entries:
        return None
    return (
        "`keras-lottery export --format tflite --benchmark`: each ticket and the dense round 0 converted "
        "to LiteRT with sparse weight encoding; latency is the median of warm calls on 1 thread, the dense "
        "model and the ticket measured in alternation (load average noted in export/benchmark.json).\n\n"
        + table(entries)
    )
