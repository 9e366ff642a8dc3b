"""An MLflow store holding a search's trained candidates, written directly in the child-run layout
(:mod:`prunesearch.search.mlflow_runs.schema`) without training anything: for re-pricing tests and
the re-pricing benchmark, where a hundred real fine-tunes would cost hours and prove nothing more.

Every recorded price is deliberately wrong (``RECORDED_MS``), so a re-price that copied it shows.
"""

from __future__ import annotations

from prunesearch.mlflow_log.writer import MlflowWriter
from prunesearch.models.names import student_name
from prunesearch.search.mlflow_runs import schema as s
from prunesearch.search.study.record import Outcome

RECORDED_MS = 999.0


def shapes(count: int, teacher_depth: int = 12) -> list[tuple[int, int, str]]:
    """``count`` distinct candidates (depth, interaction layers, rule), shallow first."""
    out = [(n, m, rule) for n in range(1, teacher_depth + 1) for m in range(1, n + 1) for rule in ("first", "uniform")]
    return out[:count]


def accuracy(depth: int, ai_layers: int, rule: str) -> float:
    """Deeper is better, with a little from interaction and the rule: a front with several members."""
    return round(0.2 + 0.03 * depth + 0.005 * ai_layers + (0.002 if rule == "first" else 0.0), 6)


def write_trained_runs(uri: str, experiment: str, count: int, target: str = "orin-nx", architecture: str = "small",
                       study: str = "study-a", teacher: str = "teacher-fp", template_update: int | None = None) -> list[str]:
    """A finished parent run and ``count`` trained child runs priced (wrongly) on ``target``; their run ids."""
    writer = MlflowWriter(uri)
    exp_id = writer.experiment(experiment)
    common = {s.STUDY: study, s.DATA_FINGERPRINT: "data-fp", s.TEACHER_FINGERPRINT: teacher, s.ACCURACY_SCALE: "full",
              s.per(s.LATENCY_TABLE, target): "recorded-table"}
    parent = writer.create_run(exp_id, f"{experiment} {target}", {s.KIND: s.SEARCH, **common})
    writer.end(parent, "FINISHED")
    ids = []
    for depth, ai_layers, rule in shapes(count):
        key = f"{student_name(depth, ai_layers)}/{rule}"
        run = writer.create_run(exp_id, key, {s.KIND: s.CANDIDATE_RUN, s.CANDIDATE: key, s.OUTCOME: Outcome.TRAINED.value,
                                              s.STATUS: Outcome.TRAINED.label, **common}, parent_id=parent)
        ao = accuracy(depth, ai_layers, rule)
        writer.log(run, params={"depth": depth, "ai_layers": ai_layers, "rule": rule, s.BUDGET_MS: 5.0,
                                s.ARCHITECTURE: architecture, s.TEMPLATE_UPDATE: template_update or s.ONCE_PER_SEQUENCE},
                   metrics={"ao": ao, "sr50": ao, "sr75": ao / 2, "auc": ao, s.per(s.LATENCY_MS, target): RECORDED_MS,
                            s.per(s.TEMPLATE_MS, target): RECORDED_MS, "gmacs_per_frame": 1.0, "params_m": 1.0})
        writer.end(run, "FINISHED")
        ids.append(run)
    return ids
