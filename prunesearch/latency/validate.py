"""End-to-end check of a measured table: whole per-frame graphs against the table's estimates.

A sample of students (and the teacher) is exported as complete per-frame graphs, timed on this
machine exactly as the profiler times parts (same runtime settings, interleaved rounds, medians),
and compared with what the table predicts. The report gives the share of models within 5% and
10%, the mean absolute percentage error, and Kendall's tau between predicted and measured times
(the search only needs the order right; the budget check needs the values right), for the
table's prices (the calibrated sum where it has a calibration) and for the raw sum of parts.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prunesearch.errors import InputError
from prunesearch.latency.backends import runtime_class, runtime_from_meta
from prunesearch.latency.parts import whole_graph
from prunesearch.latency.runtime import TimingPlan, machine_fingerprint, machine_info, time_graphs
from prunesearch.latency.table import LatencyTable
from prunesearch.models.names import TEACHER, student_name

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ValidationRow:
    name: str
    depth: int
    ai_layers: int | None
    estimate_ms: float
    measured_ms: float
    measured_p90_ms: float
    runs: int
    raw_estimate_ms: float

    @property
    def raw_error(self) -> float:
        """Signed relative error of the raw (uncalibrated) sum of parts."""
        return (self.raw_estimate_ms - self.measured_ms) / self.measured_ms

    @property
    def error(self) -> float:
        """Signed relative error of the estimate: (estimate - measured) / measured."""
        return (self.estimate_ms - self.measured_ms) / self.measured_ms


@dataclass(frozen=True)
class ValidationReport:
    table: str
    table_sha256: str
    rows: list[ValidationRow]
    settings: dict[str, Any]
    plan: dict[str, Any]
    machine: dict[str, Any]
    seconds: float
    summary: dict[str, float] = field(default_factory=dict)
    raw_summary: dict[str, float] = field(default_factory=dict)
    calibrated: bool = False

    def to_dict(self) -> dict[str, Any]:
        rows = [{**asdict(r), "error": r.error, "raw_error": r.raw_error} for r in self.rows]
        return {**asdict(self), "rows": rows}


def summarise(rows: list[ValidationRow], raw: bool = False) -> dict[str, float]:
    """Shares within 5% / 10%, mean absolute percentage error, Kendall tau (estimate vs measured).

    ``raw``: of the uncalibrated sum of parts instead of the table's prices.
    """
    from scipy.stats import kendalltau

    errors = [abs(r.raw_error if raw else r.error) for r in rows]
    estimates = [r.raw_estimate_ms if raw else r.estimate_ms for r in rows]
    tau = kendalltau(estimates, [r.measured_ms for r in rows]).statistic if len(rows) > 1 else float("nan")
    return {
        "models": len(rows),
        "within_5pct": sum(e <= 0.05 for e in errors) / len(rows),
        "within_10pct": sum(e <= 0.10 for e in errors) / len(rows),
        "mape_pct": 100 * sum(errors) / len(rows),
        "max_abs_error_pct": 100 * max(errors),
        "kendall_tau": float(tau),
    }


def sample_candidates(max_depth: int, samples: int, seed: int) -> list[tuple[int, int]]:
    """``samples`` students ``(N, M)`` drawn without replacement from depth 1..max_depth, M 1..N."""
    space = [(n, m) for n in range(1, max_depth + 1) for m in range(1, n + 1)]
    if samples < 1:
        raise InputError(f"--samples must be at least 1, got {samples}")
    return sorted(random.Random(seed).sample(space, min(samples, len(space))))


def check_validatable(table: LatencyTable, allow_other_machine: bool) -> None:
    """Only a table measured on this machine, with a registered runtime, can be checked by timing graphs here."""
    if table.meta.get("method") != "measured":
        raise InputError(
            f"table {table.name!r} was derived from published figures, not measured here; its check is "
            f"the leave-one-out error recorded in the file (shown by 'prunesearch latency show --target {table.name}')"
        )
    runtime_class(table.meta.get("runtime"), f"table {table.name!r}: meta.runtime")
    mismatch = fingerprint_mismatch(table)
    if mismatch and not allow_other_machine:
        raise InputError(f"{mismatch}; validate it where it was measured, or pass --allow-other-machine to compare anyway")


def fingerprint_mismatch(table: LatencyTable) -> str | None:
    """A sentence when ``table`` was measured on a machine (CPU, GPU, driver, power mode) other than this one."""
    theirs, ours = table.meta.get("machine_fingerprint"), machine_fingerprint()
    if theirs == ours:
        return None
    gpu = (table.meta.get("machine") or {}).get("gpu") or {}
    here = machine_info().get("gpu") or {}
    detail = f" (GPU {gpu.get('name', 'none')} driver {gpu.get('driver_version', '-')}, here {here.get('name', 'none')} driver {here.get('driver_version', '-')})"
    return f"table {table.name!r} was measured on another machine (fingerprint {theirs}, this one {ours}){detail}"


def validate(
    table: LatencyTable,
    samples: int = 12,
    seed: int = 0,
    rounds: int = 15,
    allow_other_machine: bool = False,
    progress: Progress | None = None,
) -> ValidationReport:
    """Time ``samples`` students and the teacher as whole per-frame graphs; compare with ``table``.

    Runtime settings and clock are the table's own, so like is compared with like.
    """
    check_validatable(table, allow_other_machine)
    runtime = runtime_from_meta(table.meta)
    plan = TimingPlan(rounds=rounds, clock=table.meta.get("clock", "wall"))
    runtime.check(plan.clock)
    tick = progress or (lambda stage, done, total: None)
    cfg = table.architecture
    models: list[tuple[str, int, int | None]] = [
        (student_name(n, m), n, m) for n, m in sample_candidates(table.teacher_depth, samples, seed)
    ]
    models.append((TEACHER, table.teacher_depth, None))
    start = time.perf_counter()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="prunesearch-validate-") as tmp:
        for i, (name, depth, ai) in enumerate(models):
            module, args, inputs, outputs = whole_graph(cfg, depth, ai)
            runs[name] = runtime.prepare(module, args, (inputs, outputs), Path(tmp) / f"{name}.onnx")
            tick("export", i + 1, len(models))
        timings = time_graphs(runs, plan, runtime.timer(plan.clock), lambda r: tick("time", r, plan.rounds))
    rows = []
    for name, depth, ai in models:
        est = table.estimate_teacher() if ai is None else table.estimate(depth, ai)
        stats = timings[name].stats()
        rows.append(ValidationRow(name, depth, ai, est.per_frame_ms, stats["p50"], stats["p90"], int(stats["runs"]), est.raw_ms))
    return ValidationReport(
        table=table.name,
        table_sha256=table.sha256,
        rows=rows,
        settings=runtime.describe(),
        plan=asdict(plan),
        machine=machine_info(),
        seconds=time.perf_counter() - start,
        summary=summarise(rows),
        raw_summary=summarise(rows, raw=True),
        calibrated=table.calibration is not None,
    )


def log_to_mlflow(report: ValidationReport, experiment: str = "prunesearch-latency-validation") -> str:
    """Record the report as one MLflow run (tracking URI from MLFLOW_TRACKING_URI or MLflow's default)."""
    import json

    import mlflow

    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"validate-{report.table}") as run:
        mlflow.log_params(
            {
                "table": report.table,
                "table_sha256": report.table_sha256,
                "models": len(report.rows),
                **{f"runtime.{k}": v for k, v in report.settings.items()},
            }
        )
        mlflow.log_metrics({k: float(v) for k, v in report.summary.items()})
        mlflow.log_metrics({f"raw_{k}": float(v) for k, v in report.raw_summary.items()})
        mlflow.log_dict(json.loads(json.dumps(report.to_dict(), default=str)), "latency_validation.json")
        return run.info.run_id
