"""Failed rounds: a NaN or infinite loss ends a variant, not the run.

A variant whose loss stops being finite is recorded as failed: its ``summary.json``
has ``"status": "failed"`` and the error, ``curve.csv`` the evaluations before it; no
``final.npz`` is written. A failed variant counts as done (training is deterministic,
so rerunning the same recipe would fail the same way; change the recipe, e.g. the
learning rate, to get a new run directory).

What can still run after a failure, within the same trial:

- the other variants of the same round (their masks come from the previous round);
- later rounds, unless the ticket they are pruned from failed: with iterative pruning
  round r is pruned from round r-1's ticket, so a failed ticket stops its trial at that
  round; with one-shot pruning every round is pruned from the dense round 0, so only a
  failed round 0 stops the trial. A failed round-0 ticket also leaves no θk to rewind to.

Other trials are independent and always continue. The experiment's graph
(:mod:`.graph`) applies these rules: a training whose ticket failed is *blocked*.
"""

from keras_lottery import results
from keras_lottery.rundir import layout

FAILED, OK = results.FAILED, results.OK
status = results.status


def describe(rows, run_dir):
    """One line naming the failed variants and where to read why."""
    failed = [row for row in rows if status(row) == FAILED]
    first = failed[0]
    return (
        f"{len(failed)} of {len(rows)} variants failed, first trial {first['trial']} round {first['round']} "
        f"{first['variant']}: {first.get('error')}; see {layout.results_csv(run_dir)} (status column)"
    )
