"""Command line: ``keras-lottery run``, ``worker``, ``report``, ``export``, ``analyze``, ``recipes`` and ``speed``.

TensorFlow is imported inside the commands, so ``--help`` answers at once.
"""

import contextlib
import signal
import sys
import time

import click

from keras_lottery.lottery import variants


def _usage_errors():
    from keras_lottery.errors import UsageError

    return UsageError


def _fail(err, code=2):
    click.echo(f"error: {err}", err=True)
    sys.exit(code)


def _fault(err, what="the run"):
    """A fault of the machine, not of the input (a full disk, a read-only folder): exit 1."""
    where = f" writing {err.filename}" if getattr(err, "filename", None) else ""
    reason = err.strerror or str(err) if isinstance(err, OSError) else str(err)
    _fail(f"{reason}{where}; {what} stopped there and nothing written before was lost (every file is "
          "written whole or not at all): free space or fix permissions, then rerun the same command", code=1)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; raised in the main thread between two Python steps."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _interruptible(where):
    """Turn SIGINT and SIGTERM into one line and exit 130 / 143. A write in progress is an
    atomic write: it is left complete or not at all; the run-directory lock is released as
    the process ends. ``where()`` says what was being done.

    The handler raises :class:`Interrupted` wherever Python is; inside TensorFlow's own
    Python (tracing a graph) that can surface as another exception, so any exception after
    a signal arrived counts as the interruption."""
    received = []

    def handler(signum, frame):
        received.append(signum)
        raise Interrupted(signum)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread (e.g. a test runner's worker): leave signals alone
            pass
    try:
        yield
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):
            received.append(signal.SIGINT)
        if not received or isinstance(err, SystemExit):
            raise
        name = signal.Signals(received[0]).name
        _fail(f"stopped by {name} {where()}; finished work and written files are kept: rerun the same command "
              "to resume from there", code=128 + received[0])
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@click.group()
@click.version_option(package_name="keras-lottery")
@click.option("--verbose", is_flag=True,
              help="Show TensorFlow's own logging (hidden by default), here and in processes this one starts.")
def main(verbose):
    """Find, verify and export lottery tickets (Frankle & Carbin, ICLR 2019)."""
    from keras_lottery import startup

    startup.set_verbose(verbose)


def _display_options(command):
    """--plain and --quiet: what a command shows while it trains (keras_lottery.reporting.progress)."""
    command = click.option("--quiet", is_flag=True, help="Print only the final table (and errors).")(command)
    return click.option("--plain", is_flag=True,
                        help="Plain lines, as in a log file, even on a terminal (default there: a live display).")(command)


def _tracking(display, seen):
    """Let ``display`` remember the run directory and the training under way, for an interruption."""
    line, started = display.line, display.started

    def tracked_line(text, worker=None):
        if text.startswith("run directory: "):
            seen["dir"] = text[len("run directory: "):]
        line(text, worker)

    def tracked_started(label, *args, worker=None):
        seen["at"] = label
        started(label, *args, worker=worker)

    display.line, display.started = tracked_line, tracked_started
    return display


def _where(seen):
    def where():
        at = f"in {seen['at']}" if "at" in seen else "before training started"
        return at + (f" of {seen['dir']}" if "dir" in seen else "")
    return where


def _devices(text):
    if text is None:
        return None
    devices = [part.strip() for part in text.split(",") if part.strip()]
    if not devices or not all(part.isdigit() for part in devices):
        _fail(f"--devices takes device numbers separated by commas, e.g. 0,1, got {text!r}")
    return devices


@main.command()
@click.argument("recipe_path", metavar="RECIPE")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default runs/<name>-<hash>).")
@click.option("--data", "data_path", type=click.Path(), help="Local .npz (x_train, y_train, x_test, y_test) to use.")
@click.option("--rounds", type=int, help="Training rounds including the dense round 0.")
@click.option("--trials", type=int, help="Independent trials (different θ0).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=JSON", help="Override a recipe field; repeatable.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multi_worker", "tpu"]),
              help="tf.distribute strategy (overrides distribute.strategy).")
@click.option("--keras", "keras_flavour", type=click.Choice(["tf_keras", "keras3"]),
              help="Keras to run (overrides keras): tf_keras with tfmot, or Keras 3 on the backend KERAS_BACKEND names.")
@click.option("--workers", "workers_count", type=int, default=1, show_default=True,
              help="Trainings run side by side, each in a worker process (one per CPU core or GPU).")
