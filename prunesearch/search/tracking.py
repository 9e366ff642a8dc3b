"""What a search records in MLflow: the parent run, a child run per fine-tune, the fronts and plots.

The parent run (``kind=search``) is opened by each ``prunesearch run`` invocation with the pricing
table and the reproducibility record, and gets the fronts, plots and timings at the end. A child
run (``kind=candidate``) is opened when a candidate's fine-tune starts: the MLflow UI shows it
running, with its live loss (``finetune.loss`` per logged step) and real duration; it ends
FINISHED (trained, stopped early), FAILED (diverged, raised) or KILLED (interrupted, lost, or
superseded by a retry) on every way out. Every run carries the ``worker`` that opened it and the
``study`` tag, so a worker that finds another lost (:meth:`SearchLog.close_lost`) ends its open
runs: KILLED, or FINISHED from the study's record when the fine-tune had settled before the loss.

Extending (later issues): more on the child run at its start goes in :meth:`SearchLog.begin`, at
its end in :meth:`SearchLog._result`; both read only the candidate, the book and the
:class:`~prunesearch.search.study.TrialRecord`. :class:`~prunesearch.mlflow_log.writer.MlflowWriter`
does the recording.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from prunesearch.evaluation.uncertainty import SequenceStats, bootstrap_intervals
from prunesearch.mlflow_log.writer import MlflowWriter
from prunesearch.search.budget import Budget
from prunesearch.search.controller import RUN_STATUS
from prunesearch.search.plot import ReferencePoint, pareto_plot
from prunesearch.search.pricing import PriceBook
from prunesearch.search.results import CandidateResult
from prunesearch.search.space import Candidate
from prunesearch.search.study import Liveness, TrialRecord, this_worker


# Per-sequence scores of a trained candidate, beside its metrics: what `pareto` resamples.
SEQUENCES_FILE = "sequences.json"


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


def _csv(rows: list[dict[str, object]]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def pricing_rows(book: PriceBook) -> list[dict[str, object]]:
    """Every candidate of the space, priced: what was never trained is visible too."""
    rows = []
    for cand in book.candidates:
        row: dict[str, object] = {"candidate": cand.key, **cand.params}
        for target, price in book.prices[cand.key].items():
            row[f"frame_ms.{target}"] = round(price.per_frame_ms, 4)
            row[f"priced_ms.{target}"] = round(price.priced_ms, 4)
            row[f"template_ms.{target}"] = round(price.template_ms, 4)
            row[f"fits.{target}"] = book.fits(cand, target)
        row.update({k: round(v, 4) for k, v in asdict(book.costs[cand.key]).items()})
        rows.append(row)
    return rows


class SearchLog:
    """MLflow side of one ``prunesearch run`` invocation (also used, by parent id, in its workers).

    It is the controller's :class:`~prunesearch.search.controller.TrialSink`.
    """

    def __init__(self, uri: str, info: SearchInfo, book: PriceBook, parent_id: str) -> None:
        self.uri, self.info, self.book, self.parent_id = uri, info, book, parent_id
        self.writer = MlflowWriter(uri)
        self.experiment_id = self.writer.experiment_of(parent_id)

    @classmethod
    def start(cls, uri: str, info: SearchInfo, book: PriceBook, strategy: str, record: dict[str, object]) -> "SearchLog":
        writer = MlflowWriter(uri)
        exp_id = writer.experiment(info.experiment)
        name = f"{info.experiment} {'+'.join(info.targets)} {info.budget.text}"
        parent = writer.create_run(exp_id, name, {"kind": "search", "study": info.study, "worker": this_worker()})
        writer.log(
            parent,
            params={**info.common_params(), "storage": info.storage},
            tags={**info.common_tags(), "strategy": strategy, "git_commit": record["git_commit"]},
        )
        writer.log_dict(parent, record, "reproducibility.json")
        writer.log_text(parent, _csv(pricing_rows(book)), "pricing.csv")
        return cls(uri, info, book, parent)

    def _params(self, cand: Candidate) -> dict[str, object]:
        return {**self.info.common_params(), **cand.params}

    def begin(self, number: int, cand: Candidate, worker: str) -> str:
        """The child run of a fine-tune that starts now: what is known before training."""
        tags = {
            **self.info.common_tags(),
            "kind": "candidate",
            "candidate": cand.key,
            "trial": number,
            "worker": worker,
            "pareto": "false",
            **{f"feasible.{t}": str(self.book.fits(cand, t)).lower() for t in self.book.targets},
        }
        run_id = self.writer.create_run(self.experiment_id, f"{cand.name} {cand.rule}", tags, parent_id=self.parent_id)
        metrics: dict[str, float] = {}
        for target, price in self.book.prices[cand.key].items():
            metrics[f"latency_ms.{target}"] = price.priced_ms
            metrics[f"fps.{target}"] = price.fps
            metrics[f"template_ms.{target}"] = price.template_ms
        metrics.update(asdict(self.book.costs[cand.key]))
        params = self._params(cand)
        self.writer.log(run_id, params=params, metrics=metrics)
        self.writer.log_dict(run_id, {"candidate": cand.key, **params, "finetune": self.info.finetune}, "config.json")
        return run_id

    def progress(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        """The fine-tune's losses at ``step``, live."""
        numbers = {f"finetune.{k}": v for k, v in metrics.items() if k != "step" and isinstance(v, (int, float))}
        self.writer.log(run_id, metrics=numbers, step=step)

    def _result(self, record: TrialRecord) -> tuple[dict[str, object], dict[str, float], dict[str, object]]:
        """Params, metrics and tags of a settled fine-tune."""
        params = {"blocks": " ".join(str(b) for b in record.blocks)}
        metrics = {**record.accuracy, **{f"seconds.{k}": v for k, v in record.seconds.items()}}
        if record.sequences is not None:
            for key, iv in bootstrap_intervals(SequenceStats.from_dict(record.sequences)).items():
                if math.isfinite(iv.low):
                    metrics.update({f"{key}_ci_low": iv.low, f"{key}_ci_high": iv.high})
        return params, metrics, {"outcome": record.outcome, "steps": record.steps}

    def end(self, run_id: str, cand: Candidate, record: TrialRecord | None, status: str, message: str = "") -> None:
        """Close a child run: with its result when the fine-tune settled, else with why it stopped."""
        if not run_id:
            return
        if record is not None:
            params, metrics, tags = self._result(record)
            self.writer.log(run_id, params=params, metrics=metrics, tags=tags)
            if record.sequences is not None:
                self.writer.log_dict(run_id, record.sequences, SEQUENCES_FILE)
        else:
            self.writer.log(run_id, tags={"outcome": message or status.lower(), "message": message})
        self.writer.end(run_id, status)

    def close_lost(self, recs: list[TrialRecord], live: Liveness) -> None:
        """End the open runs of this study whose worker is lost (see the module docstring)."""
        by_run = {r.run_id: r for r in recs if r.run_id}
        for run in self.writer.open_runs(self.experiment_id, {"study": self.info.study}):
            worker = run.tags.get("worker")
            if worker is None or live.alive(worker):
                continue
            rec = by_run.get(run.run_id)
            if run.tags.get("kind") == "candidate" and rec is not None and rec.settled:
                self.end(run.run_id, Candidate(**rec.params), rec, RUN_STATUS[rec.outcome])
            else:
                self.writer.log(run.run_id, tags={"outcome": "lost"} if run.tags.get("kind") == "candidate" else {})
                self.writer.end(run.run_id, "KILLED")

    def mark_front(self, results: list[CandidateResult], fronts: dict[str, list[CandidateResult]],
                   ties: dict[str, list[CandidateResult]]) -> None:
        """Tag every candidate run of the study with its front membership per target, and
        ``tied.TARGET`` where it is off the front but not significantly worse (see tied_for)."""
        for r in results:
            on = {t: any(f.key == r.key for f in front) for t, front in fronts.items()}
            tags = {f"pareto.{t}": str(flag).lower() for t, flag in on.items()}
            tags.update({f"tied.{t}": str(any(x.key == r.key for x in tied)).lower() for t, tied in ties.items()})
            self.writer.log(r.run_id, tags={**tags, "pareto": str(any(on.values())).lower()})

    def log_model(self, run_id: str, files: list[Path]) -> None:
        """A front member's checkpoint and ONNX graphs, under ``model/`` of its child run."""
        self.writer.log_files(run_id, files, "model")

    def has_model(self, run_id: str) -> bool:
        return self.writer.has_files(run_id, "model")

    def finish(
        self,
        fronts: dict[str, list[CandidateResult]],
        results: list[CandidateResult],
        metrics: dict[str, float],
        reference: dict[str, list[ReferencePoint]],
        ties: dict[str, list[CandidateResult]],
    ) -> None:
        """Front tables (tied candidates after the front) and plots per target, timings and
        counts; the parent run ends FINISHED."""
        for target, front in fronts.items():
            tied = ties.get(target, [])
            rows = [r.row(target, "front") for r in front] + [r.row(target, "tied") for r in tied]
            self.writer.log_text(self.parent_id, _csv(rows), f"front/{target}.csv")
            self.writer.log_dict(self.parent_id, {"accuracy_scale": self.info.accuracy_scale, "front": rows}, f"front/{target}.json")
            with tempfile.TemporaryDirectory() as tmp:
                png = pareto_plot(results, target, Path(tmp) / f"pareto_{target}.png", self.info.budget.ms,
                                  reference.get(target), tied={r.key for r in tied})
                self.writer.log_files(self.parent_id, [png], "front")
        self.writer.log(self.parent_id, metrics=metrics)
        self.writer.end(self.parent_id, "FINISHED")

    def stop(self, status: str) -> None:
        """End the parent run early (``KILLED`` on Ctrl-C or kill, ``FAILED`` on an error)."""
        self.writer.end(self.parent_id, status)
