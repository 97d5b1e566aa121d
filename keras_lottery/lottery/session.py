"""A training session: one variant of one round, from its plan to its outcome.

:func:`train` seeds the random state, restarts the optimizer at the plan's iteration,
sets ``masks ⊙ weights`` (:class:`~keras_lottery.lottery.callbacks.Rewind`, which also
captures θk in the dense round), resumes from the newest mid-round checkpoint
(:mod:`.checkpoints`), evaluates the network it starts from before any update (the
start accuracy: for a ticket pruned by ``large_final_same_sign`` from θ0, Zhou et al.'s
supermask), feeds the seeded data stream from the right step, reports
progress, and trains to the end of the schedule. It returns an :class:`Outcome`, or
raises :class:`Diverged` carrying the curve so far.
"""

from dataclasses import dataclass
from typing import Optional

from keras_lottery import data, distribute, masking, training
from keras_lottery.data import augment
from keras_lottery.training import evaluation
from keras_lottery.lottery import checkpoints
from keras_lottery.lottery.callbacks import Rewind, restore
from keras_lottery.lottery.rounds import derive_seed
from keras_lottery.backend import keras


@dataclass
class Outcome:
    curve: list  # every evaluation of the round, including those before a resume
    weights: dict  # trained weights, masked entries exactly zero
    theta_k: Optional[dict]  # the weights captured at the rewind iteration (dense round)
    seconds: float
    start: Optional[dict] = None  # test_loss and test_accuracy of masks ⊙ weights, before any update
    # (iteration, predicted class of every test example) at the early-stop evaluation, or None
    # when unknown (early stop before a resume from a checkpoint made before 0.2)
    predictions: Optional[tuple] = None


class Diverged(Exception):
    def __init__(self, error, curve, seconds, start=None):
        super().__init__(str(error))
        self.error, self.curve, self.seconds, self.start = error, curve, seconds, start


def train(experiment, plan, folder, label, claim=None):
    """Train ``plan`` on ``experiment``'s model; checkpoints go to ``folder``. ``claim``
    (a :class:`keras_lottery.rundir.claims.Held`) stops the training with :class:`ClaimLost`
    at the next evaluation if another worker took the training over."""
    recipe, config, model = experiment.recipe, experiment.recipe.training, experiment.model
    train_seed = plan.train_seed
    if train_seed is None:
        train_seed = derive_seed(recipe.seed, plan.trial, plan.round, plan.variant, "train")
    keras.utils.set_random_seed(train_seed)
    training.reset_optimizer(model, plan.start_iteration)
    training.hold_learning_rate(model, plan.learning_rate_at)
    rewind = Rewind(save_at=plan.capture_at, weights=plan.weights, masks=plan.masks)
    several_workers = distribute.task(experiment.strategy)[0] is not None
    resume = checkpoints.MidRound(folder, config, model, rewind, experiment.log, same_cadence_everywhere=several_workers)
    resume.start = start_metrics(experiment, plan)  # a checkpoint's saved value replaces it (the same)
    start = resume.restore(plan.start_iteration)
    stream = data.train_stream(
        experiment.splits.x_train, experiment.splits.y_train, config.batch_size,
        seed=derive_seed(recipe.seed, plan.trial, "data") if plan.data_seed is None else plan.data_seed,
        start_step=start,
        augment=augment.flip_and_crop if recipe.dataset.augment else None,
    )
    experiment.progress.started(label, plan.weights_remaining, plan.start_iteration, config.iterations,
                                config.eval_every)
    if resume.resumed_at is not None:
        experiment.progress.resumed(label, resume.resumed_at)
    progress = _progress(experiment.progress, label, resume, claim)
    try:
        training.train(
            model, stream, experiment.val_data, experiment.test_data, config,
            start_iteration=start, callbacks=[rewind], progress=progress, late_callbacks=[resume],
            predictions=resume.record_predictions,
        )
    except training.DivergedError as err:
        raise Diverged(err, resume.curve, resume.seconds(), resume.start) from None
    masking.apply_masks(model)
    return Outcome(curve=resume.curve, weights=masking.get_weights(model), theta_k=rewind.saved,
                   seconds=resume.seconds(), start=resume.start, predictions=resume.best_predictions())


def start_metrics(experiment, plan):
    """Test loss and accuracy of the network ``plan`` starts from (``masks ⊙ weights``),
    before any update. Leaves the model holding that network."""
    restore(experiment.model, plan.weights, plan.masks)
    with experiment.strategy.scope():  # as inside fit: the wrappers' mask updates reach every replica
        evaluated = evaluation.evaluator(experiment.model, experiment.val_data, experiment.test_data)()
    return {"test_loss": evaluated["test"]["loss"], "test_accuracy": evaluated["test"]["accuracy"]}


class ClaimLost(Exception):
    """Another worker took this training over (see :mod:`keras_lottery.rundir.claims`)."""


def _progress(display, label, resume, claim=None):
    """Record every evaluation for checkpoints and show it (:mod:`keras_lottery.reporting.progress`)."""

    def progress(row):
        if claim is not None and claim.lost:
            raise ClaimLost(label)
        resume.record(row)
        display.evaluated(label, row)

    return progress