@click.option("--devices", metavar="0,1,...", help="GPUs of the workers: worker i trains on device i modulo their number.")
@_display_options
def run(recipe_path, out, data_path, rounds, trials, overrides, strategy, keras_flavour, workers_count, devices,
        plain, quiet):
    """Run the experiment in RECIPE: a JSON file, or the name of a shipped recipe
    (e.g. quickstart_digits; `keras-lottery recipes` lists them)."""
    from keras_lottery.config import catalog
    from keras_lottery.config import recipe as recipes

    from keras_lottery import flavours

    if strategy:
        overrides = (*overrides, f"distribute.strategy={strategy}")
    if keras_flavour:
        overrides = (*overrides, f'keras="{keras_flavour}"')
    devices = _devices(devices)
    try:
        recipe = recipes.load(catalog.find(recipe_path), overrides, data_path, rounds, trials)
        recipe = flavours.resolve(recipe)  # before TensorFlow is imported: the Keras this process runs
    except _usage_errors() as err:
        _fail(err)
    except RecursionError:
        _fail(f"recipe {recipe_path} is nested too deeply to read; a recipe is a shallow JSON object")
    for note in () if quiet else recipe.notes():
        click.echo(f"note: {note}")
    from keras_lottery.lottery import failures, workers
    from keras_lottery import lottery, results
    from keras_lottery.reporting import progress

    start = time.perf_counter()
    seen = {}
    names = workers.worker_names(workers_count) if workers_count > 1 else [None]
    display = _tracking(progress.choose(plain, quiet, names, echo=click.echo), seen)
    with _interruptible(_where(seen)):
        try:
            run_dir, rows = lottery.run(recipe, out, log=display, workers_count=workers_count, devices=devices)
        except _usage_errors() as err:
            _fail(err)
        except RecursionError:
            _fail("the recipe or a file of the run directory is nested too deeply to read; use shallow JSON")
        except (OSError, MemoryError) as err:
            _fault(err)
        finally:
            display.close()
    if quiet:
        click.echo(results.table(rows, recipe.variants))
    else:
        click.echo("")
        click.echo(results.table(rows, recipe.variants))
        click.echo(f"\n{len(rows)} results in {run_dir}/results.csv ({time.perf_counter() - start:.0f}s)")
    _write_report(run_dir, quiet)
    if any(failures.status(row) == failures.FAILED for row in rows):
        _fail(failures.describe(rows, run_dir), code=1)


def _speed():
    from keras_lottery import speed

    return speed.main


main.add_command(_speed(), "speed")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True), required=False)
@click.option("--name", help="This worker's name in claims and lines (default host:pid).")
@click.option("--data", "data_path", type=click.Path(), help="The run's .npz data, where its path differs on this machine.")
@click.option("--relay", is_flag=True, hidden=True, help="Started by `run --workers`: read the experiment on stdin, report to it.")
@_display_options
def worker(run_dir, name, data_path, relay, plain, quiet):
    """Join the run in RUN_DIR (set up by `keras-lottery run`, on a shared filesystem
    for many machines) and train its ready trainings until none is left for this worker.

    Exits 0 when the experiment is finished, or early when every training left is claimed
    by another live worker. Any number of workers may come and go."""
    from keras_lottery import lottery
    from keras_lottery.lottery import graph
    from keras_lottery.reporting import progress

    if not relay and run_dir is None:
        _fail("keras-lottery worker needs the run directory to join: keras-lottery worker RUN_DIR")
    seen = {} if relay else {"dir": run_dir}
    display = progress.Relay(click.echo) if relay else progress.choose(plain, quiet, [name], echo=click.echo)
    display = _tracking(display, seen)
    with _interruptible(_where(seen)):
        if relay:  # Ctrl-C on a terminal reaches the whole process group: the run stops its workers itself
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if relay:
                lottery.join_pool(sys.stdin.buffer, name, display)
                return
            trained = lottery.join(run_dir, name, data_path, log=display)
        except _usage_errors() as err:
            _fail(err)
        except (OSError, MemoryError) as err:
            _fault(err, "the worker")
        finally:
            display.close()
    from keras_lottery.config.recipe import parse
    from keras_lottery.rundir import layout, storage

    done, total, _ = graph.tally(run_dir, parse(storage.read_json(layout.recipe_file(run_dir))))
    state = "the experiment is finished" if done == total else \
        f"{total - done} training(s) left, each claimed by another worker or waiting for one"
    click.echo(f"worker{' ' + name if name else ''}: trained {trained} training(s); {state}")


