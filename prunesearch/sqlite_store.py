"""SQLite stores (the MLflow store, the Optuna study) that an interruption cannot break, and that
are checked when opened.

A store is created whole or not at all: its tables are made (and migrated) in a file with a
temporary name beside it, which is renamed into place only once complete. A kill, Ctrl-C or full
disk during creation leaves at most that temporary file, removed by the next creation; the store's
own name never holds a half-made database that every later command fails on.

An existing store is checked before use: an empty (0-byte) file, one that is not SQLite, one cut
short, or one whose pages are damaged (``PRAGMA quick_check``) is one line naming the file and what
to do. An empty file is never taken as a new store: the other store may hold results for it (a
0-byte study beside a full MLflow store would otherwise train every candidate again).
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prunesearch.errors import PrunesearchError, StorageError
from prunesearch.sqlite_lock import creation_lock, sqlite_path

HEADER = b"SQLite format 3\x00"
HEADER_BYTES = 100
# quick_check reads every page (about a second per GB); beyond this the header checks alone run.
QUICK_CHECK_MAX_BYTES = 1 << 30
BUSY_TIMEOUT_S = 30.0
CREATING = ".creating-"  # temporary name of a store being created: .<name>.creating-<pid>
SIDECARS = ("-journal", "-wal", "-shm")
_CHECKED: set[tuple[str, int, int]] = set()  # (path, size, mtime) already checked by this process


def _what_to_do(path: Path) -> str:
    return f"restore {path.name} from a backup, or move it away to start afresh (what it held is then lost)"


def check_sqlite_store(path: str | Path, what: str) -> None:
    """Refuse, in one line naming ``path`` (``what`` says which store), a SQLite file that cannot be a
    whole store: a folder, unreadable, empty, not SQLite, shorter than its header says, or failing
    ``PRAGMA quick_check``. A missing file is not checked here (it is a store yet to be created)."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise StorageError(f"{what} {path} is not a file; point it at a SQLite database file")
        with path.open("rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as err:
        raise StorageError(f"cannot read {what} {path}: {err.strerror or err}") from None
    key = (str(path.resolve()), info.st_size, info.st_mtime_ns)
    if key in _CHECKED:
        return
    if info.st_size == 0:
        raise StorageError(
            f"{what} {path} is empty (0 bytes), e.g. after an interrupted first run, a full disk or a failed copy; "
            f"it is not taken as a new store because the other store may hold results for it: {_what_to_do(path)}"
        )
    if not head.startswith(HEADER):
        raise StorageError(f"{what} {path} is not a SQLite database (it does not start with SQLite's header); {_what_to_do(path)}")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if len(head) < HEADER_BYTES or page_size < 512 or page_size & (page_size - 1):
        raise StorageError(f"{what} {path} has a damaged SQLite header; {_what_to_do(path)}")
    pages = int.from_bytes(head[28:32], "big")
    header_valid = head[24:28] == head[92:96]  # SQLite's rule for trusting the page count in the header
    writing = any(Path(f"{path}{s}").exists() for s in SIDECARS)  # a writer may be growing the file now
    if not writing and (info.st_size % page_size or (header_valid and info.st_size < pages * page_size)):
        raise StorageError(
            f"{what} {path} is truncated ({info.st_size} bytes where its header says {pages * page_size}); {_what_to_do(path)}"
        )
    if info.st_size <= QUICK_CHECK_MAX_BYTES:
        problem = _quick_check(path)
        if problem is not None:
            raise StorageError(f"{what} {path} is damaged (SQLite quick_check: {problem}); {_what_to_do(path)}")
    _CHECKED.add(key)


@contextmanager
def sqlite_connection(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to an existing SQLite file that never creates one (read-only where it cannot write)."""
    uri = path.resolve().as_uri()
    try:
        connection = sqlite3.connect(f"{uri}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.OperationalError:
        connection = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        yield connection
    finally:
        connection.close()


def _quick_check(path: Path) -> str | None:
    """The first problem ``PRAGMA quick_check`` finds, or None (also when another process holds a lock)."""
    try:
        with sqlite_connection(path) as connection:
            rows = connection.execute("PRAGMA quick_check(3)").fetchall()
    except sqlite3.OperationalError as err:
        return None if "locked" in str(err) or "busy" in str(err) else str(err)
    except sqlite3.DatabaseError as err:
        return str(err)
    found = [str(row[0]) for row in rows]
    return None if found == ["ok"] else "; ".join(found)[:200]


def ensure_sqlite_store(url: str, what: str, create: Callable[[str], None]) -> Path | None:
    """The file of a SQLite ``url``, checked if it exists, else created whole; None for other URLs.

    ``create(temporary_url)`` makes the store's tables in a file beside it (a URL of the same form);
    it is renamed into place only when ``create`` returns, under :func:`creation_lock` so that
    processes starting at once create it once. Leftovers of a creation that was killed are removed.
    """
    path = sqlite_path(url)
    if path is None:
        return None
    # A missing folder is a typo more often than a wish: refused, as SQLite itself would.
    if not path.parent.is_dir():
        raise StorageError(f"cannot open {what} {path}: the folder {path.parent} does not exist; create it first")
    with creation_lock(url):
        if path.exists() or path.is_symlink():
            check_sqlite_store(path, what)
            return path
        for stale in path.parent.glob(f".{path.name}{CREATING}*"):
            _discard(stale)
        temporary = path.with_name(f".{path.name}{CREATING}{os.getpid()}")
        try:
            create(f"sqlite:///{temporary}")
            _sync(temporary)
            os.replace(temporary, path)
            _sync(path.parent)
        except BaseException as err:
            _discard(temporary)
            if isinstance(err, PrunesearchError) or not isinstance(err, Exception):
                raise
            raise StorageError(_creation_failure(path, what, err)) from None
    return path


def _sync(path: Path) -> None:
    """Data (a file) or the rename (a folder) on disk before anyone relies on it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(path: Path) -> None:
    for name in (str(path), *(f"{path}{s}" for s in SIDECARS)):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


def _creation_failure(path: Path, what: str, err: Exception) -> str:
    """One line for a store that could not be created; SQLite says "disk is full" for ENOSPC and EFBIG."""
    text = " ".join(str(err).split()).split(" [SQL:")[0].split(" (Background on this error")[0]
    full = getattr(err, "errno", None) in (errno.ENOSPC, errno.EFBIG) or "disk is full" in text or "No space" in text
    try:
        full = full or shutil.disk_usage(path.parent).free < (1 << 20)
    except OSError:
        pass
    if full:
        return f"no space left in {path.absolute().parent} while creating {what} {path}; free some space and run the same command again"
    return f"cannot create {what} {path}: {text[:200] or type(err).__name__}"
