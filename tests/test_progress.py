"""What a run shows while it trains: plain lines, the live display, quiet; the ETA on a fake clock."""

import io

from keras_lottery.reporting import progress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def row(iteration, val=0.9, test=0.8):
    return {"iteration": iteration, "val_loss": 0.5, "val_accuracy": val, "test_accuracy": test}


def test_eta_is_work_left_at_the_measured_speed():
    clock = Clock()
    shown = progress.Progress(clock)
    shown.tally(0, 3, 3000)  # three trainings of 1000 steps
    assert shown.eta() is None and "ETA measuring" in shown.overall()
    shown.started("t0 r0 ticket", 100.0, 0, 1000, 100)
    clock.now += 10
    shown.evaluated("t0 r0 ticket", row(500))  # 500 steps in 10 s: 50 steps/s
    assert shown.eta() == (3000 - 500) / 50
    clock.now += 10
    shown.finished("t0 r0 ticket", "done")
    shown.tally(1, 3, 2000)
    assert shown.eta() == 2000 / 50
    assert shown.overall() == "1/3 trainings done, 0:20 elapsed, ETA 0:40"


def test_eta_counts_every_worker_and_a_resumed_training_from_where_it_resumed():
    clock = Clock()
    shown = progress.Progress(clock)
    shown.tally(0, 4, 4000)
    shown.started("a", 100.0, 0, 1000, 100, worker="w1")
    shown.started("b", 100.0, 0, 1000, 100, worker="w2")
    shown.resumed("b", 600, worker="w2")
    clock.now += 10
    shown.evaluated("a", row(200), worker="w1")
    shown.evaluated("b", row(800), worker="w2")
    assert shown.in_flight() == 400  # 200 + (800 - 600)
    assert shown.eta() == (4000 - 400) / 40


def test_plain_prints_todays_lines_thinned_and_an_overall_line():
    lines, clock = [], Clock()
    shown = progress.Plain(lines.append, clock)
    shown.tally(0, 2, 2000)
    shown.started("trial 0 round 0/1 ticket", 100.0, 0, 1000, 10, worker=None)
    for iteration in range(10, 1001, 10):  # 100 evaluations
        clock.now += 0.1
        shown.evaluated("trial 0 round 0/1 ticket", row(iteration))
    shown.finished("trial 0 round 0/1 ticket", "trial 0 round 0/1 ticket: 100.0% weights, early stop ...")
    shown.tally(1, 2, 1000)
    assert lines[0] == "trial 0 round 0/1 ticket: training 100.0% of weights for 1000 iterations"
    evaluations = [line for line in lines if " iteration " in line]
    assert 5 <= len(evaluations) <= 20
    assert evaluations[0].startswith("  trial 0 round 0/1 ticket iteration 10/1000: val loss 0.5000 val acc 0.9000")
    assert lines[-2].endswith("early stop ...")
    assert lines[-1].startswith("progress: 1/2 trainings done, 0:10 elapsed, ETA 0:10")


def test_plain_names_each_workers_lines():
    lines = []
    shown = progress.Plain(lines.append, Clock())
    shown.started("trial 0 round 1/1 ticket", 70.0, 0, 100, 10, worker="w2")
    shown.line("a note", worker="w1")
    assert lines == ["[w2] trial 0 round 1/1 ticket: training 70.0% of weights for 100 iterations", "[w1] a note"]


def test_quiet_shows_nothing(capsys):
    shown = progress.choose(quiet=True)
    shown.line("x")
    shown.started("a", 1.0, 0, 10, 1)
    shown.evaluated("a", row(1))
    shown.finished("a", "done")
    assert capsys.readouterr().out == ""


def test_not_a_terminal_gets_plain_lines():
    assert isinstance(progress.choose(stream=io.StringIO()), progress.Plain)
    assert isinstance(progress.choose(plain=True), progress.Plain)


