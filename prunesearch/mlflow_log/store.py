"""Where the MLflow store is, how it is opened (created whole, checked, with a deadline per call to a
tracking server), the Optuna study storage that lives beside it by default, and the names and
filter strings that go into it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from prunesearch.errors import InputError, PrunesearchError, StorageError
from prunesearch.sqlite_lock import creation_lock, sqlite_path
from prunesearch.sqlite_store import ensure_sqlite_store, sqlite_connection

# How long a tracking server has to answer one request, and how often it is tried, unless the user
# sets MLflow's own variables (MLflow's defaults, 120 s and 7 retries with back-off, keep a search
# silent for minutes per call when the server is down).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
}
# A registered model is named ``<experiment>.<candidate>[.stand-in]``; MLflow server databases
# hold 256 characters, and the longest candidate part is about 40.
MAX_EXPERIMENT_NAME = 200
WHAT = "the MLflow store"


def quiet() -> None:
    """MLflow and its migrations log at INFO on first use, a tracking server's client prints a
    link for every run it ends, and downloads draw progress bars; keep the terminal for the search."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Reading back one small file per run would otherwise draw a progress bar per run.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else MLflow's default, ``sqlite:///mlflow.db`` in the working folder."""
    import mlflow

    quiet()
    return mlflow.get_tracking_uri()


def client(uri: str, create: bool = True):  # noqa: ANN201 - mlflow.MlflowClient, imported lazily
    """A client of a store that is whole.

    A new SQLite store is created and migrated under a temporary name and renamed into place
    (never when ``create`` is False: then a missing store is one line); an existing one is checked
    (:func:`~prunesearch.sqlite_store.check_sqlite_store`, and its MLflow schema). Calls to a tracking
    server that does not answer within the deadline (:data:`HTTP_DEFAULTS`) end in one line naming it.
    """
    from mlflow import MlflowClient

    quiet()
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    path = sqlite_path(uri)
    if path is not None:
        if not create and not path.exists():
            raise StorageError(f"there is no MLflow store at {path} ({uri}): run `prunesearch run` in this folder first, "
                               "or point MLFLOW_TRACKING_URI at the store a search wrote")
        ensure_sqlite_store(uri, WHAT, _create_tables)
        _check_schema(path, uri)
    with creation_lock(uri):  # the client records MLflow's default experiment in a new store
        mlflow_client = MlflowClient(tracking_uri=uri)
    return _Answering(mlflow_client, uri) if uri.startswith(("http://", "https://")) else mlflow_client


def _create_tables(url: str) -> None:
    """MLflow's own creation of a store (initial tables, then every migration), at ``url``."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine

    engine = create_sqlalchemy_engine(url)
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()


@lru_cache(maxsize=1)
def _schema_revisions() -> tuple[str, frozenset[str]]:
    """The schema revision this MLflow writes, and every revision it knows."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(""))
    (head,) = script.get_heads()
    return head, frozenset(rev.revision for rev in script.walk_revisions())


def _check_schema(path: Path, uri: str) -> None:
    """One line for a SQLite store whose schema this MLflow cannot use as it is: half-created by an
    interrupted first run (an older prunesearch created stores in place), older, or newer."""
    import sqlite3

    import mlflow

    try:
        with sqlite_connection(path) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            found = connection.execute("SELECT version_num FROM alembic_version").fetchall() if "alembic_version" in tables else []
            runs = connection.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    except sqlite3.OperationalError as err:
        if "locked" in str(err):
            return  # a writer holds it: MLflow checks the schema itself once it can read
        raise StorageError(f"cannot read {WHAT} {path}: {err}") from None
    except sqlite3.DatabaseError as err:
        raise StorageError(f"{WHAT} {path} is damaged ({err}); restore it from a backup, or move it away to start afresh") from None
    head, known = _schema_revisions()
    version = found[0][0] if len(found) == 1 else None
    if version == head:
        return
    if not tables:
        raise StorageError(f"{WHAT} {path} holds no MLflow tables; delete it to start a new store, or set MLFLOW_TRACKING_URI to the right one")
    if runs == 0:
        raise StorageError(
            f"{WHAT} {path} was left half-created by an interrupted run (schema {version or 'none'} of {head}); "
            "it holds no runs: delete it and run the same command again"
        )
    if version in known:
        raise StorageError(
            f"{WHAT} {path} has an older MLflow schema ({version}; MLflow {mlflow.__version__} needs {head}): "
            f"back it up, then run `mlflow db upgrade {uri}`"
        )
    raise StorageError(
        f"{WHAT} {path} has schema {version or 'none'}, which MLflow {mlflow.__version__} does not know: "
        "it was written by a newer MLflow (upgrade mlflow) or is damaged"
    )


class _Answering:
    """An ``MlflowClient`` of a tracking server whose calls, when the server does not answer within
    the deadline, end in one line naming the server instead of MLflow's traceback.

    Once a call got no answer, later calls of this client fail at once with the same line: they are
    the bookkeeping of a process on its way out (ending its runs), and each would wait out the whole
    deadline again against a server that does not answer.
    """

    def __init__(self, inner: object, uri: str) -> None:
        self._inner, self._uri = inner, uri
        self._silent: str | None = None

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: object, **kwargs: object) -> object:
            if self._silent is not None:
                raise StorageError(self._silent)
            try:
                with answered(self._uri):
                    return attr(*args, **kwargs)
            except StorageError as err:
                self._silent = str(err)
                raise

        return call


