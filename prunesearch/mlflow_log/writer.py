"""Writing a search to MLflow: the parent run, a child run per candidate, the front and its plots.

Child runs are written by whichever worker fine-tuned the candidate, as soon as it finishes, so an
interruption loses none of them. The parent run gets the pricing table and the reproducibility
record at the start, and the fronts, plots and timings at the end; front tags are (re)computed over
the whole study, so a resumed search re-marks candidates logged by earlier invocations.
"""

from __future__ import annotations

import csv
import io
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag

from prunesearch.mlflow_log.store import client, experiment_id
from prunesearch.search.budget import Budget
from prunesearch.search.controller import FinishedTrial
from prunesearch.search.plot import ReferencePoint, pareto_plot
from prunesearch.search.pricing import PriceBook
from prunesearch.search.results import CandidateResult, front_for

BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch


@dataclass(frozen=True)
class SearchInfo:
    """What every run of one search shares; tags and params of parent and children come from here."""

    experiment: str
    study: str
    storage: str
    targets: tuple[str, ...]
    budget: Budget
    architecture: str
    teacher: str
    teacher_fingerprint: str
    data: str
    data_fingerprint: str
    seed: int
    accuracy_scale: str
    finetune: dict[str, object]
    table_hashes: dict[str, str]
    template_update: int | None = None

    def common_params(self) -> dict[str, object]:
        return {
            "targets": ",".join(self.targets),
            "budget": self.budget.text,
            "budget_ms": self.budget.ms,
            "architecture": self.architecture,
            "teacher": self.teacher,
            "data": self.data,
            "seed": self.seed,
            "template_update": self.template_update or "once per sequence",
            **_flat("finetune", self.finetune),
        }

    def common_tags(self) -> dict[str, str]:
        return {
            "study": self.study,
            "accuracy_scale": self.accuracy_scale,
            "data_fingerprint": self.data_fingerprint,
            "teacher_fingerprint": self.teacher_fingerprint,
            **{f"latency_table.{t}": h for t, h in self.table_hashes.items()},
        }


def _flat(prefix: str, mapping: dict[str, object]) -> dict[str, object]:
    """Nested settings as MLflow params: ``finetune.augment.scale`` and so on."""
    out: dict[str, object] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flat(f"{prefix}.{key}", value))
        else:
            out[f"{prefix}.{key}"] = value
    return out


def _now_ms() -> int:
    return int(time.time() * 1000)


def _log(mlflow_client, run_id: str, params=None, metrics=None, tags=None, step_metrics=()) -> None:  # noqa: ANN001
    """Params, metrics (step 0) and tags in as few calls as MLflow allows."""
    ts = _now_ms()
    all_metrics = [Metric(k, float(v), ts, 0) for k, v in (metrics or {}).items()] + list(step_metrics)
    all_params = [Param(k, str(v)) for k, v in (params or {}).items()]
    all_tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    first = True
    while first or all_metrics:
        mlflow_client.log_batch(
            run_id, metrics=all_metrics[:BATCH], params=all_params if first else [], tags=all_tags if first else []
        )
        all_metrics = all_metrics[BATCH:]
        first = False


