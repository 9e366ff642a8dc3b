"""Reading fine-tuned candidates back from the MLflow store, for ``prunesearch pareto`` and ``verify``.

Only what the child runs hold is used (params, metrics, tags, through :mod:`.schema`), so a front
can be rebuilt from any copy of the store. Runs priced with different latency tables, or scored on
different data or with a different teacher, are not comparable: they are refused together unless
the caller allows it. A re-priced pool (:func:`accuracy_pool`) compares only data and teacher:
its prices come from one table, whatever the runs were priced with.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from prunesearch.errors import PrunesearchError
from prunesearch.mlflow_log.store import client, experiment_id
from prunesearch.search.mlflow_runs import schema as s
from prunesearch.search.results import CandidateResult, same_students
from prunesearch.search.stage import BRIEF, CONFIRM
from prunesearch.search.study.record import Outcome


@dataclass(frozen=True)
class StoredResult:
    result: CandidateResult
    fingerprints: dict[str, str]  # data, teacher, and the latency table of each target
    study: str
    start_time: int
    checkpoint: str = ""  # the fine-tuned weights, on the machine that trained it
    model_uri: str = ""  # the logged MLflow model, for front members
    stage: str = BRIEF
    training_key: str = ""  # see prunesearch.search.identity; empty for runs logged before it was kept
    architecture: str = ""  # the deployment architecture the run was priced for (a preset name)
    template_update: int | None = None  # the template schedule its prices assume (None: once per sequence)


def _sequences(mlflow_client: MlflowClient, run_id: str) -> dict | None:
    """The run's per-sequence scores, or None for runs logged before they were kept."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow_client.download_artifacts(run_id, s.SEQUENCES_FILE, tmp)
        except (MlflowException, OSError):
            return None
        return json.loads(Path(path).read_text())


def _from_run(run: Run, sequences: dict | None) -> StoredResult:
    fields = s.RunFields(dict(run.data.params), dict(run.data.metrics), dict(run.data.tags))
    result = s.candidate_result(fields, run.info.run_id, sequences)
    t, p = run.data.tags, run.data.params
    update = p.get(s.TEMPLATE_UPDATE, s.ONCE_PER_SEQUENCE)
    return StoredResult(result, s.fingerprints(t, list(result.latency_ms)), t.get(s.STUDY, ""), run.info.start_time,
                        t.get(s.CHECKPOINT, ""), t.get(s.MODEL_URI, ""), s.stage_of(t), t.get(s.TRAINING_KEY, ""),
                        p.get(s.ARCHITECTURE, ""), int(update) if update.isdigit() else None)


def pick_stage(everything: list[StoredResult], wanted: str | None, experiment: str) -> list[StoredResult]:
    """The results of stage ``wanted``: by default the confirmation's where the search confirmed its front, else the brief."""
    stages = {x.stage for x in everything}
    stage = wanted or (CONFIRM if CONFIRM in stages else BRIEF)
    if stage not in stages:
        raise PrunesearchError(f"experiment {experiment!r} has no {stage} results (it has: {', '.join(sorted(stages))}); "
                               "set search.confirm in the experiment and run it again")
    return [x for x in everything if x.stage == stage]


def latest_search_run(mlflow_client: MlflowClient, exp_id: str, study: str | None = None) -> str | None:
    """The newest parent run (``kind=search``) of an experiment (of one study), or None."""
    runs = mlflow_client.search_runs([exp_id], filter_string=s.search_runs(study), order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def read_results(uri: str, experiment: str, study: str | None = None) -> list[StoredResult]:
    """Every trained candidate of an MLflow experiment (optionally one study), oldest first."""
    mlflow_client = client(uri, create=False)
    runs = _candidate_runs(mlflow_client, uri, experiment, Outcome.TRAINED, study)
    stored = [_from_run(r, _sequences(mlflow_client, r.info.run_id)) for r in runs]
    return sorted(stored, key=lambda x: x.start_time)


def stopped_early(uri: str, experiment: str, study: str | None = None) -> list[str]:
    """The candidates fine-tuned and stopped early (no accuracy: never on a front), by key."""
    runs = _candidate_runs(client(uri, create=False), uri, experiment, Outcome.EARLY_STOPPED, study)
    return sorted({r.data.tags[s.CANDIDATE] for r in runs})


def _candidate_runs(mlflow_client: MlflowClient, uri: str, experiment: str, outcome: Outcome, study: str | None) -> list[Run]:
    exp_id = experiment_id(mlflow_client, experiment, create=False)
    if exp_id is None:
        raise PrunesearchError(
            f"the MLflow store {uri} holds no experiment {experiment!r}; run `prunesearch run --experiment {experiment}` first"
        )
    query = s.candidate_runs(outcome, study)
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs([exp_id], filter_string=query, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def comparable(stored: list[StoredResult], target: str, allow_mixed: bool) -> list[CandidateResult]:
    """The results priced on ``target``, newest run per candidate; refuses differing fingerprints."""
    on_target = [x for x in stored if target in x.result.latency_ms]
    keys = {"data": "data", "teacher": "teacher", s.per(s.LATENCY_TABLE, target): f"latency table of {target}"}
    return same_students([x.result for x in _newest(on_target, keys, allow_mixed)])


def accuracy_pool(stored: list[StoredResult], allow_mixed: bool) -> list[StoredResult]:
    """Every trained candidate, newest run per candidate, for re-pricing: data and teacher fingerprints must agree."""
    return _newest(stored, {"data": "data", "teacher": "teacher"}, allow_mixed)


def _newest(stored: list[StoredResult], keys: dict[str, str], allow_mixed: bool) -> list[StoredResult]:
    """Newest run per candidate and fingerprint group (``stored`` is oldest first); refuses several groups.

    ``keys``: the fingerprints that must agree, with the words that name them.
    """
    groups = {tuple(x.fingerprints[k] for k in keys) for x in stored}
    if len(groups) > 1 and not allow_mixed:
        differ = [name for i, name in enumerate(keys.values()) if len({g[i] for g in groups}) > 1]
        studies = sorted({x.study for x in stored})
        raise PrunesearchError(
            f"these runs differ in {', '.join(differ)} fingerprints and are not comparable; "
            f"pick one study with --study ({', '.join(studies)}) or pass --allow-mixed"
        )
    newest: dict[tuple[str, tuple[str, ...]], StoredResult] = {}
    for x in stored:
        newest[(x.result.key, tuple(x.fingerprints[k] for k in keys))] = x
    return list(newest.values())
