"""The exceptions a user is meant to see, one hierarchy under :class:`PrunesearchError`.

Anything raised as a :class:`PrunesearchError` is something the user can fix (a path, a flag, a
file, a full disk, a device that is not there); the CLI prints its message as a single line and
exits non-zero. Every other exception is a bug and keeps its traceback. The subclasses let scripts
and tests tell a mistake in the input from a store or a machine that let them down.
"""


class PrunesearchError(Exception):
    """A user-facing error: the message says what was wrong and what to do about it."""


class InputError(PrunesearchError):
    """A value, flag or file the user gave is not allowed (the message names it and what is)."""


class StorageError(PrunesearchError):
    """A store or output place (the study, the MLflow store, a folder to write) cannot be used."""


class CheckpointError(PrunesearchError):
    """A checkpoint file cannot be read, is not what it claims, or asks for more than allowed."""


class DeviceError(PrunesearchError):
    """A device, runtime or execution provider that was asked for is not there or not usable."""


class PrunesearchWarning(UserWarning):
    """Something the user should know that does not stop the command (e.g. a skipped damaged frame).

    The CLI prints it as one line, ``prunesearch: warning: ...``.
    """
