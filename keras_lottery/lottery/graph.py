"""The experiment as a graph of trainings.

Each training is a :class:`Node`: one variant of one round of one trial. A node reads
files that other nodes (or the trial's set-up) write, and may train once they exist:

- every node reads the trial's θ0 (``init.npz``, drawn from the trial's seed);
- a node of a pruned round r reads the ticket masks and trained weights of the round it
  is pruned from (:func:`keras_lottery.lottery.rounds.source_round`) and θk, which the
  dense round's ticket captures: it waits for the tickets of
  :func:`keras_lottery.lottery.rounds.depends_on`;
- a node writes its variant folder (``mask.npz``, ``final.npz``, ``curve.csv``,
  ``summary.json`` last), and the dense round's ticket writes θk (``rewind.npz``).

So trials are independent, and inside a trial every variant of round r needs only the
tickets of rounds 0 and r-1: the controls of round r run beside the ticket of round r
and the controls of round r-1. Every seed is derived from (trial, round, variant)
(:func:`keras_lottery.lottery.rounds.derive_seed`), never from the order in which
trainings run, so any walk of the graph gives the same results bit for bit.

:func:`nodes` lists the graph in the sequential order (trial by trial, round by round,
the ticket first): a single worker walks it so, as keras-lottery always has.
:func:`next_ready` is the walk every worker makes: the first node, in that order, that
is not finished, not blocked by a failed ticket, whose inputs are finished and that no
live worker has claimed. :func:`project` simulates the walk of N workers to project a
protocol's wall time (``keras-lottery speed --workers``).

Pure Python: reads the run directory only.
"""

import heapq
from dataclasses import dataclass

from keras_lottery import results
from keras_lottery.lottery import rounds, variants
from keras_lottery.rundir import claims, layout, storage


@dataclass(frozen=True, order=True)
class Node:
    trial: int
    round: int
    variant: str

    def label(self, recipe):
        return f"trial {self.trial} round {self.round}/{recipe.pruning.rounds - 1} {self.variant}"

    @property
    def key(self):
        return f"{layout.trial_name(self.trial)}-{layout.round_name(self.round)}-{self.variant}"


def nodes(recipe, trials=None):
    """Every training of ``recipe`` (of ``trials``, default all), in the sequential order."""
    for trial in range(recipe.trials) if trials is None else trials:
        for round_index in range(recipe.pruning.rounds):
            for variant in rounds.variants_of_round(recipe, round_index):
                yield Node(trial, round_index, variant)


def count(recipe):
    """How many trainings ``recipe`` has."""
    per_trial = 1 + (recipe.pruning.rounds - 1) * len(recipe.variants)
    return recipe.trials * per_trial


def needs(recipe, node):
    """The nodes whose outputs ``node`` reads: the tickets it is pruned from (none for round 0)."""
    return tuple(Node(node.trial, source, variants.TICKET) for source in rounds.depends_on(recipe, node.round))


def reads(run_dir, recipe, node):
    """The files ``node`` reads before it trains."""
    found = [layout.init_weights(run_dir, node.trial)]
    for source in needs(recipe, node):
        found += [layout.summary(run_dir, *_key(source))]
        if source.round == 0:
            found.append(layout.rewind_weights(run_dir, node.trial))
        if source.round == rounds.source_round(recipe, node.round):
            found += [layout.mask(run_dir, *_key(source)), layout.final(run_dir, *_key(source))]
    return found


def writes(run_dir, recipe, node):
    """The files ``node`` writes (``summary.json`` last, which marks it finished)."""
    key = _key(node)
    made = [layout.mask(run_dir, *key), layout.final(run_dir, *key), layout.curve(run_dir, *key),
            layout.summary(run_dir, *key)]
    if node.round == 0 and node.variant == variants.TICKET:
        made.insert(0, layout.rewind_weights(run_dir, node.trial))
    return made


def work(recipe, node):
    """Optimizer steps ``node`` trains: every rewinding mode trains from k (0 in the dense round)."""
    start = 0 if node.round == 0 else recipe.rewind.iteration
    return recipe.training.iterations - start


def _key(node):
    return node.trial, node.round, node.variant


# ---- the state of a run directory --------------------------------------------------------

FINISHED, FAILED, BLOCKED, READY, WAITING, CLAIMED = "finished", "failed", "blocked", "ready", "waiting", "claimed"


def _finished_status(run_dir, node):
    """``ok`` or ``failed`` for a finished node, else None."""
    path = layout.summary(run_dir, *_key(node))
    if not path.is_file():
        return None
    try:
        return results.status(storage.read_json(path))
    except (OSError, ValueError):
        return None  # being repaired, or damaged: not finished


