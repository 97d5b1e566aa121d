"""The experiment as a graph of trainings, and the claims workers take (no TensorFlow)."""

import json
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from conftest import TINY, merge
from keras_lottery.config.recipe import parse
from keras_lottery.lottery import graph
from keras_lottery.lottery.graph import Node
from keras_lottery.rundir import claims, layout, storage


def recipe(**changes):
    return parse(merge(TINY, changes))


def finish(run_dir, node, status="ok"):
    storage.write_json(layout.summary(run_dir, node.trial, node.round, node.variant), {"status": status})


def never(node):
    return False


def test_sequential_order_is_trial_round_ticket_first():
    r = recipe(trials=2, pruning={"rounds": 3})
    order = list(graph.nodes(r))
    assert order[:5] == [Node(0, 0, "ticket"), Node(0, 1, "ticket"), Node(0, 1, "random_reinit"),
                         Node(0, 1, "random_prune"), Node(0, 2, "ticket")]
    assert len(order) == graph.count(r) == 2 * (1 + 2 * 3)
    assert order[7] == Node(1, 0, "ticket")


def test_a_round_needs_the_dense_ticket_and_the_ticket_it_is_pruned_from():
    iterative, one_shot = recipe(pruning={"rounds": 4}), recipe(pruning={"rounds": 4, "method": "oneshot"})
    assert graph.needs(iterative, Node(0, 0, "ticket")) == ()
    assert graph.needs(iterative, Node(0, 3, "random_prune")) == (Node(0, 0, "ticket"), Node(0, 2, "ticket"))
    assert graph.needs(one_shot, Node(1, 3, "ticket")) == (Node(1, 0, "ticket"),)


def test_reads_and_writes_name_the_files(tmp_path):
    r = recipe(pruning={"rounds": 3})
    reads = graph.reads(tmp_path, r, Node(0, 2, "random_reinit"))
    assert layout.init_weights(tmp_path, 0) in reads and layout.rewind_weights(tmp_path, 0) in reads
    assert layout.final(tmp_path, 0, 1, "ticket") in reads and layout.mask(tmp_path, 0, 1, "ticket") in reads
    assert layout.final(tmp_path, 0, 0, "ticket") not in reads  # round 0 gives θk only
    writes = graph.writes(tmp_path, r, Node(0, 0, "ticket"))
    assert writes[0] == layout.rewind_weights(tmp_path, 0) and writes[-1] == layout.summary(tmp_path, 0, 0, "ticket")


def test_the_walk_claims_ready_trainings_in_order(tmp_path):
    r = recipe(pruning={"rounds": 3}, trials=2)
    taken = []

    def claim(node):
        taken.append(node)
        return True

    node, remaining = graph.next_ready(tmp_path, r, claim)
    assert node == Node(0, 0, "ticket") and remaining
    finish(tmp_path, Node(0, 0, "ticket"))
    # round 1's three variants are ready; a claimed one is skipped by the next worker
    mine = {Node(0, 1, "ticket")}
    node, _ = graph.next_ready(tmp_path, r, lambda n: n not in mine)
    assert node == Node(0, 1, "random_reinit")
    # nothing of round 2 is ready before round 1's ticket: the next one is trial 1's dense round
    node, _ = graph.next_ready(tmp_path, r, lambda n: n.variant == "ticket" and n.round == 0)
    assert node == Node(1, 0, "ticket")


def test_a_failed_ticket_blocks_what_is_pruned_from_it(tmp_path):
    r = recipe(pruning={"rounds": 3})
    finish(tmp_path, Node(0, 0, "ticket"))
    finish(tmp_path, Node(0, 1, "ticket"), "failed")
    for variant in ("random_reinit", "random_prune"):
        finish(tmp_path, Node(0, 1, variant))
    node, remaining = graph.next_ready(tmp_path, r, lambda n: True)
    assert node is None and not remaining  # round 2 is blocked: nothing is left
    assert graph.blocked_trials(tmp_path, r) == {0: (2, 1)}
    assert graph.tally(tmp_path, r) == (4, 4, 0)


def test_tally_counts_work_left(tmp_path):
    r = recipe(pruning={"rounds": 3}, trials=3, rewind={"iteration": 20}, training={"iterations": 60})
    per_trial = 60 + 2 * 3 * 40
    assert graph.tally(tmp_path, r) == (0, 3 * 7, 3 * per_trial)
    storage.save_arrays(layout.init_weights(tmp_path, 0), {"a": [0]})
    finish(tmp_path, Node(0, 0, "ticket"))
    assert graph.tally(tmp_path, r) == (1, 21, 3 * per_trial - 60)


def test_projection_lies_between_critical_path_and_total_work():
    r = recipe(pruning={"rounds": 5}, trials=2)
    seconds = lambda node: 10.0 if node.variant == "ticket" else 7.0  # noqa: E731
    one, total, critical = graph.project(r, seconds, 1)
    assert one == total == 2 * (10 + 4 * (10 + 7 + 7))
    assert critical == 10 + 3 * 10 + 10  # four tickets, then the last round's slowest variant
    many, _, _ = graph.project(r, seconds, 64)
    assert many == critical
    two, _, _ = graph.project(r, seconds, 2)
    assert critical <= two < one and two >= total / 2


