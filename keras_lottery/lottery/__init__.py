"""Rounds: trials x rounds x variants, rewinding, mid-round checkpoints, failed rounds."""

from keras_lottery.lottery.experiment import Experiment, RunDirError, claim_run_dir, derive_seed, run, run_dir_for, start_weights  # noqa: F401,E501
