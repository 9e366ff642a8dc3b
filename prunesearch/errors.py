"""The one exception type a user is meant to see.

Anything raised as :class:`PrunesearchError` is a problem with the user's input (a path, a flag,
a file); the CLI prints its message as a single line and exits non-zero. Every other exception is a
bug and keeps its traceback.
"""


class PrunesearchError(Exception):
    """A user-facing error: the message says what was wrong and what to do about it."""


class PrunesearchWarning(UserWarning):
    """Something the user should know that does not stop the command (e.g. a skipped damaged frame).

    The CLI prints it as one line, ``prunesearch: warning: ...``.
    """
