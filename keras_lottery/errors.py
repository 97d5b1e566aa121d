"""The package's errors. Every error a user can fix by changing what they passed (a
recipe, data, a model, a run directory, options) is a :class:`UsageError`: its message
is one line naming the problem and the fix, and the command line exits with code 2."""


class UsageError(ValueError):
    """Input that cannot be used; the message says what to change."""
