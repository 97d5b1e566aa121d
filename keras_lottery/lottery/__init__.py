"""Rounds: trials x rounds x variants, rewinding, mid-round checkpoints, failed rounds.

- :mod:`.variants`: the registry of what a round trains (the ticket and the controls);
- :mod:`.rewinding`: the registry of rewinding modes (where a pruned round starts);
- :mod:`.rounds`: one trial's round as the variants see it, and the rules that say which
  variants a round trains and which round a ticket is pruned from;
- :mod:`.graph`: the experiment as a graph of trainings (what each reads and waits for);
- :mod:`.experiment`: the experiment: set up the run directory, train every training;
- :mod:`.workers`: the processes that claim ready trainings and train them;
- :mod:`.checkpoints`, :mod:`.failures`: mid-round checkpoints and diverged rounds.

The registries are TensorFlow-free (parsing a recipe reads them); the experiment is
imported on first use.
"""

_LAZY = ("Experiment", "RunDirError", "claim_run_dir", "join", "join_pool", "run", "run_dir_for")


def __getattr__(name):
    if name in _LAZY:
        from keras_lottery.lottery import experiment

        return getattr(experiment, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