def _csv(rows: list[dict[str, object]]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


class SearchLog:
    """MLflow side of one ``prunesearch run`` invocation (also used, by parent id, in its workers)."""

    def __init__(self, uri: str, info: SearchInfo, book: PriceBook, parent_id: str) -> None:
        self.uri, self.info, self.book, self.parent_id = uri, info, book, parent_id
        self.client = client(uri)
        self.experiment_id = self.client.get_run(parent_id).info.experiment_id

    @classmethod
    def start(cls, uri: str, info: SearchInfo, book: PriceBook, strategy: str, record: dict[str, object]) -> "SearchLog":
        mlflow_client = client(uri)
        exp_id = experiment_id(mlflow_client, info.experiment, create=True)
        name = f"{info.experiment} {'+'.join(info.targets)} {info.budget.text}"
        run = mlflow_client.create_run(exp_id, run_name=name, tags={"kind": "search"})
        log = cls(uri, info, book, run.info.run_id)
        _log(
            mlflow_client,
            log.parent_id,
            params={**info.common_params(), "storage": info.storage},
            tags={**info.common_tags(), "strategy": strategy, "git_commit": record["git_commit"]},
        )
        mlflow_client.log_dict(log.parent_id, record, "reproducibility.json")
        mlflow_client.log_text(log.parent_id, _csv(log.pricing_rows()), "pricing.csv")
        return log

    def pricing_rows(self) -> list[dict[str, object]]:
        """Every candidate of the space, priced: what was never trained is visible too."""
        rows = []
        for cand in self.book.candidates:
            row: dict[str, object] = {"candidate": cand.key, **cand.params}
            for target, price in self.book.prices[cand.key].items():
                row[f"frame_ms.{target}"] = round(price.per_frame_ms, 4)
                row[f"priced_ms.{target}"] = round(price.priced_ms, 4)
                row[f"template_ms.{target}"] = round(price.template_ms, 4)
                row[f"fits.{target}"] = self.book.fits(cand, target)
            row.update({k: round(v, 4) for k, v in asdict(self.book.costs[cand.key]).items()})
            rows.append(row)
        return rows

    def record(self, done: FinishedTrial) -> str:
        """The child run of one fine-tuned candidate (trained, stopped early, or diverged)."""
        cand, result = done.cand, done.result
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{cand.name} {cand.rule}",
            tags={"mlflow.parentRunId": self.parent_id, "kind": "candidate"},
        )
        run_id = run.info.run_id
        metrics: dict[str, float] = {**result.accuracy}
        for target, price in self.book.prices[cand.key].items():
            metrics[f"latency_ms.{target}"] = price.priced_ms
            metrics[f"fps.{target}"] = price.fps
            metrics[f"template_ms.{target}"] = price.template_ms
        metrics.update(asdict(self.book.costs[cand.key]))
        metrics.update({f"seconds.{k}": v for k, v in result.seconds.items()})
        ts = _now_ms()
        losses = [
            Metric(f"finetune.{k}", float(v), ts, int(entry.get("step", i + 1)))
            for i, entry in enumerate(result.losses)
            for k, v in entry.items()
            if k != "step" and isinstance(v, (int, float))
        ]
        tags = {
            **self.info.common_tags(),
            "candidate": cand.key,
            "outcome": done.outcome,
            "trial": done.number,
            "worker": done.worker,
            "pareto": "false",
            **{f"feasible.{t}": str(self.book.fits(cand, t)).lower() for t in self.book.targets},
        }
        params = {
            **self.info.common_params(),
            **cand.params,
            "blocks": " ".join(str(b) for b in result.blocks),
        }
        _log(self.client, run_id, params=params, metrics=metrics, tags=tags, step_metrics=losses)
        self.client.log_dict(run_id, {"candidate": cand.key, **params, "finetune": self.info.finetune}, "config.json")
        self.client.set_terminated(run_id, "FAILED" if done.outcome == "diverged" else "FINISHED")
        return run_id

    def mark_front(self, results: list[CandidateResult]) -> dict[str, list[CandidateResult]]:
        """Tag every candidate run of the study with its front membership per target."""
        fronts = {t: front_for(results, t, self.info.budget.ms) for t in self.info.targets}
        for r in results:
            on = {t: any(f.key == r.key for f in front) for t, front in fronts.items()}
            tags = {f"pareto.{t}": str(flag).lower() for t, flag in on.items()}
            _log(self.client, r.run_id, tags={**tags, "pareto": str(any(on.values())).lower()})
        return fronts

    def log_model(self, run_id: str, files: list[Path]) -> None:
        """A front member's checkpoint and ONNX graphs, under ``model/`` of its child run."""
        for f in files:
            self.client.log_artifact(run_id, str(f), "model")

    def has_model(self, run_id: str) -> bool:
        return bool(self.client.list_artifacts(run_id, "model"))

    def finish(
        self,
        fronts: dict[str, list[CandidateResult]],
        results: list[CandidateResult],
        metrics: dict[str, float],
        reference: dict[str, list[ReferencePoint]],
    ) -> None:
        """Front tables and plots per target, timings and counts; the parent run ends FINISHED."""
        for target, front in fronts.items():
            rows = [r.row(target) for r in front]
            self.client.log_text(self.parent_id, _csv(rows), f"front/{target}.csv")
            self.client.log_dict(self.parent_id, {"accuracy_scale": self.info.accuracy_scale, "front": rows}, f"front/{target}.json")
            with tempfile.TemporaryDirectory() as tmp:
                png = pareto_plot(results, target, Path(tmp) / f"pareto_{target}.png", self.info.budget.ms, reference.get(target))
                self.client.log_artifact(self.parent_id, str(png), "front")
        _log(self.client, self.parent_id, metrics=metrics)
        self.client.set_terminated(self.parent_id, "FINISHED")

    def stop(self, status: str) -> None:
        """End the parent run early (``KILLED`` on Ctrl-C, ``FAILED`` on an error)."""
        self.client.set_terminated(self.parent_id, status)
