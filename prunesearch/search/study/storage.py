"""Opening a study's storage and the study itself, and which storage goes with which MLflow store.

SQLite (one machine) and any SQLAlchemy server database (PostgreSQL: many machines) are opened
through Optuna's ``RDBStorage``. With SQLite every transaction takes the write lock first, so
Optuna's read-check-update of a queued trial runs whole or waits (two workers never both take one).
"""

from __future__ import annotations

import time
import warnings
from urllib.parse import urlsplit, urlunsplit

import optuna
import sqlalchemy

from prunesearch.errors import PrunesearchError
from prunesearch.mlflow_log.store import default_study_storage, is_remote
from prunesearch.search.study.record import DIRECTIONS
from prunesearch.sqlite_lock import creation_lock
from prunesearch.sqlite_store import ensure_sqlite_store


def _sqlite_connect(dbapi_connection: object, record: object) -> None:
    """Let SQLAlchemy, not pysqlite, open transactions; WAL journal with fsync at checkpoints only."""
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: sqlalchemy.engine.Connection) -> None:
    """Every transaction takes the write lock first (SQLAlchemy's pysqlite recipe).

    pysqlite runs a SELECT outside any transaction and starts one only at the UPDATE, so two
    processes could both read a queued trial as WAITING and both take it; with ``BEGIN IMMEDIATE``
    Optuna's read-check-update runs whole or waits.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def redact(url: str) -> str:
    """A storage URL fit for logs: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _rdb_storage(url: str, sqlite: bool) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}} if sqlite else {})


# Schema creation racing with another process on a server database: the loser sees one of these.
_SCHEMA_RACE = ("already exists", "duplicate key", "unique constraint", "integrityerror")


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Connect to the study storage; safe when several processes create it at the same moment."""
    sqlite = url.startswith("sqlite")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # A new SQLite study is created whole (an interruption leaves no half-made file) and an existing
    # one checked first: an empty or damaged optuna.db is one line, never taken as a new study.
    ensure_sqlite_store(url, "the study storage", lambda new: _rdb_storage(new, True).engine.dispose())
    try:
        with creation_lock(url):
            for attempt in range(5):
                try:
                    storage = _rdb_storage(url, sqlite)
                    break
                except sqlalchemy.exc.SQLAlchemyError as err:
                    # Another process created the schema at the same moment; it exists now.
                    if attempt == 4 or not any(s in repr(err).lower() for s in _SCHEMA_RACE):
                        raise
                    time.sleep(0.2 * (attempt + 1))
    except ImportError:
        raise PrunesearchError(
            f"the study storage {redact(url)} needs a database driver that is not installed "
            "(PostgreSQL: pip install 'psycopg[binary]'; MySQL: pip install pymysql)"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrunesearchError(f"cannot open the study storage {redact(url)}: {first}") from None
    if sqlite:
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_connect)
        sqlalchemy.event.listen(storage.engine, "begin", _sqlite_begin)
        storage.engine.dispose()
    return storage


def open_study(
    storage: str | optuna.storages.RDBStorage, name: str, sampler: optuna.samplers.BaseSampler, primary: str = "target"
) -> optuna.Study:
    """Create the study, or load it to resume: the same name in the same storage is the same search.

    The objectives are named (``ao``, ``latency_ms.<primary target>``) for optuna-dashboard.
    """
    if isinstance(storage, str):
        storage = open_storage(storage)
    study = optuna.create_study(
        storage=storage, study_name=name, directions=list(DIRECTIONS), sampler=sampler, load_if_exists=True
    )
    if study.metric_names is None:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["ao", f"latency_ms.{primary}"])
    return study


def study_storage(uri: str, storage: str | None) -> str:
    """The study storage to use with the MLflow store ``uri``: machines share both or neither.

    A tracking server with a local SQLite study would give every machine its own study, each
    training everything into one experiment; a shared study with a local MLflow store would
    scatter the runs. Both are refused.
    """
    if storage is None:
        if is_remote(uri):
            raise PrunesearchError(
                f"MLFLOW_TRACKING_URI is the shared store {uri} but no --storage was given: every machine would "
                "run its own study in ./optuna.db; pass the same --storage postgresql://USER:PASSWORD@HOST/DB on every machine"
            )
        return default_study_storage(uri)
    if is_remote(storage) and not is_remote(uri):
        raise PrunesearchError(
            f"--storage {redact(storage)} is shared but MLflow logs to the local store {uri}; "
            "set MLFLOW_TRACKING_URI to the shared MLflow server (http://HOST:5000) on every machine"
        )
    if is_remote(uri) and not is_remote(storage):
        raise PrunesearchError(
            f"MLFLOW_TRACKING_URI is the shared store {uri} but --storage {redact(storage)} is local to this machine; "
            "pass a shared --storage postgresql://USER:PASSWORD@HOST/DB on every machine"
        )
    return storage
