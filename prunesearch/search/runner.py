"""``prunesearch run`` end to end: the one place where the search's parts are put together.

The coordinating process reads the experiment, prices the space, loads teacher and data
(:mod:`.setup`), opens (or resumes) the Optuna study, starts the MLflow parent run, then works on
the study itself (``--workers 1``) or with K-1 worker processes that do the same setup and share
the study (:mod:`.workers`), the confirmation stage included (:mod:`.confirm`). When the workers are
done it computes the front per target over the whole study, exports the front members
(:mod:`.front`) into their MLflow runs, and closes the parent run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import optuna

from prunesearch.errors import PrunesearchError
from prunesearch.mlflow_log.store import tracking_uri
from prunesearch.search import confirm
from prunesearch.search.confirm import ConfirmStage
from prunesearch.search.controller import Plan, plan_search
from prunesearch.search.front import export_front, trained_results
from prunesearch.search.mlflow_runs.log import SearchLog
from prunesearch.search.mlflow_runs.schema import summary_metrics
from prunesearch.search.reproducibility import reproducibility_record
from prunesearch.search.results import CandidateResult, fronts_and_ties
from prunesearch.search.setup import RunRequest, RunTimes, Setup, prepare
from prunesearch.search.study.liveness import heartbeat
from prunesearch.search.study.record import Outcome, records, stopped
from prunesearch.search.study.reuse import TrainedIndex
from prunesearch.search.study.state import StudyCounts, StudyState, checkpoints
from prunesearch.search.study.storage import open_storage, open_study, study_storage
from prunesearch.search.workers import Display, interrupt_on_term, run_workers, sampler, work


@dataclass
class RunReport:
    """What ``prunesearch run`` prints at the end."""

    setup: Setup
    plan: Plan
    storage: str
    tracking_uri: str
    parent_run: str
    fronts: dict[str, list[CandidateResult]]
    times: RunTimes
    counts: StudyCounts
    missing_models: list[str]
    given_up: dict[str, str]  # candidate -> its last error, after search.retries retries
    ties: dict[str, list[CandidateResult]] = field(default_factory=dict)  # per target, see tied_for
    # With a confirmation stage, ``fronts`` and ``ties`` are the confirmed ones; these the brief
    # stage's, and why each brief front member fell off the confirmed front, per target.
    confirmation: ConfirmStage | None = None
    brief_fronts: dict[str, list[CandidateResult]] = field(default_factory=dict)
    dropped: dict[str, dict[str, str]] = field(default_factory=dict)
    stopped: str = ""  # why the planner stopped before every fitting student was fine-tuned (trials: auto)


def run_search(req: RunRequest, display: Display) -> RunReport:
    """Run (or resume) the search the request describes; returns the fronts and the time split."""
    times, started = RunTimes(), datetime.now()
    interrupt_on_term()
    uri = tracking_uri()
    storage = study_storage(uri, req.storage)
    setup = prepare(req, storage, times=times)  # every input is checked before the storage (a new SQLite file) is created
    opened = open_storage(storage)  # a bad URL or a missing driver fails before any fine-tune
    exp = setup.experiment
    study = open_study(opened, setup.info.study, sampler(setup, 0), setup.book.primary)
    trained = TrainedIndex.of(study)  # every earlier search's fine-tunes, read once for this process
    with heartbeat(study, exp.search.heartbeat_s):
        plan = plan_search(study, setup.book, exp.search, setup.students(), trained)
        times.lap("study")
        record = reproducibility_record(exp.seed, setup.book.table_hashes, setup.info.data_fingerprint, setup.info.teacher_fingerprint)
        log = SearchLog.start(uri, setup.info, setup.book, plan.strategy, record)
        times.lap("log_search")
        try:
            return _search_and_report(setup, req, uri, storage, study, log, plan, display, times, started, trained)
        except KeyboardInterrupt:
            log.stop("KILLED")
            raise
        except BaseException:
            log.stop("FAILED")
            raise


def nothing_trained(study: optuna.Study) -> PrunesearchError:
    """The error of a search that ended with no trained candidate: some fit (planning checks it),
    so every fine-tune failed or diverged; the front is empty for that reason, not for the budget."""
    failed = {r.candidate: r.message or r.outcome for r in records(study) if r.outcome in (Outcome.FAILED, Outcome.DIVERGED)}
    first = min(failed, default="")
    return PrunesearchError(
        f"the search trained no candidate: every fine-tune failed or diverged ({len(failed)} candidates; {first}: "
        f"{failed.get(first)}); each run of the MLflow experiment has its error"
    )


def _search_and_report(
    setup: Setup, req: RunRequest, uri: str, storage: str, study: optuna.Study, log: SearchLog, plan: Plan,
    display: Display, times: RunTimes, started: datetime, trained: TrainedIndex,
) -> RunReport:
    """Everything after the parent run exists: any way out of here ends that run."""
    exp = setup.experiment
    workers = req.workers or exp.search.workers
    display.begin(plan, setup.finetune_config.steps * setup.finetune_config.seeds, workers)
    times.lap("log_search")
    if workers == 1:
        stage = work(setup, storage, study, log, plan, display, 0, display.confirm, trained)
    else:
        stage = run_workers(setup, req, uri, storage, study, log, plan, workers, display, trained)
    times.lap("search")
    targets, budget_ms = setup.book.targets, setup.budget.ms
    results = trained_results(study, setup.book, setup.info.accuracy_scale)
    if not results:
        raise nothing_trained(study)
    fronts, ties = fronts_and_ties(results, targets, budget_ms)
    log.mark_front(results, fronts, ties)
    brief_fronts, dropped, shown, given_up = fronts, {}, study, StudyState.read(study, exp.search.retries).given_up
    if stage is not None:
        shown = stage.study
        results = trained_results(stage.study, setup.book, setup.info.accuracy_scale)
        fronts, ties = fronts_and_ties(results, targets, budget_ms)
        log.mark_front(results, fronts, ties)
        failed = StudyState.read(stage.study, exp.search.retries).given_up
        dropped = {t: confirm.dropped(brief_fronts[t], fronts[t], results, t, failed) for t in targets}
        given_up = {**given_up, **{f"{k} (confirmation)": v for k, v in failed.items()}}
    times.lap("log_search")
    missing = export_front(log, fronts, checkpoints(shown), setup.book.primary)
    times.lap("export")
    counts = StudyCounts.of(study, since=started)
    if stage is not None:
        counts = counts.plus(StudyCounts.of(stage.study, since=started))
    reused = {f"reused_from_{where.replace(' ', '_')}": n for where, n in counts.reused.items()}  # trials.reused_from_...
    metrics = summary_metrics(times.parts(), counts.outcomes | reused, counts.seconds, counts.finetune_steps)
    log.finish(fronts, results, metrics, setup.reference_points(), ties, setup.teacher_ms(), plan.strategy,
               "" if stage is None else confirm.confirmation_markdown(stage, brief_fronts, dropped))
    times.lap("log_search")
    return RunReport(setup, plan, setup.info.storage, uri, log.parent_id, fronts, times, counts, missing, given_up, ties,
                     stage, brief_fronts, dropped, stopped(study))
