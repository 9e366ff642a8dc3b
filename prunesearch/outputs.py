"""The one way prunesearch writes an output file or folder: checked up front, written whole or not at all.

Every writer (a latency table, ONNX graphs, evaluation results, synthetic data, a trained teacher)
goes through :func:`check_output` before any work and :func:`output_file` / :func:`output_folder`
for the write itself, so that

- a place that cannot be written (a read-only or full disk, a file where a folder belongs, a name
  with a path separator, ``..``, an empty or over-long name) is refused in one line naming the path
  before anything is computed, and nothing is created for a refused command;
- the result appears under its name only when complete: it is written to a temporary name beside
  it and renamed, and the temporary is removed on any failure, Ctrl-C included;
- an ``OSError`` while writing (EROFS, ENOSPC, EISDIR, ENOTDIR, ENAMETOOLONG, EACCES) is a
  :class:`~prunesearch.errors.StorageError` naming the path, not a traceback.

Running as root, ``os.access`` says yes to nearly everything, so writability is also probed by
creating (and removing) a temporary file in the folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prunesearch.errors import InputError, StorageError

TEMP_PREFIX = ".tmp-"
# Room kept free beyond a writer's own estimate: file-system metadata, logs, other writers.
HEADROOM = 16 << 20
_REASONS = {
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EISDIR: "a folder is in the way",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "the name is too long for the file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "the path has a symlink loop",
    errno.ENOENT: "a folder on the way does not exist",
}


def os_reason(err: OSError) -> str:
    """What the system refused, in words (``the name is too long for the file system``, ...)."""
    return _REASONS.get(err.errno or 0, err.strerror or type(err).__name__)


def storage_error(err: OSError, path: str | Path, flag: str = "") -> StorageError:
    """``err`` as one line naming ``path`` (and the flag that gave it) and what went wrong."""
    return StorageError(f"{flag + ' ' if flag else ''}cannot write {path}: {os_reason(err)}")


def check_name(name: str, flag: str = "--name", hidden: bool = False) -> str:
    """``name`` if it is a plain file name (no folder part, not ``.``/``..``, not hidden unless
    ``hidden``, within the system's name limit); otherwise a one-line error naming ``flag``."""
    if not name or not name.strip():
        problem = "must not be empty"
    elif "/" in name or os.sep in name or (os.altsep and os.altsep in name) or "\0" in name:
        problem = "must be a plain file name, without a folder part ('/')"
    elif name in (".", ".."):
        problem = "must be a file name, not '.' or '..'"
    elif name.startswith(".") and not hidden:
        problem = "must not start with '.' (that would be a hidden file)"
    elif len(os.fsencode(name)) > _name_max():
        problem = f"is {len(os.fsencode(name))} bytes long; the file system allows {_name_max()}"
    else:
        return name
    raise InputError(f"{flag} {name[:60]!r} {problem}")


def _name_max(folder: Path | None = None) -> int:
    try:
        return os.pathconf(folder or "/", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _existing_ancestor(folder: Path) -> Path:
    """The nearest folder on the way to ``folder`` that exists (``folder`` itself if it does)."""
    probe = folder
    while True:
        try:
            os.stat(probe)
            return probe
        except FileNotFoundError:
            if probe.parent == probe:
                return probe
            probe = probe.parent


def check_output(path: str | Path, flag: str = "--out", estimate: int = 0, folder: bool = False,
                 hidden: bool = False) -> Path:
    """Check that ``path`` can be written (a file, or with ``folder`` a folder) without writing it.

    The checks: the path is not empty; its last part is a plain name; what is already at ``path`` is
    of the right kind (a file for a file, a folder for a folder); the nearest existing folder on the
    way is a folder, writable (probed with a real file) and has ``estimate`` bytes (plus
    :data:`HEADROOM`) free. Creates nothing. Returns ``path`` as a :class:`Path`.
    """
    if str(path) == "" or not str(path).strip():
        raise InputError(f"{flag} must not be empty (give a {'folder' if folder else 'file'} path)")
    path = Path(path)
    if not (folder and path.name in ("", "..")):  # a folder may be '.' or '..'; a file needs a plain name
        check_name(path.name, flag, hidden=hidden)
    if len(os.fsencode(str(path.absolute()))) > 4000:
        raise StorageError(f"{flag} {str(path)[:60]}...: the path is too long for the file system")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise storage_error(err, path, flag) from None
    if st is not None:
        if folder and not stat.S_ISDIR(st.st_mode):
            raise StorageError(f"{flag} {path} is a file; give a folder")
        if not folder and stat.S_ISDIR(st.st_mode):
            raise StorageError(f"{flag} {path} is a folder; give a file name")
        if not folder and not stat.S_ISREG(st.st_mode):
            raise StorageError(f"{flag} {path} exists and is not a regular file (a device, FIFO or socket); give a file name")
    parent = path if folder and st is not None else path.parent
    try:
        base = _existing_ancestor(parent.absolute())
    except OSError as err:  # a folder on the way that cannot be searched (chmod 000) or a link loop
        raise storage_error(err, path, flag) from None
    if not base.is_dir():
        raise StorageError(f"{flag} cannot write {path}: {base} is a file, not a folder")
    _probe(base, path, flag)
    free = shutil.disk_usage(base).free
    if free < estimate + HEADROOM:
        raise StorageError(f"{flag} cannot write {path}: {free >> 20} MiB free on {base}, "
                           f"about {(estimate + HEADROOM) >> 20} MiB needed")
    return path


def _probe(folder: Path, path: Path, flag: str) -> None:
    """Create and remove a file in ``folder``: the only check that holds for root and read-only mounts."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(f"{flag} cannot write {path}: {folder} is not writable")
    try:
        fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
    except OSError as err:
        raise storage_error(err, path, flag) from None
    os.close(fd)
    os.unlink(probe)


@contextmanager
def _created_parents(folder: Path, path: Path, flag: str) -> Iterator[None]:
    """Make ``folder`` (and the folders above it) for the write; remove those made here if it fails."""
    made: list[Path] = []
    probe = folder.absolute()
    while not probe.exists():
        made.append(probe)
        probe = probe.parent
    try:
        for f in reversed(made):
            f.mkdir()
    except OSError as err:
        _remove_made(made)
        raise storage_error(err, path, flag) from None
    try:
        yield
    except BaseException:
        _remove_made(made)
        raise


def _remove_made(made: list[Path]) -> None:
    for f in made:  # deepest first; only if still empty
        try:
            f.rmdir()
        except OSError:
            pass


@contextmanager
def output_file(path: str | Path, flag: str = "--out", estimate: int = 0, hidden: bool = False) -> Iterator[Path]:
    """Write one file: yields a temporary path beside ``path`` to write; renamed to ``path`` when
    the block ends without error, removed on any failure (Ctrl-C included).

    ``path`` is checked first (:func:`check_output`); folders on the way are created, and removed
    again if the write fails.
    """
    path = check_output(path, flag, estimate, hidden=hidden)
    with _created_parents(path.parent, path, flag):
        try:
            fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=f"-{path.name}"[-60:], dir=path.parent)
        except OSError as err:
            raise storage_error(err, path, flag) from None
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            os.replace(tmp, path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise storage_error(err, path, flag) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


@contextmanager
def output_folder(path: str | Path, flag: str = "--out", estimate: int = 0) -> Iterator[Path]:
    """Write a folder's contents: yields a temporary folder beside ``path``; when the block ends
    without error it becomes ``path`` (or, where ``path`` exists, its entries are moved into it,
    replacing files of the same name); on any failure it is removed and ``path`` is as it was.
    """
    path = check_output(path, flag, estimate, folder=True)
    existing = path.is_dir()
    beside = path if existing else path.parent  # inside an existing folder: the one known to be writable
    with _created_parents(beside, path, flag):
        try:
            tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=f"-{path.absolute().name}"[-60:], dir=beside))
        except OSError as err:
            raise storage_error(err, path, flag) from None
        try:
            yield tmp
            if existing:
                _merge(tmp, path)
            else:
                os.rename(tmp, path)
        except OSError as err:
            raise storage_error(err, path, flag) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _merge(source: Path, target: Path) -> None:
    """Move every entry of ``source`` into ``target`` (folders merged, files replaced)."""
    for entry in list(source.iterdir()):
        dest = target / entry.name
        if entry.is_dir() and dest.is_dir():
            _merge(entry, dest)
        else:
            if dest.is_dir():
                raise IsADirectoryError(errno.EISDIR, "a folder is in the way", str(dest))
            os.replace(entry, dest)