def _write_report(run_dir, quiet=False):
    """Write the report of a run's finished rounds and say where it is (unless ``quiet``)."""
    from keras_lottery.reporting import report

    try:
        written = report.write([run_dir])
        if not quiet:
            click.echo(f"report: {written}")
    except _usage_errors() as err:
        click.echo(f"no report: {err}", err=True)
    except OSError as err:
        _fault(err, "the report (the results are complete)")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--round", "round_index", type=int, required=True, help="Round to export (0 is dense).")
@click.option("--trial", type=int, default=0, show_default=True)
@click.option("--variant", type=click.Choice(variants.names()), default=variants.TICKET, show_default=True)
@click.option("--weights", type=click.Choice(["trained", "init"]), default="trained", show_default=True,
              help="trained: after the round; init: the ticket itself, m ⊙ θk.")
@click.option("--out", type=click.Path(), required=True,
              help="Folder for the SavedModel, and model.keras on Keras 3 (new or empty).")
@click.option("--force", is_flag=True, help="Write into --out even if it holds other files.")
@click.option("--format", "export_format", type=click.Choice(["savedmodel", "tflite"]), default="savedmodel",
              show_default=True, help="tflite: LiteRT model.tflite with sparse weight encoding (needs ai-edge-litert).")
@click.option("--quantize", type=click.Choice(["int8"]),
              help="With --format tflite: full-integer quantization calibrated on the run's training data.")
@click.option("--benchmark", is_flag=True,
              help="With --format tflite: compare with the dense round 0 (size, latency, test accuracy); "
                   "writes RUN_DIR/export/benchmark.json.")
@click.option("--calls", type=click.IntRange(min=1), default=1000, show_default=True,
              help="With --benchmark: calls whose median latency is taken.")
@click.option("--data", "data_path", type=click.Path(),
              help="With --quantize/--benchmark: the run's data file, if it moved.")
def export(run_dir, round_index, trial, variant, weights, out, force, export_format, quantize, benchmark, calls,
           data_path):
    """Write one trial/round/variant of RUN_DIR as a SavedModel, and a .keras file on Keras 3 (no pruning
    wrappers), or with --format tflite as a LiteRT model with sparse weights."""
    from keras_lottery import flavours

    try:
        flavours.choose_for_run(run_dir)
    except _usage_errors() as err:
        _fail(err)
    if export_format == "tflite":
        _export_tflite(run_dir, round_index, trial, variant, weights, out, force, quantize, benchmark, calls, data_path)
        return
    given = [flag for flag, value in (("--quantize", quantize), ("--benchmark", benchmark), ("--data", data_path))
             if value]
    if given:
        _fail(f"{given[0]} applies to --format tflite only; add --format tflite or remove {given[0]}")
    from keras_lottery import export as exporting

    with _export_errors(run_dir):
        exporting.export(run_dir, round_index, out, trial, variant, weights, force)
    click.echo(exporting.written(out))
    try:
        for line in exporting.describe_costs(exporting.costs_of(run_dir, round_index, trial, variant, weights)):
            click.echo(line)
    except (_usage_errors(), OSError, ValueError) as err:  # the SavedModel is written; costs are extra
        click.echo(f"no costs: {err}", err=True)


@contextlib.contextmanager
def _export_errors(run_dir):
    """Bad input as one line (exit 2), a fault of the machine as one line (exit 1)."""
    try:
        yield
    except _usage_errors() as err:
        _fail(err)
    except FileNotFoundError as err:
        _fail(f"{err.filename} is missing: {run_dir} is not a complete keras-lottery run directory")
    except (OSError, RecursionError, MemoryError) as err:
        _fault(err, "the export")


