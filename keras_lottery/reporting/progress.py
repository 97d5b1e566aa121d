"""What a run shows while it trains: plain lines, a live display, or nothing.

Every part of a run reports through one :class:`Progress` object:

- :meth:`~Progress.line`: a line of its own (the run directory, the layers pruned, a
  warning, a skipped trial);
- :meth:`~Progress.started`, :meth:`~Progress.resumed`, :meth:`~Progress.evaluated`,
  :meth:`~Progress.finished`: the life of one training, by the worker that trains it
  (``worker`` None in a run with one worker);
- :meth:`~Progress.tally`: how many trainings the run has and how much work is left,
  recounted from the run directory after each training.

Three displays show them:

- :class:`Plain` (output is not a terminal, or ``--plain``): the lines keras-lottery has
  always printed, the evaluations thinned to the first and about ten per training, and
  after each training one overall line (trainings done / total, elapsed, ETA); with
  several workers every line starts with its worker's name;
- :class:`Live` (a terminal): a live display made with ``rich`` (which Keras 3 brings),
  one overall line and one line per worker (what it trains, the iteration, the latest
  validation and test accuracy); the lines of their own print above it;
- :class:`Quiet` (``--quiet``): nothing; the command prints the final table.

The ETA is the work left (optimizer steps of the trainings not finished) divided by the
speed measured in this run (steps trained per second since the first training started).
Workers started by ``run --workers N`` send their calls to the parent as JSON lines
(:class:`Relay`), and the parent's display shows them (:func:`replay`).
"""

import json
import sys
import time

RELAY_PREFIX = "@keras-lottery-progress "


def clock_text(seconds):
    """``m:ss`` or ``h:mm:ss``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """The state every display keeps: the trainings, the workers, the speed and the ETA."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.began = clock()
        self.first_start = None
        self.done = self.total = 0
        self.left = 0  # optimizer steps of the trainings not finished, when the last tally was made
        self.trained = 0  # optimizer steps trained in this run by finished trainings
        self.current = {}  # worker -> {"label", "iterations", "start", "at", "row"}

    # ---- what the run reports -----------------------------------------------------------

    def line(self, text, worker=None):
        """A line of its own."""

    def started(self, label, weights_remaining, start_iteration, iterations, eval_every, worker=None):
        self.first_start = self.clock() if self.first_start is None else self.first_start
        self.current[worker] = {"label": label, "iterations": iterations, "start": start_iteration,
                                "at": start_iteration, "row": None, "eval_every": eval_every}

    def resumed(self, label, iteration, worker=None):
        if worker in self.current:
            self.current[worker]["start"] = self.current[worker]["at"] = iteration

    def evaluated(self, label, row, worker=None):
        if worker in self.current:
            self.current[worker]["at"] = row["iteration"]
            self.current[worker]["row"] = row

    def finished(self, label, text, worker=None):
        """A training ended (``text`` says how); its steps count toward the measured speed."""
        current = self.current.pop(worker, None)
        if current is not None:
            self.trained += current["iterations"] - current["start"]

    def tally(self, done, total, left):
        """``done`` of ``total`` trainings finished; ``left`` optimizer steps to go."""
        self.done, self.total, self.left = done, total, left

    def close(self):
        """The run ended (or stopped): leave the terminal as a terminal."""

    # ---- what the displays show --------------------------------------------------------

    def elapsed(self):
        return self.clock() - self.began

    def in_flight(self):
        return sum(c["at"] - c["start"] for c in self.current.values())

    def eta(self):
        """Seconds left at the measured speed, or None before anything was measured."""
        if self.first_start is None:
            return None
        steps = self.trained + self.in_flight()
        seconds = self.clock() - self.first_start
        if steps <= 0 or seconds <= 0:
            return None
        return max(0.0, self.left - self.in_flight()) / (steps / seconds)

    def overall(self):
        eta = self.eta()
        eta_text = "measuring" if eta is None else clock_text(eta)
        if self.total and self.done >= self.total:
            eta_text = "0:00"
        return f"{self.done}/{self.total} trainings done, {clock_text(self.elapsed())} elapsed, ETA {eta_text}"

    def describe(self, worker):
        current = self.current.get(worker)
        if current is None:
            return "waiting for a training that is ready"
        text = f"{current['label']} iteration {current['at']}/{current['iterations']}"
        row = current["row"]
        if row is not None:
            text += f": val acc {row['val_accuracy']:.4f} test acc {row['test_accuracy']:.4f}"
        return text


class Quiet(Progress):
    """Shows nothing (``--quiet``)."""


