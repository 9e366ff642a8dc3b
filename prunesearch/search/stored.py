"""Reading fine-tuned candidates back from the MLflow store, for ``prunesearch pareto``.

Only what the child runs hold is used (params, metrics, tags), so a front can be rebuilt from any
copy of the store. Runs priced with different latency tables, or scored on different data or with
a different teacher, are not comparable: they are refused together unless the caller allows it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException

from prunesearch.errors import PrunesearchError
from prunesearch.mlflow_log.store import client, experiment_id
from prunesearch.search.confirm import BRIEF
from prunesearch.search.results import ACCURACY_KEYS, CandidateResult
from prunesearch.search.tracking import SEQUENCES_FILE


@dataclass(frozen=True)
class StoredResult:
    result: CandidateResult
    fingerprints: dict[str, str]  # data, teacher, and the latency table of each target
    study: str
    start_time: int
    checkpoint: str = ""  # the fine-tuned weights, on the machine that trained it
    model_uri: str = ""  # the logged MLflow model, for front members
    stage: str = BRIEF  # runs logged before stages existed are brief


def _sequences(mlflow_client, run_id: str) -> dict | None:  # noqa: ANN001 - mlflow.MlflowClient
    """The run's per-sequence scores, or None for runs logged before they were kept."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow_client.download_artifacts(run_id, SEQUENCES_FILE, tmp)
        except (MlflowException, OSError):
            return None
        return json.loads(Path(path).read_text())


def _from_run(run, sequences: dict | None) -> StoredResult:  # noqa: ANN001 - mlflow.entities.Run
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    targets = [k.split(".", 1)[1] for k in m if k.startswith("latency_ms.")]
    result = CandidateResult(
        key=t["candidate"],
        depth=int(p["depth"]),
        ai_layers=int(p["ai_layers"]),
        rule=p["rule"],
        accuracy={k: m[k] for k in ACCURACY_KEYS if k in m},
        latency_ms={x: m[f"latency_ms.{x}"] for x in targets},
        template_ms={x: m.get(f"template_ms.{x}", float("nan")) for x in targets},
        budget_ms=float(p["budget_ms"]),
        gmacs_per_frame=m.get("gmacs_per_frame", float("nan")),
        params_m=m.get("params_m", float("nan")),
        accuracy_scale=t.get("accuracy_scale", "unknown"),
        blocks=[int(b) for b in p.get("blocks", "").split()],
        run_id=run.info.run_id,
        trial=int(t.get("trial", -1)),
        sequences=sequences,
    )
    prints = {"data": t.get("data_fingerprint", ""), "teacher": t.get("teacher_fingerprint", "")}
    prints.update({f"latency_table.{x}": t.get(f"latency_table.{x}", "") for x in targets})
    return StoredResult(result, prints, t.get("study", ""), run.info.start_time, t.get("checkpoint", ""), t.get("model_uri", ""),
                        t.get("stage", BRIEF))


def read_results(uri: str, experiment: str, study: str | None = None) -> list[StoredResult]:
    """Every trained candidate of an MLflow experiment (optionally one study), oldest first."""
    mlflow_client = client(uri)
    runs = _candidate_runs(mlflow_client, uri, experiment, "trained", study)
    stored = [_from_run(r, _sequences(mlflow_client, r.info.run_id)) for r in runs]
    return sorted(stored, key=lambda s: s.start_time)


def stopped_early(uri: str, experiment: str, study: str | None = None) -> list[str]:
    """The candidates fine-tuned and stopped early (no accuracy: never on a front), by key."""
    runs = _candidate_runs(client(uri), uri, experiment, "early_stopped", study)
    return sorted({r.data.tags["candidate"] for r in runs})


def _candidate_runs(mlflow_client, uri: str, experiment: str, outcome: str, study: str | None) -> list:  # noqa: ANN001
    exp_id = experiment_id(mlflow_client, experiment, create=False)
    if exp_id is None:
        raise PrunesearchError(
            f"the MLflow store {uri} holds no experiment {experiment!r}; run `prunesearch run --experiment {experiment}` first"
        )
    query = f"tags.kind = 'candidate' AND tags.outcome = '{outcome}'"
    if study:
        query += f" AND tags.study = '{study}'"
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs([exp_id], filter_string=query, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def comparable(stored: list[StoredResult], target: str, allow_mixed: bool) -> list[CandidateResult]:
    """The results priced on ``target``, newest run per candidate; refuses differing fingerprints."""
    on_target = [s for s in stored if target in s.result.latency_ms]
    keys = ("data", "teacher", f"latency_table.{target}")
    groups = {tuple(s.fingerprints[k] for k in keys) for s in on_target}
    if len(groups) > 1 and not allow_mixed:
        differ = [
            name
            for i, name in enumerate(("data", "teacher", f"latency table of {target}"))
            if len({g[i] for g in groups}) > 1
        ]
        studies = sorted({s.study for s in on_target})
        raise PrunesearchError(
            f"these runs differ in {', '.join(differ)} fingerprints and are not comparable; "
            f"pick one study with --study ({', '.join(studies)}) or pass --allow-mixed"
        )
    newest: dict[tuple[str, tuple[str, ...]], CandidateResult] = {}
    for s in on_target:
        newest[(s.result.key, tuple(s.fingerprints[k] for k in keys))] = s.result
    return list(newest.values())
