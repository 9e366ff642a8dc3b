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
from dataclasses import asdict, dataclass

from prunesearch.evaluation.uncertainty import SequenceStats, bootstrap_intervals
from prunesearch.mlflow_log.tracker_model import TrackerModel, log_tracker_model
from prunesearch.mlflow_log.writer import MlflowWriter
from prunesearch.search.budget import Budget
from prunesearch.search.confirm import BRIEF, CONFIRM
from prunesearch.search.controller import RUN_STATUS
from prunesearch.search.plot import SCALE_NOTE, ReferencePoint, pareto_figure
from prunesearch.search.pricing import PriceBook
from prunesearch.search.results import ACCURACY_KEYS, CandidateResult
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
    workdir: str = ""  # where this machine keeps the fine-tuned checkpoints

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


def percent(accuracy: dict[str, float]) -> dict[str, float]:
    """``ao_pct`` and so on beside the fractions: the UI then shows what the CLI shows."""
    return {f"{k}_pct": 100 * v for k, v in accuracy.items() if k in ACCURACY_KEYS and v is not None}


# The child run's ``status`` tag per outcome: the runs table tells a stopped candidate from a trained one.
STATUS_TAG = {"trained": "trained", "early_stopped": "early-stopped", "diverged": "diverged", "failed": "failed"}


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

    def __init__(self, uri: str, info: SearchInfo, book: PriceBook, parent_id: str, stage: str = BRIEF,
                 stage_params: dict[str, object] | None = None) -> None:
        self.uri, self.info, self.book, self.parent_id, self.stage = uri, info, book, parent_id, stage
        self.stage_params = stage_params or {}
        self.writer = MlflowWriter(uri)
        self.experiment_id = self.writer.experiment_of(parent_id)

    def for_stage(self, stage: str, params: dict[str, object]) -> "SearchLog":
        """The same search's log for the child runs of another stage (tag ``stage``, and its settings as params)."""
        return SearchLog(self.uri, self.info, self.book, self.parent_id, stage, params)

    @classmethod
    def start(cls, uri: str, info: SearchInfo, book: PriceBook, strategy: str, record: dict[str, object]) -> "SearchLog":
        writer = MlflowWriter(uri)
        exp_id = writer.experiment(info.experiment)
        name = f"{info.experiment} {'+'.join(info.targets)} {info.budget.text}"
        parent = writer.create_run(exp_id, name, {"kind": "search", "study": info.study, "worker": this_worker()})
        writer.log(
            parent,
            params={**info.common_params(), "storage": info.storage},
            tags={**info.common_tags(), "strategy": strategy, "git_commit": record["git_commit"],
                  NOTE: describe(info, strategy) + "\n\nRunning: the front is added here when the search ends."},
        )
        writer.log_dict(parent, record, "reproducibility.json")
        rows = pricing_rows(book)
        writer.log_text(parent, _csv(rows), "pricing.csv")
        writer.log_table(parent, rows, "pricing.json")
        return cls(uri, info, book, parent)

    def _params(self, cand: Candidate) -> dict[str, object]:
        return {**self.info.common_params(), **_flat(self.stage, self.stage_params), **cand.params}

    def begin(self, number: int, cand: Candidate, worker: str) -> str:
        """The child run of a fine-tune that starts now: what is known before training."""
        tags = {
            **self.info.common_tags(),
            "kind": "candidate",
            "stage": self.stage,
            "candidate": cand.key,
            "trial": number,
            "worker": worker,
            "pareto": "false",
            **{f"feasible.{t}": str(self.book.fits(cand, t)).lower() for t in self.book.targets},
        }
        run_id = self.writer.create_run(self.experiment_id, self._run_name(cand), tags, parent_id=self.parent_id)
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

    def _run_name(self, cand: Candidate) -> str:
        return f"{cand.name} {cand.rule}" + ("" if self.stage == BRIEF else f" {self.stage}")

    def progress(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        """The fine-tune's losses at ``step``, live."""
        numbers = {f"finetune.{k}": v for k, v in metrics.items() if k != "step" and isinstance(v, (int, float))}
        self.writer.log(run_id, metrics=numbers, step=step)

    def _result(self, record: TrialRecord) -> tuple[dict[str, object], dict[str, float], dict[str, object]]:
        """Params, metrics and tags of a settled fine-tune."""
        params = {"blocks": " ".join(str(b) for b in record.blocks)}
        metrics = {**record.accuracy, **percent(record.accuracy), **{f"seconds.{k}": v for k, v in record.seconds.items()}}
        if record.sequences is not None:
            for key, iv in bootstrap_intervals(SequenceStats.from_dict(record.sequences)).items():
                if math.isfinite(iv.low):
                    metrics.update({f"{key}_ci_low": iv.low, f"{key}_ci_high": iv.high})
        tags: dict[str, object] = {"outcome": record.outcome, "steps": record.steps}
        if record.checkpoint:
            tags["checkpoint"] = record.checkpoint
        return params, metrics, tags

    def end(self, run_id: str, cand: Candidate, record: TrialRecord | None, status: str, message: str = "") -> None:
        """Close a child run: with its result when the fine-tune settled, else with why it stopped.

        Anything but a trained candidate says so in its run name, ``status`` tag and description,
        with the reason (the early-stop comparison, the error): the runs table shows it unclicked.
        """
        if not run_id:
            return
        if record is not None:
            params, metrics, tags = self._result(record)
            self.writer.log(run_id, params=params, metrics=metrics, tags=tags)
            if record.sequences is not None:
                self.writer.log_dict(run_id, record.sequences, SEQUENCES_FILE)
            for rung, score in sorted(record.rungs.items()):
                self.writer.log(run_id, metrics={"early_stop.rung_loss": score}, step=rung)
            label, reason = STATUS_TAG.get(record.outcome or "", record.outcome or ""), record.message or ""
        else:
            label, reason = message or status.lower(), message
            self.writer.log(run_id, tags={"outcome": label, "message": message})
        tags: dict[str, object] = {"status": label}
        if label != "trained":
            tags.update({"reason": reason, "mlflow.runName": f"{self._run_name(cand)} [{label}]",
                         NOTE: f"**{label}**" + (f": {reason}" if reason else "")})
        self.writer.log(run_id, tags=tags)
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

    def log_model(self, run_id: str, model: TrackerModel) -> str:
        """A front member as a registered MLflow model in its child run (the UI's "Logged models"),
        the registered name and model URI as run tags; returns the model URI."""
        model_uri = log_tracker_model(self.uri, run_id, model)
        self.writer.log(run_id, tags={"model_uri": model_uri, "registered_model": model.registered_name})
        return model_uri

    def models(self, results: list[CandidateResult]) -> dict[str, str]:
        """Registered model name per candidate key, for those logged."""
        names = {r.key: self.writer.tags(r.run_id).get("registered_model", "") for r in results}
        return {k: v for k, v in names.items() if v}

    def finish(
        self,
        fronts: dict[str, list[CandidateResult]],
        results: list[CandidateResult],
        metrics: dict[str, float],
        reference: dict[str, list[ReferencePoint]],
        ties: dict[str, list[CandidateResult]],
        teacher_ms: dict[str, float],
        strategy: str,
        confirmation: str = "",
    ) -> None:
        """Fronts (CSV, JSON, MLflow tables; tied candidates after the front), plots, the description
        and best AO per target, timings and counts; the parent run ends FINISHED. ``confirmation``
        (Markdown) says how a confirmed front was confirmed and what it dropped; the front's stage
        is the ``front_stage`` tag."""
        import matplotlib.pyplot as plt

        best: dict[str, float] = {}
        for target, front in fronts.items():
            tied = ties.get(target, [])
            rows = [r.row(target, "front") for r in front] + [r.row(target, "tied") for r in tied]
            self.writer.log_text(self.parent_id, _csv(rows), f"front/{target}.csv")
            self.writer.log_dict(self.parent_id, {"accuracy_scale": self.info.accuracy_scale, "front": rows}, f"front/{target}.json")
            self.writer.log_table(self.parent_id, [{**row, **percent(r.accuracy)} for r, row in zip(front + tied, rows)],
                                  f"front_{target}.json")
            fig = pareto_figure(results, target, self.info.budget.ms, reference.get(target), teacher_ms.get(target),
                                {r.key for r in tied})
            self.writer.log_figure(self.parent_id, fig, f"front/pareto_{target}.png")
            plt.close(fig)
            best[f"front_size.{target}"] = len(front)
            if front:
                best[f"best_ao.{target}"] = max(r.ao for r in front)
                best[f"best_ao_pct.{target}"] = 100 * best[f"best_ao.{target}"]
        summary = describe(self.info, strategy) + "\n\n" + (confirmation + "\n\n" if confirmation else "") + front_markdown(
            fronts, self.models([r for f in fronts.values() for r in f]))
        self.writer.log(self.parent_id, metrics=metrics | best,
                        tags={NOTE: summary, "front_stage": CONFIRM if confirmation else BRIEF})
        self.writer.end(self.parent_id, "FINISHED")

    def stop(self, status: str) -> None:
        """End the parent run early (``KILLED`` on Ctrl-C or kill, ``FAILED`` on an error)."""
        self.writer.end(self.parent_id, status)


NOTE = "mlflow.note.content"  # the run's description (Markdown) on its MLflow page


def describe(info: SearchInfo, strategy: str) -> str:
    """What the search is, in Markdown: targets, budget, strategy, accuracy scale, where things are."""
    return "\n".join([
        f"**Search** `{info.experiment}` on {', '.join(f'`{t}`' for t in info.targets)}, budget **{info.budget.text}** "
        f"per frame, strategy **{strategy}**; teacher {info.teacher}, data {info.data}, seed {info.seed}.",
        "",
        f"**{SCALE_NOTE.get(info.accuracy_scale, 'accuracy scale: ' + info.accuracy_scale)}.**",
        "",
        f"Checkpoints: `{info.workdir}` on the machine that trained each candidate (the `checkpoint` tag of "
        "its run); front members are also logged as MLflow models (*Logged models*, and the registry). "
        f"Study `{info.study}` in `{info.storage}`.",
    ])


def front_markdown(fronts: dict[str, list[CandidateResult]], models: dict[str, str]) -> str:
    """The fronts as Markdown tables, percent and milliseconds as the CLI shows them."""
    parts = []
    for target, front in fronts.items():
        parts += [f"### Pareto front on {target}", "",
                  "| candidate | AO % | SR50 % | ms / frame | fps | GMACs | M params | registered model |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in front:
            row = r.row(target)
            parts.append(
                f"| {r.key} | {100 * r.ao:.1f} | {100 * (row['sr50'] or 0):.1f} | {row['frame_ms']:.2f} | {row['fps']:.1f} "
                f"| {row['gmacs_per_frame']:.1f} | {row['params_m']:.1f} | {models.get(r.key, '—')} |"
            )
        if not front:
            parts.append("| (no candidate fits the budget) | | | | | | | |")
        parts.append("")
    return "\n".join(parts)
