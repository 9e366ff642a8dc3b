"""Creating a SQLite store safely when several processes start at once in a fresh folder.

MLflow migrates its database and Optuna creates its tables on first use; two processes doing it
together leave a half-migrated file that every later command fails on. Both stores are first
opened under a lock file beside the database. Server databases serialise this themselves.
(Creating a store whole, and checking one when it is opened: :mod:`prunesearch.sqlite_store`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (query parameters dropped), else None (also for ``:memory:``)."""
    if not url.startswith("sqlite:///"):
        return None
    name = url[len("sqlite:///"):].split("?", 1)[0]
    return Path(name) if name and name != ":memory:" else None


@contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """Hold ``<database>.lock`` while inside, for a SQLite URL in an existing folder; else nothing."""
    path = sqlite_path(url)
    if path is None or not path.parent.is_dir():
        yield
        return
    from filelock import FileLock

    with FileLock(str(path) + ".lock", timeout=600):
        yield
