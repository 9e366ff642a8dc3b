"""Where latency tables live and how a target name finds its file.

Two places, searched in this order:

* ``./latency_models/`` in the working directory: the user's own tables (``prunesearch profile``
  writes there by default);
* the tables shipped with prunesearch: the repository's ``latency_models/``, packaged as
  ``prunesearch/latency/shipped_tables`` (a link to it in the source tree, a copy in a wheel).

A local table with a shipped table's name takes precedence, so a user can re-measure a target.
"""

from __future__ import annotations

from pathlib import Path

from prunesearch.errors import InputError
from prunesearch.latency.table import LatencyTable, read_table

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped_tables"
LOCAL_DIRNAME = "latency_models"


def table_dirs() -> list[Path]:
    """Table folders in lookup order, each listed once."""
    dirs: list[Path] = []
    for d in (Path.cwd() / LOCAL_DIRNAME, SHIPPED_DIR):
        if d.is_dir() and all(d.resolve() != seen.resolve() for seen in dirs):
            dirs.append(d)
    return dirs


def known_targets() -> list[str]:
    """Names of every table found locally or shipped."""
    return sorted({p.stem for d in table_dirs() for p in d.glob("*.yaml")})


def table_path(target: str) -> Path:
    """The file a target name (or a path to a ``.yaml`` file) refers to."""
    candidate = Path(target)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        if not candidate.is_file():
            raise InputError(f"latency table file {target} does not exist")
        return candidate
    for d in table_dirs():
        path = d / f"{target}.yaml"
        if path.is_file():
            return path
    known = ", ".join(known_targets()) or "none"
    raise InputError(
        f"unknown latency target {target!r}; known targets: {known} "
        f"(or measure one here with 'prunesearch profile --name {target}')"
    )


def load_table(target_or_path: str | Path) -> LatencyTable:
    """Load a table by target name (see :func:`known_targets`) or by path."""
    return read_table(table_path(str(target_or_path)))
