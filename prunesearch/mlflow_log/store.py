"""Where the MLflow store is, and the Optuna study storage that lives beside it by default."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prunesearch.errors import PrunesearchError
from prunesearch.sqlite_lock import creation_lock


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


def client(uri: str):  # noqa: ANN201 - mlflow.MlflowClient, imported lazily
    """A client whose store exists: a new SQLite store is migrated under a lock, by one process at a time."""
    from mlflow import MlflowClient

    quiet()
    with creation_lock(uri):  # the client migrates a SQLite store as it is made
        return MlflowClient(tracking_uri=uri)


def is_remote(uri: str) -> bool:
    """Whether several machines can share ``uri`` (a server or a database server, not a local file)."""
    return uri.startswith("databricks") or ("://" in uri and not uri.startswith(("sqlite:", "file:")))


def default_study_storage(uri: str) -> str:
    """A SQLite file ``optuna.db`` beside a SQLite MLflow store, else in the working folder."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return f"sqlite:///{db.parent / 'optuna.db'}"
    return f"sqlite:///{Path.cwd() / 'optuna.db'}"


# MLflow 3 tells GenAI experiments from model-development ones by this tag; without it the UI
# guesses, and opens a search's experiment on a Traces overview.
EXPERIMENT_TAGS = {"prunesearch": "search", "mlflow.experimentKind": "custom_model_development"}


def experiment_id(mlflow_client, name: str, create: bool) -> str | None:  # noqa: ANN001
    """The MLflow experiment named after the prunesearch experiment; created on first use if asked."""
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