@contextmanager
def answered(uri: str) -> Iterator[None]:
    """Turn a request to the tracking server ``uri`` that got no answer (refused, timed out, or a
    gateway error after every retry) into one line naming the server; other errors pass unchanged."""
    try:
        yield
    except Exception as err:
        if not _unanswered(err):
            raise
        raise StorageError(_no_answer(uri, str(err))) from None


def _unanswered(err: Exception) -> bool:
    """A request the server never answered, as opposed to an error the server returned for it."""
    from mlflow.exceptions import MlflowException, RestException
    from requests.exceptions import RequestException

    if isinstance(err, RequestException):
        return True
    return isinstance(err, MlflowException) and not isinstance(err, RestException) and str(err).startswith("API request to")


def _no_answer(uri: str, detail: str) -> str:
    parts = urlsplit(uri)
    server = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
    timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"])
    retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    why = ("connection refused" if "refused" in detail else f"no answer within {timeout} s" if "timed out" in detail.lower()
           else "no usable answer")
    return (
        f"the MLflow tracking server {server} did not answer ({why}, {retries} retries); check that it is running and "
        "reachable from here, or give a slow one longer with MLFLOW_HTTP_REQUEST_TIMEOUT (s) and MLFLOW_HTTP_REQUEST_MAX_RETRIES"
    )


def is_remote(uri: str) -> bool:
    """Whether several machines can share ``uri`` (a server or a database server, not a local file)."""
    return uri.startswith("databricks") or ("://" in uri and not uri.startswith(("sqlite:", "file:")))


def default_study_storage(uri: str) -> str:
    """A SQLite file ``optuna.db`` beside a SQLite MLflow store, else in the working folder."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return f"sqlite:///{db.parent / 'optuna.db'}"
    return f"sqlite:///{Path.cwd() / 'optuna.db'}"


def filter_value(value: object) -> str:
    """``value`` quoted for an MLflow filter string (``tags.study = {filter_value(name)}``).

    MLflow's filter grammar has no escape character: a value is taken verbatim between single or
    double quotes, so one holding a single quote is put in double quotes, and one holding both
    cannot be searched for (refused in one line).
    """
    text = str(value)
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise InputError(f"{text!r} holds both kinds of quote, which an MLflow search cannot match; rename it without one of them")


def filter_key(key: str) -> str:
    """A tag or param name quoted for an MLflow filter string (``tags.{filter_key(k)}``)."""
    if "`" in key:
        raise InputError(f"the MLflow key {key!r} holds a backquote, which an MLflow search cannot match")
    return f"`{key}`"


def check_experiment_name(name: str) -> str:
    """``name`` if MLflow can hold it as an experiment and in the names of its registered models,
    and searches can match it; else one line saying what is allowed (checked before any training)."""
    if not isinstance(name, str) or not name.strip():
        raise InputError("the experiment name is empty; name the experiment file (its stem names the MLflow experiment)")
    problem = (
        f"is longer than {MAX_EXPERIMENT_NAME} characters" if len(name) > MAX_EXPERIMENT_NAME
        else "holds '/' or ':'" if "/" in name or ":" in name
        else "starts with '..'" if name.startswith("..") or name == "."
        else "holds both ' and \"" if "'" in name and '"' in name
        else "holds a control character" if any(ord(c) < 32 or ord(c) == 127 for c in name)
        else None
    )
    if problem:
        raise InputError(
            f"the experiment name {name[:80]!r} {problem}; MLflow names its registered models <experiment>.<candidate>, "
            f"which allows up to {MAX_EXPERIMENT_NAME} characters, no '/' or ':', no leading '..', not both kinds of quote"
        )
    return name


# MLflow 3 tells GenAI experiments from model-development ones by this tag; without it the UI
# guesses, and opens a search's experiment on a Traces overview.
EXPERIMENT_TAGS = {"prunesearch": "search", "mlflow.experimentKind": "custom_model_development"}


def experiment_id(mlflow_client, name: str, create: bool) -> str | None:  # noqa: ANN001
    """The MLflow experiment named after the prunesearch experiment; created on first use if asked
    (its name checked first, so a name MLflow cannot use fails before any training)."""
    if create:
        check_experiment_name(name)
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise PrunesearchError(f"the MLflow experiment {name!r} is deleted; restore it or remove it for good")
        return found.experiment_id
    if not create:
        return None
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.create_experiment(name, tags=EXPERIMENT_TAGS)
    except MlflowException as err:
        # Another process (machine) created it at the same moment.
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return mlflow_client.get_experiment_by_name(name).experiment_id


def review_experiment(mlflow_client, name: str | None) -> str | None:  # noqa: ANN001
    """The experiment ``prunesearch ui`` opens: ``name``, else the newest search in the store (None
    when the store holds none). It is marked a model-development experiment, for stores written
    before prunesearch set that tag."""
    if name is not None:
        exp_id = experiment_id(mlflow_client, name, create=False)
        if exp_id is None:
            raise PrunesearchError(f"the MLflow store has no experiment {name!r}")
    else:
        searches = mlflow_client.search_experiments(filter_string="tags.prunesearch = 'search'", order_by=["creation_time DESC"])
        if not searches:
            return None
        exp_id = searches[0].experiment_id
    for key, value in EXPERIMENT_TAGS.items():
        mlflow_client.set_experiment_tag(exp_id, key, value)
    return exp_id