def _export_tflite(run_dir, round_index, trial, variant, weights, out, force, quantize, benchmark, calls, data_path):
    """``export --format tflite``: model.tflite, how its kernels are stored and run, and the benchmark."""
    from keras_lottery import export_tflite

    with _interruptible(lambda: f"exporting {run_dir}"), _export_errors(run_dir):
        path, found, _ = export_tflite.export_tflite(
            run_dir, round_index, out, trial, variant, weights, force, quantize, data_path)
        click.echo(f"LiteRT model in {path} (load it with ai_edge_litert.interpreter.Interpreter)")
        for line in export_tflite.describe_sparsity(found):
            click.echo(line)
        if benchmark:
            click.echo(f"benchmark: dense round 0 vs round {round_index}, {calls} calls per batch size ...")
            entry = export_tflite.benchmark(run_dir, round_index, trial, variant, weights, quantize, data_path,
                                            calls, scratch=out)
            for line in export_tflite.describe_benchmark(entry):
                click.echo(line)
            click.echo(export_tflite.table([entry]))
            from keras_lottery.rundir import layout

            click.echo(f"benchmark: {layout.export_benchmark(run_dir)}")


@main.command("report")
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder for report.md and the PNGs (default RUN_DIR/report; required with several runs).")
@click.option("--curve-rounds", metavar="R,R,...", help="Rounds in the training-curve figure (default: 5 spread out).")
@click.option("--force", is_flag=True, help="Write into --out even if it holds something else than this report.")
def report_command(run_dirs, out, curve_rounds, force):
    """Write report.md, the paper's figures and TensorBoard summaries for RUN_DIR(s);
    several runs are compared in one report."""
    from keras_lottery.reporting import report

    try:
        chosen = [int(r) for r in curve_rounds.split(",")] if curve_rounds else None
    except ValueError:
        _fail(f"--curve-rounds {curve_rounds!r}: expected round numbers separated by commas, e.g. 0,3,7")
    try:
        path = report.write(run_dirs, out, chosen, force=force)
    except _usage_errors() as err:
        _fail(err)
    except (OSError, RecursionError, MemoryError) as err:
        _fault(err, "the report")
    click.echo(f"report: {path}")


@main.group(invoke_without_command=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Recipe folder (default: the recipes shipped with keras-lottery).")
@click.pass_context
def recipes(ctx, directory):
    """List the recipes: name, model, dataset, kernel weights, what the paper shows."""
    ctx.obj = directory
    if ctx.invoked_subcommand is not None:
        return
    from keras_lottery.config import catalog

    try:
        click.echo(catalog.table(catalog.rows(directory)))
    except _usage_errors() as err:
        _fail(err)


@recipes.command("show")
@click.argument("name")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=JSON", help="Override a recipe field; repeatable.")
@click.pass_obj
def show_recipe(directory, name, overrides):
    """Print recipe NAME (e.g. conv2_cifar10) with every default filled in."""
    import json

    from keras_lottery.config import catalog
    from keras_lottery.config import recipe as recipes_module

    try:
        recipe = recipes_module.load(catalog.find(name, directory), overrides)
    except _usage_errors() as err:
        _fail(err)
    click.echo(json.dumps(recipe.to_dict(), indent=2, ensure_ascii=False))


class _Analyses(click.Group):
    """One subcommand per registered analysis, its options read from the analysis."""

    def list_commands(self, ctx):
        from keras_lottery import analyses

        return sorted(analyses.names())

    def get_command(self, ctx, name):
        from keras_lottery import analyses

        if name not in analyses.names():
            return None
        analysis = analyses.get(name)

        def callback(run_dir, **values):
            from keras_lottery import flavours

            given = {key: value for key, value in values.items() if value is not None}
            try:
                flavours.choose_for_run(run_dir)
            except _usage_errors() as err:
                _fail(err)
            with _interruptible(lambda: f"in the analysis {name} of {run_dir}"):
                try:
                    folder = analyses.analyze(name, run_dir, given, log=click.echo)
                except _usage_errors() as err:
                    _fail(err)
                except (OSError, RecursionError, MemoryError) as err:
                    _fault(err, f"the analysis {name}")
            click.echo(f"{name}: {folder}")

        params = [click.Argument(["run_dir"], type=click.Path(exists=True, file_okay=False))]
        for option, kind, default in analyses.option_fields(analysis):
            flag = "--" + option.replace("_", "-")
            if kind is bool:
                params.append(click.Option([f"{flag}/--no-{option.replace('_', '-')}", option], default=None,
                                           help=f"default: {default}"))
            else:
                params.append(click.Option([flag, option], type=kind, default=None, help=f"default: {default}"))
        return click.Command(name, params=params, callback=callback, help=analysis.description)


@main.group(cls=_Analyses)
def analyze():
    """Analyses of a finished run, each writing RUN_DIR/analyses/<name>/ and a report section."""


if __name__ == "__main__":
    main()