class Plain(Progress):
    """Today's lines, thinned, and an overall line after each training."""

    def __init__(self, echo=print, clock=time.monotonic, every_part=10):
        super().__init__(clock)
        self.echo, self.every_part = echo, every_part
        self.printed = {}  # worker -> evaluations printed in its current training
        self.started_at = {}

    def _echo(self, text, worker):
        self.echo(text if worker is None else f"[{worker}] {text}")

    def line(self, text, worker=None):
        self._echo(text, worker)

    def started(self, label, weights_remaining, start_iteration, iterations, eval_every, worker=None):
        super().started(label, weights_remaining, start_iteration, iterations, eval_every, worker)
        self.printed[worker] = 0
        self.started_at[worker] = self.clock()
        self._echo(f"{label}: training {weights_remaining:.1f}% of weights for {iterations - start_iteration} "
                   "iterations", worker)

    def resumed(self, label, iteration, worker=None):
        super().resumed(label, iteration, worker)
        self._echo(f"{label}: resumed from iteration {iteration} (mid-round checkpoint)", worker)

    def evaluated(self, label, row, worker=None):
        super().evaluated(label, row, worker)
        current = self.current.get(worker)
        if current is None:
            return
        eval_every = current["eval_every"]
        every = max(1, (current["iterations"] // eval_every) // self.every_part)
        if self.printed.get(worker, 0) == 0 or (row["iteration"] // eval_every) % every == 0:
            self.printed[worker] = self.printed.get(worker, 0) + 1
            seconds = self.clock() - self.started_at.get(worker, self.clock())
            self._echo(
                f"  {label} iteration {row['iteration']}/{current['iterations']}: val loss {row['val_loss']:.4f} "
                f"val acc {row['val_accuracy']:.4f} test acc {row['test_accuracy']:.4f} ({seconds:.0f}s)", worker)

    def finished(self, label, text, worker=None):
        super().finished(label, text, worker)
        self._echo(text, worker)

    def tally(self, done, total, left):
        changed = done != self.done
        super().tally(done, total, left)
        if changed and self.first_start is not None:
            self.echo(f"progress: {self.overall()}")


class Live(Progress):
    """A live display on a terminal: an overall line and a line per worker (``rich``)."""

    def __init__(self, workers=(None,), clock=time.monotonic, console=None):
        super().__init__(clock)
        from rich.console import Console
        from rich.live import Live as RichLive

        self.workers = list(workers)
        self.console = console or Console()
        self.live = RichLive(self._render(), console=self.console, auto_refresh=True, refresh_per_second=4,
                             transient=False, get_renderable=self._render)
        self.live.start()

    def _render(self):
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        grid.add_row("[bold]run[/bold]", self.overall())
        for worker in self.workers:
            grid.add_row(worker or "training", self.describe(worker))
        return grid

    def line(self, text, worker=None):
        self.console.print(text if worker is None else f"[{worker}] {text}", markup=False, highlight=False)

    def started(self, label, weights_remaining, start_iteration, iterations, eval_every, worker=None):
        if worker not in self.workers:
            self.workers.append(worker)
        super().started(label, weights_remaining, start_iteration, iterations, eval_every, worker)

    def finished(self, label, text, worker=None):
        super().finished(label, text, worker)
        self.line(text, worker)

    def close(self):
        self.live.stop()


class Shared(Progress):
    """The display of one worker of several in this process's ``display``: its calls carry
    ``worker`` and take ``lock`` (other threads show the other workers)."""

    def __init__(self, display, worker, lock):
        super().__init__(display.clock)
        self.display, self.worker, self.lock = display, worker, lock

    def line(self, text, worker=None):
        with self.lock:
            self.display.line(text, self.worker)

    def started(self, label, weights_remaining, start_iteration, iterations, eval_every, worker=None):
        with self.lock:
            self.display.started(label, weights_remaining, start_iteration, iterations, eval_every, worker=self.worker)

    def resumed(self, label, iteration, worker=None):
        with self.lock:
            self.display.resumed(label, iteration, worker=self.worker)

    def evaluated(self, label, row, worker=None):
        with self.lock:
            self.display.evaluated(label, row, worker=self.worker)

    def finished(self, label, text, worker=None):
        with self.lock:
            self.display.finished(label, text, worker=self.worker)

    def tally(self, done, total, left):
        with self.lock:
            self.display.tally(done, total, left)


def choose(plain=False, quiet=False, workers=(None,), echo=print, stream=None):
    """The display for this output: quiet, plain (not a terminal, or asked), else live."""
    stream = sys.stdout if stream is None else stream
    if quiet:
        return Quiet()
    if plain or not stream.isatty():
        return Plain(echo)
    try:
        return Live(workers)
    except ImportError:  # rich comes with Keras 3; without it, plain lines
        return Plain(echo)


def of(log):
    """A display for ``log``: the object itself when it is one, else plain lines to ``log``."""
    return log if isinstance(log, Progress) else Plain(log)


# ---- workers in other processes ----------------------------------------------------------------

CALLS = ("line", "started", "resumed", "evaluated", "finished")


class Relay(Progress):
    """A worker's reports, written to ``write`` as JSON lines for the process that started it."""

    def __init__(self, write):
        super().__init__()
        self.write = write

    def _send(self, call, *args):
        self.write(RELAY_PREFIX + json.dumps({"call": call, "args": list(args)}))

    def line(self, text, worker=None):
        self._send("line", text)

    def started(self, label, weights_remaining, start_iteration, iterations, eval_every, worker=None):
        self._send("started", label, weights_remaining, start_iteration, iterations, eval_every)

    def resumed(self, label, iteration, worker=None):
        self._send("resumed", label, iteration)

    def evaluated(self, label, row, worker=None):
        self._send("evaluated", label, {k: v for k, v in row.items() if isinstance(v, (int, float, str))})

    def finished(self, label, text, worker=None):
        self._send("finished", label, text)


def replay(text, display, worker):
    """Show on ``display`` the line ``text`` a worker wrote: a relayed call, or a line of its own."""
    if not text.startswith(RELAY_PREFIX):
        display.line(text.rstrip("\n"), worker)
        return
    message = json.loads(text[len(RELAY_PREFIX):])
    if message.get("call") in CALLS:
        getattr(display, message["call"])(*message["args"], worker=worker)
