"""The one exception type that reaches users as a one-line message instead of a traceback."""


class UserError(ValueError):
    """Bad input or a missing resource: the message names the bad value and what is allowed."""


class StopRun(Exception):
    """Raised inside training to end a run early on purpose (an Optuna pruning decision): the run
    is marked with `status`, not FAILED."""

    status = "KILLED"


class RunFailure(RuntimeError):
    """A failure whose message says it all (a non-finite loss): a run it ends records the
    message itself as its `kdtrack.failure`, without the exception's type."""
