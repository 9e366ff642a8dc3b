"""Recording runs in an MLflow store: create, log in batches, attach files, end, find the open ones.

This module only records: it knows nothing of searches, fronts or plots (what a search logs is
:mod:`prunesearch.search.tracking`). Every call goes through :class:`MlflowWriter`, so a tracking
server or a local store behave the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag

from prunesearch.mlflow_log.store import client, experiment_id, filter_key, filter_value

BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch
STATUSES = ("FINISHED", "FAILED", "KILLED")


@dataclass(frozen=True)
class OpenRun:
    """A run still RUNNING, with its tags (who opened it, what it is)."""

    run_id: str
    tags: dict[str, str]


def _now_ms() -> int:
    return int(time.time() * 1000)


class MlflowWriter:
    """One MLflow store, through its client."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.client = client(uri)

    def experiment(self, name: str) -> str:
        """The id of the MLflow experiment ``name``, created on first use."""
        found = experiment_id(self.client, name, create=True)
        assert found is not None
        return found

    def experiment_of(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.experiment_id

    def create_run(self, exp_id: str, name: str, tags: dict[str, object], parent_id: str | None = None) -> str:
        """A new RUNNING run; a child run when ``parent_id`` is given."""
        tags = {k: str(v) for k, v in tags.items()}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        return self.client.create_run(exp_id, run_name=name, tags=tags).info.run_id

    def log(
        self,
        run_id: str,
        params: dict[str, object] | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, object] | None = None,
        step: int = 0,
    ) -> None:
        """Params, metrics (at ``step``) and tags in as few calls as MLflow allows."""
        ts = _now_ms()
        all_metrics = [Metric(k, float(v), ts, step) for k, v in (metrics or {}).items()]
        all_params = [Param(k, str(v)) for k, v in (params or {}).items()]
        all_tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        first = True
        while first or all_metrics:
            self.client.log_batch(
                run_id, metrics=all_metrics[:BATCH], params=all_params if first else [], tags=all_tags if first else []
            )
            all_metrics = all_metrics[BATCH:]
            first = False

    def log_dict(self, run_id: str, obj: object, path: str) -> None:
        self.client.log_dict(run_id, obj, path)

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def log_files(self, run_id: str, files: Iterable[Path], folder: str) -> None:
        for f in files:
            self.client.log_artifact(run_id, str(f), folder)

    def log_table(self, run_id: str, rows: list[dict[str, object]], path: str) -> None:
        """Rows as an MLflow table (``path`` ends in ``.json``): the UI's evaluation-tables view shows it."""
        columns = list(dict.fromkeys(k for row in rows for k in row))
        self.client.log_table(run_id, {c: [row.get(c) for row in rows] for c in columns}, path)

    def log_figure(self, run_id: str, figure: object, path: str) -> None:
        """A matplotlib figure as an image artifact, shown on the run's page."""
        self.client.log_figure(run_id, figure, path)

    def tags(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.tags)

    def end(self, run_id: str, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"run status {status!r}; allowed: {', '.join(STATUSES)}")
        self.client.set_terminated(run_id, status)

    def open_runs(self, exp_id: str, tags: dict[str, str]) -> list[OpenRun]:
        """The RUNNING runs of an experiment whose tags hold ``tags``."""
        clauses = (f"tags.{filter_key(k)} = {filter_value(v)}" for k, v in tags.items())
        query = " AND ".join(["attributes.status = 'RUNNING'", *clauses])
        found, token = [], None
        while True:
            page = self.client.search_runs([exp_id], filter_string=query, max_results=1000, page_token=token)
            found.extend(OpenRun(r.info.run_id, dict(r.data.tags)) for r in page)
            token = page.token
            if not token:
                return found
