"""The writer of what a search records in MLflow: the parent run, a child run per fine-tune, the fronts and plots.

The parent run (``kind=search``) is opened by each ``prunesearch run`` invocation with the pricing
table and the reproducibility record, and gets the fronts, plots and timings at the end. A child
run (``kind=candidate``) is opened when a candidate's fine-tune starts: the MLflow UI shows it
running, with its live loss (``finetune.loss`` per logged step) and real duration; it ends
FINISHED (trained, stopped early), FAILED (diverged, raised) or KILLED (interrupted, lost, or
superseded by a retry) on every way out. Every run carries the ``worker`` that opened it and the
``study`` tag, so a worker that finds another lost (:meth:`SearchLog.close_lost`) ends its open
runs: KILLED, or FINISHED from the study's record when the fine-tune had settled before the loss.

Every name written comes from :mod:`.schema`; :class:`~prunesearch.mlflow_log.writer.MlflowWriter`
does the recording.
"""

from __future__ import annotations

import contextlib
import csv
import io
from dataclasses import asdict

from prunesearch.errors import StorageError
from prunesearch.mlflow_log.tracker_model import TrackerModel, log_tracker_model
from prunesearch.mlflow_log.writer import MlflowWriter
from prunesearch.search.mlflow_runs import schema as s
from prunesearch.search.mlflow_runs.schema import SearchInfo, percent
from prunesearch.search.plot import SCALE_NOTE, ReferencePoint, pareto_figure
from prunesearch.search.pricing import PriceBook
from prunesearch.search.results import CandidateResult
from prunesearch.search.space import Candidate
from prunesearch.search.stage import BRIEF, CONFIRM
from prunesearch.search.study.liveness import Liveness, this_worker
from prunesearch.search.study.record import Outcome, TrialRecord


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
        parent = writer.create_run(exp_id, name, {s.KIND: s.SEARCH, s.STUDY: info.study, s.WORKER: this_worker()})
        writer.log(
            parent,
            params={**info.common_params(), s.STORAGE: info.storage},
            tags={**info.common_tags(), s.STRATEGY: strategy, s.GIT_COMMIT: record["git_commit"],
                  s.NOTE: describe(info, strategy) + "\n\nRunning: the front is added here when the search ends."},
        )
        writer.log_dict(parent, record, s.REPRODUCIBILITY_FILE)
        rows = pricing_rows(book)
        writer.log_text(parent, _csv(rows), s.PRICING_CSV)
        writer.log_table(parent, rows, s.PRICING_TABLE)
        return cls(uri, info, book, parent)

    def _params(self, cand: Candidate) -> dict[str, object]:
        return {**self.info.common_params(), **s.flat(self.stage, self.stage_params), **cand.params}

    def begin(self, number: int, cand: Candidate, worker: str) -> str:
        """The child run of a fine-tune that starts now: what is known before training."""
        tags = {
            **self.info.common_tags(),
            s.KIND: s.CANDIDATE_RUN,
            s.STAGE: self.stage,
            s.CANDIDATE: cand.key,
            s.TRIAL: number,
            s.WORKER: worker,
            s.PARETO: "false",
            **{s.per(s.FEASIBLE, t): str(self.book.fits(cand, t)).lower() for t in self.book.targets},
        }
        run_id = self.writer.create_run(self.experiment_id, self._run_name(cand), tags, parent_id=self.parent_id)
        params = self._params(cand)
        self.writer.log(run_id, params=params, metrics=s.priced_metrics(cand, self.book))
        self.writer.log_dict(run_id, {"candidate": cand.key, **params, "finetune": self.info.finetune}, s.CONFIG_FILE)
        return run_id

    def _run_name(self, cand: Candidate) -> str:
        return f"{cand.name} {cand.rule}" + ("" if self.stage == BRIEF else f" {self.stage}")

    def progress(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        """The fine-tune's losses at ``step``, live."""
        numbers = {s.per(s.FINETUNE, k): v for k, v in metrics.items() if k != "step" and isinstance(v, (int, float))}
        self.writer.log(run_id, metrics=numbers, step=step)

    def end(self, run_id: str, cand: Candidate, record: TrialRecord | None, status: str, message: str = "") -> None:
        """Close a child run: with its result when the fine-tune settled, else with why it stopped.

        Anything but a trained candidate says so in its run name, ``status`` tag and description,
        with the reason (the early-stop comparison, the error): the runs table shows it unclicked.
        """
        if not run_id:
            return
        if record is not None:
            settled = s.settled_fields(record)
            metrics = {**settled.metrics, **s.interval_metrics(record.sequences)}
            self.writer.log(run_id, params=settled.params, metrics=metrics, tags=settled.tags)
            if record.sequences is not None:
                self.writer.log_dict(run_id, record.sequences, s.SEQUENCES_FILE)
            for rung, score in sorted(record.rungs.items()):
                self.writer.log(run_id, metrics={s.RUNG_LOSS: score}, step=rung)
            label, reason = (record.outcome.label if record.outcome else ""), record.message or ""
        else:
            label, reason = message or status.lower(), message
            self.writer.log(run_id, tags={s.OUTCOME: label, s.MESSAGE: message})
        tags: dict[str, object] = {s.STATUS: label}
        if label != Outcome.TRAINED.label:
            tags.update({s.REASON: reason, s.RUN_NAME: f"{self._run_name(cand)} [{label}]",
                         s.NOTE: f"**{label}**" + (f": {reason}" if reason else "")})
        self.writer.log(run_id, tags=tags)
        self.writer.end(run_id, status)

    def close_lost(self, recs: list[TrialRecord], live: Liveness) -> None:
        """End the open runs of this study whose worker is lost (see the module docstring).

        A run whose trial the study says ended (settled, or failed or interrupted with its reason:
        the worker could record that in the study but not in MLflow, whose server had gone down) ends
        as that trial did. Any other, the parent run included, ends KILLED: MLflow ends a run FAILED
        when its own code raised (``ActiveRun.__exit__``) and KILLED when it is stopped from outside
        (a cancelled project job), and whatever ended its process, this process ends it from outside.
        """
        by_run = {r.run_id: r for r in recs if r.run_id}
        for run in self.writer.open_runs(self.experiment_id, {s.STUDY: self.info.study}):
            worker = run.tags.get(s.WORKER)
            if worker is None or live.alive(worker):
                continue
            rec = by_run.get(run.run_id)
            candidate = run.tags.get(s.KIND) == s.CANDIDATE_RUN
            if candidate and rec is not None and rec.outcome is not None and rec.settled:
                self.end(run.run_id, Candidate(**rec.params), rec, rec.outcome.run_status)
            elif candidate and rec is not None and rec.outcome in (Outcome.FAILED, Outcome.INTERRUPTED):
                self.end(run.run_id, Candidate(**rec.params), None, rec.outcome.run_status, rec.message or rec.outcome)
            else:
                self.writer.log(run.run_id, tags={s.OUTCOME: Outcome.LOST} if candidate else {})
                self.writer.end(run.run_id, Outcome.LOST.run_status)

    def mark_front(self, results: list[CandidateResult], fronts: dict[str, list[CandidateResult]],
                   ties: dict[str, list[CandidateResult]]) -> None:
        """Tag every candidate run of the study with its front membership per target, and
        ``tied.TARGET`` where it is off the front but not significantly worse (see tied_for)."""
        for r in results:
            on = {t: any(f.key == r.key for f in front) for t, front in fronts.items()}
            tags = {s.per(s.PARETO_ON, t): str(flag).lower() for t, flag in on.items()}
            tags.update({s.per(s.TIED_ON, t): str(any(x.key == r.key for x in tied)).lower() for t, tied in ties.items()})
            tags[s.SAME_AS] = " ".join(r.same_as)
            self.writer.log(r.run_id, tags={**tags, s.PARETO: str(any(on.values())).lower()})

    def log_model(self, run_id: str, model: TrackerModel) -> str:
        """A front member as a registered MLflow model in its child run (the UI's "Logged models"),
        the registered name and model URI as run tags; returns the model URI."""
        model_uri = log_tracker_model(self.uri, run_id, model)
        self.writer.log(run_id, tags={s.MODEL_URI: model_uri, s.REGISTERED_MODEL: model.registered_name})
        return model_uri

    def models(self, results: list[CandidateResult]) -> dict[str, str]:
        """Registered model name per candidate key, for those logged."""
        names = {r.key: self.writer.tags(r.run_id).get(s.REGISTERED_MODEL, "") for r in results}
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
            csv_file, json_file, table_file, plot_file = s.front_files(target)
            self.writer.log_text(self.parent_id, _csv(rows), csv_file)
            self.writer.log_dict(self.parent_id, {"accuracy_scale": self.info.accuracy_scale, "front": rows}, json_file)
            self.writer.log_table(self.parent_id, [{**row, **percent(r.accuracy)} for r, row in zip(front + tied, rows)],
                                  table_file)
            fig = pareto_figure(results, target, self.info.budget.ms, reference.get(target), teacher_ms.get(target),
                                {r.key for r in tied})
            self.writer.log_figure(self.parent_id, fig, plot_file)
            plt.close(fig)
            best[s.per(s.FRONT_SIZE, target)] = len(front)
            if front:
                best[s.per(s.BEST_AO, target)] = max(r.ao for r in front)
                best[s.per(s.BEST_AO_PCT, target)] = 100 * best[s.per(s.BEST_AO, target)]
        summary = describe(self.info, strategy) + "\n\n" + (confirmation + "\n\n" if confirmation else "") + front_markdown(
            fronts, self.models([r for f in fronts.values() for r in f]))
        self.writer.log(self.parent_id, metrics=metrics | best,
                        tags={s.NOTE: summary, s.FRONT_STAGE: CONFIRM if confirmation else BRIEF})
        self.writer.end(self.parent_id, "FINISHED")

    def stop(self, status: str) -> None:
        """End the parent run early (``KILLED`` on Ctrl-C or kill, ``FAILED`` on an error), on the way
        out of an error that is the one to report: when the tracking server does not answer, the run
        stays open and the next ``run`` of the search closes it (:meth:`close_lost`)."""
        with contextlib.suppress(StorageError):
            self.writer.end(self.parent_id, status)


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