# ---- claims ---------------------------------------------------------------------------------


def _race(path, queue):
    queue.put(claims.try_claim(path, claims.owner()))
    time.sleep(1)  # stay alive: the winner's claim must not look stale to the others


def test_of_several_processes_exactly_one_claims(tmp_path):
    path = layout.claim_file(tmp_path, 0, 1, "ticket")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    racers = [context.Process(target=_race, args=(path, queue)) for _ in range(6)]
    for racer in racers:
        racer.start()
    won = [queue.get(timeout=60) for _ in racers]
    for racer in racers:
        racer.join()
    assert won.count(True) == 1


def test_a_claim_records_its_owner_and_is_not_taken_while_it_lives(tmp_path):
    path = layout.claim_file(tmp_path, 0, 0, "ticket")
    me = claims.owner("w7")
    assert claims.try_claim(path, me)
    record = json.loads(path.read_text())
    assert record["host"] == claims.HOST and record["pid"] == os.getpid() and record["worker"] == "w7"
    assert "heartbeat" in record
    other = dict(me, pid=me["pid"], worker="other")
    assert not claims.try_claim(path, other)  # held by a live process
    claims.release(path, me)
    assert not path.exists()


def test_the_claim_of_a_dead_process_is_taken_over(tmp_path):
    path = layout.claim_file(tmp_path, 0, 0, "ticket")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": claims.HOST, "pid": gone.pid, "started": None, "heartbeat": time.time()}))
    assert claims.holder(path) is None
    me = claims.owner()
    assert claims.try_claim(path, me)
    assert claims.is_mine(path, me)
    assert not list(path.parent.glob("*.stale"))


def test_another_hosts_claim_is_stale_only_without_heartbeat(tmp_path):
    path = layout.claim_file(tmp_path, 0, 0, "ticket")
    path.parent.mkdir(parents=True)
    fresh = {"host": "elsewhere", "pid": 1, "heartbeat": time.time()}
    path.write_text(json.dumps(fresh))
    assert not claims.try_claim(path, claims.owner())
    path.write_text(json.dumps(dict(fresh, heartbeat=time.time() - claims.STALE_SECONDS - 1)))
    assert claims.try_claim(path, claims.owner())


def test_a_held_claim_beats_and_notices_when_it_is_taken(tmp_path):
    path = layout.claim_file(tmp_path, 0, 0, "ticket")
    me = claims.owner()
    assert claims.try_claim(path, me)
    with claims.Held(path, me, every=0.05) as held:
        first = json.loads(path.read_text())["heartbeat"]
        time.sleep(0.3)
        assert json.loads(path.read_text())["heartbeat"] > first and held.still_mine()
        path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "heartbeat": time.time()}))  # taken over
        time.sleep(0.3)
        assert held.lost and not held.still_mine()
    assert path.exists()  # what another worker holds is left alone


def test_the_shared_lock_is_exclusive_and_released(tmp_path):
    with claims.shared_lock(tmp_path):
        assert layout.shared_lock_file(tmp_path).exists()
        with pytest.raises(claims.SharedLockTimeout, match="remove the file"):
            with claims.shared_lock(tmp_path, me=dict(claims.owner(), pid=os.getpid()), timeout=0.2):
                pass
    assert not layout.shared_lock_file(tmp_path).exists()


def test_claim_file_names_round_trip(tmp_path):
    path = layout.claim_file(tmp_path, 3, 12, "random_prune")
    assert layout.claim_key(path) == (3, 12, "random_prune")
    assert layout.claim_key(layout.shared_lock_file(tmp_path)) is None


def test_workers_share_the_run_lock_and_an_analysis_waits_for_them(tmp_path):
    from keras_lottery.rundir import locking

    me = claims.owner()
    with locking.hold(tmp_path, shared=True), locking.hold(tmp_path, shared=True):  # two workers
        assert claims.try_claim(layout.claim_file(tmp_path, 0, 0, "ticket"), me)
        with pytest.raises(locking.RunLockedError, match=r"in use by 1 worker\(s\) training there; "
                                                         r"keras-lottery analyze waits"):
            with locking.hold(tmp_path):
                pass
    with locking.hold(tmp_path):  # free again: the analysis runs
        with pytest.raises(locking.RunLockedError, match="keeps workers out while it runs"):
            with locking.hold(tmp_path, shared=True):
                pass


def test_claims_of_gone_workers_are_cleared(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead, alive = layout.claim_file(tmp_path, 0, 1, "ticket"), layout.claim_file(tmp_path, 0, 1, "random_prune")
    dead.parent.mkdir(parents=True)
    dead.write_text(json.dumps({"host": claims.HOST, "pid": gone.pid, "heartbeat": time.time()}))
    assert claims.try_claim(alive, claims.owner())
    assert claims.clear_stale(tmp_path) == 1
    assert not dead.exists() and alive.exists()