def test_live_display_shows_the_run_and_each_worker():
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system=None)
    clock = Clock()
    shown = progress.Live(["w1", "w2"], clock=clock, console=console)
    try:
        shown.tally(2, 10, 8000)
        shown.started("trial 0 round 3/9 ticket", 34.3, 0, 1000, 100, worker="w1")
        clock.now += 5
        shown.evaluated("trial 0 round 3/9 ticket", row(400, 0.9512, 0.9633), worker="w1")
        rendered = io.StringIO()
        Console(file=rendered, width=140, color_system=None).print(shown._render())
        screen = rendered.getvalue()
        assert "2/10 trainings done, 0:05 elapsed, ETA 1:35" in screen
        assert "trial 0 round 3/9 ticket iteration 400/1000: val acc 0.9512 test acc 0.9633" in screen
        assert "w2" in screen and "waiting for a training that is ready" in screen
        shown.finished("trial 0 round 3/9 ticket", "trial 0 round 3/9 ticket: done line", worker="w1")
    finally:
        shown.close()
    assert "[w1] trial 0 round 3/9 ticket: done line" in out.getvalue()


def test_a_workers_calls_travel_as_lines_and_replay_on_the_parent():
    sent, lines = [], []
    relay = progress.Relay(sent.append)
    relay.line("keras: something")
    relay.started("trial 0 round 1/2 ticket", 70.6, 0, 400, 50)
    relay.evaluated("trial 0 round 1/2 ticket", dict(row(50), note=object()))
    relay.finished("trial 0 round 1/2 ticket", "trial 0 round 1/2 ticket: finished")
    parent = progress.Plain(lines.append, Clock())
    for text in sent + ["a line TensorFlow wrote"]:
        progress.replay(text, parent, "w2")
    assert lines[0] == "[w2] keras: something"
    assert lines[1] == "[w2] trial 0 round 1/2 ticket: training 70.6% of weights for 400 iterations"
    assert lines[2].startswith("[w2]   trial 0 round 1/2 ticket iteration 50/400: val loss 0.5000")
    assert lines[3:] == ["[w2] trial 0 round 1/2 ticket: finished", "[w2] a line TensorFlow wrote"]


# ---- the command line ------------------------------------------------------------------------

def _cli_recipe(tmp_path):
    from conftest import TINY, merge, save_recipe

    return save_recipe(tmp_path, merge(TINY, {"pruning": {"rounds": 2}, "controls": ["random_reinit"]}))


def test_run_on_a_terminal_shows_the_live_display(tmp_path):
    """On a pseudo-terminal: the overall line with the count of trainings and the ETA, a
    line for the training, and none of the per-evaluation lines of plain output."""
    import os
    import pty
    import subprocess
    import sys

    from conftest import ROOT

    recipe = _cli_recipe(tmp_path)
    leader, follower = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", COLUMNS="160", TERM="xterm")
    process = subprocess.Popen([sys.executable, "-m", "keras_lottery", "run", str(recipe), "--out",
                                str(tmp_path / "run")], stdin=follower, stdout=follower, stderr=follower,
                               env=env, cwd=ROOT)
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        screen += chunk
    process.wait(timeout=300)
    os.close(leader)
    text = screen.decode(errors="replace")
    assert process.returncode == 0, text[-3000:]
    assert "3/3 trainings done" in text and "ETA" in text and "elapsed" in text
    assert "trial 0 round 1/1 random_reinit iteration" in text  # the training's own line
    assert "trial 0 round 1/1 ticket: " in text and "early stop at iteration" in text  # finished lines stay
    assert "val loss" not in text  # plain output's evaluation lines are not printed
    assert "ticket ES iter" in text  # the final table


def test_quiet_prints_only_the_final_table(tmp_path):
    from click.testing import CliRunner

    from keras_lottery.cli import main

    result = CliRunner().invoke(main, ["run", str(_cli_recipe(tmp_path)), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("round remaining") and len(lines) == 2 + 2, result.output
    assert (tmp_path / "run" / "report" / "report.md").is_file()
