"""The error every model problem raises (TensorFlow-free, so recipe parsing can raise it)."""

from keras_lottery.errors import UsageError


class ModelError(UsageError):
    """A model that keras-lottery cannot build, prune or train; the one-line message says the fix.

    A :class:`~keras_lottery.errors.UsageError`, hence a ``ValueError``.
    """