def state(run_dir, recipe, node, finished=None):
    """The state of ``node``: finished, failed, blocked (a ticket it needs failed), waiting
    (a ticket it needs is not finished), claimed (a live worker trains it) or ready."""
    finished = {} if finished is None else finished
    status = finished[node] if node in finished else _finished_status(run_dir, node)
    if status is not None:
        return FAILED if status == results.FAILED else FINISHED
    for source in needs(recipe, node):
        source_status = finished[source] if source in finished else _finished_status(run_dir, source)
        if source_status == results.FAILED:
            return BLOCKED
        if source_status is None:
            return WAITING
    if claims.holder(layout.claim_file(run_dir, *_key(node))) is not None:
        return CLAIMED
    return READY


def next_ready(run_dir, recipe, claim):
    """Claim the first ready node in the sequential order; ``claim(node)`` tries to claim
    it and returns True on success. Returns ``(node, remaining)``: the claimed node or
    None, and whether unfinished, unblocked work remains (claimed or waiting)."""
    finished, remaining = {}, False
    for node in nodes(recipe):
        current = state(run_dir, recipe, node, finished)
        if current in (FINISHED, FAILED):
            finished[node] = results.FAILED if current == FAILED else results.OK
            continue
        if current == BLOCKED:
            continue
        remaining = True
        if current == READY and claim(node):
            # the claim may have raced a worker that finished it just now
            if _finished_status(run_dir, node) is None:
                return node, True
    return None, remaining


def blocked_trials(run_dir, recipe):
    """``{trial: (first blocked round, failed round)}`` for trials a failed ticket stopped."""
    found = {}
    for node in nodes(recipe, layout.trials_present(run_dir, recipe.trials)):
        if node.trial in found or node.variant != variants.TICKET:
            continue
        for source in needs(recipe, node):
            if _finished_status(run_dir, source) == results.FAILED:
                found[node.trial] = (node.round, source.round)
                break
    return found


# ---- projection ----------------------------------------------------------------------------


def project(recipe, seconds, workers):
    """The wall time of ``recipe`` with ``workers`` workers, each training one node at a
    time and claiming the first ready node in the sequential order (the walk of
    :func:`next_ready`); ``seconds(node)`` is a node's duration. Returns
    ``(wall seconds, total seconds of work, critical path seconds)``."""
    order = list(nodes(recipe))
    duration = {node: seconds(node) for node in order}
    done_at, pending, free_at = {}, list(order), [0.0] * workers
    heapq.heapify(free_at)
    clock = 0.0
    while pending:
        clock = max(clock, heapq.heappop(free_at))
        ready = [n for n in pending if all(s in done_at and done_at[s] <= clock for s in needs(recipe, n))]
        if not ready:  # wait for the earliest running node to finish
            clock = min(t for t in done_at.values() if t > clock)
            heapq.heappush(free_at, clock)
            continue
        node = ready[0]
        pending.remove(node)
        done_at[node] = clock + duration[node]
        heapq.heappush(free_at, done_at[node])
    total = sum(duration.values())
    return max(done_at.values(), default=0.0), total, critical_path(recipe, duration)


def critical_path(recipe, duration):
    """The longest chain of nodes that must run one after another (the chain of tickets)."""
    finish = {}
    for node in nodes(recipe):
        finish[node] = duration[node] + max((finish[s] for s in needs(recipe, node)), default=0.0)
    return max(finish.values(), default=0.0)


def tally(run_dir, recipe):
    """``(done, total, steps left)``: trainings finished (or failed) of those that will run,
    and the optimizer steps of the unfinished ones. Trainings a failed ticket blocks do not count."""
    finished, done, total, left = {}, 0, 0, 0
    for node in nodes(recipe):
        status = _finished_status(run_dir, node)
        if status is not None:
            finished[node] = status
            done, total = done + 1, total + 1
            continue
        if any(finished.get(source) == results.FAILED for source in needs(recipe, node)):
            continue
        total, left = total + 1, left + work(recipe, node)
        if not layout.trial_dir(run_dir, node.trial).is_dir():
            # trials not started are alike: count the rest without reading the disk
            untouched = recipe.trials - node.trial
            per_trial = [n for n in nodes(recipe, [node.trial])]
            total += (untouched - 1) * len(per_trial) + len(per_trial) - 1 - per_trial.index(node)
            left += (untouched - 1) * sum(work(recipe, n) for n in per_trial) + \
                sum(work(recipe, n) for n in per_trial[per_trial.index(node) + 1:])
            break
    return done, total, left
