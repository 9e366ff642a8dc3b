"""The search controller: an Optuna study over the candidate space, priced first, trained sparingly.

How one search runs (the study is the only shared state, so any number of processes on any number
of machines can work on it at once, and a killed run resumes from it):

* Every candidate is priced before anything else (:class:`~prunesearch.search.pricing.PriceBook`).
* Strategy: when no more candidates fit the budget than there are trials to spend, all of them are
  enqueued (``enumerate``); otherwise a multi-objective sampler (TPE by default, NSGA-II or random)
  proposes candidates (``sample``), AO up and primary-target latency down, after the paper's
  variants that fit the budget have been enqueued as seeds.
* A proposal outside the space or over budget on every target is recorded at once as infeasible
  (``trial.set_constraint``), never trained, and the nearest untried candidate that fits is
  enqueued in its place; so is a proposal another trial already holds.
* A trial claims its candidate by writing it, then yields if any other trial holds the same
  candidate: two workers never train one candidate twice.
* Fine-tunes report their loss every step; :mod:`~prunesearch.search.early_stop` stops the weak.
  A diverged fine-tune fails its trial and the search goes on.
* A trial killed mid-way (Ctrl-C, kill, a lost machine) is failed and enqueued again: by pid on
  this machine when a run starts, by Optuna's heartbeat elsewhere.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, Trial, TrialState

from prunesearch.search.early_stop import RungTracker, should_stop
from prunesearch.search.experiment import SearchSettings
from prunesearch.search.pricing import PriceBook
from prunesearch.search.results import CandidateResult
from prunesearch.search.space import Candidate, SearchSpace

DIRECTIONS = ("maximize", "minimize")
HEARTBEAT_S = 20
GRACE_S = 90
# Outcomes that settle a candidate: it is never trained again.
SETTLED = ("trained", "early_stopped", "diverged")
# Outcomes of trials that cost nothing: proposals recorded without a fine-tune.
SKIPPED = ("outside_space", "over_budget", "duplicate", "surplus")

StepCallback = Callable[[int, dict[str, float]], bool]


@dataclass
class Outcome:
    """What fine-tuning and scoring one candidate gave."""

    status: str  # "ok", "diverged" or "stopped", as prunesearch.training reports it
    accuracy: dict[str, float] = field(default_factory=dict)
    losses: list[dict[str, float]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    checkpoint: str | None = None
    blocks: tuple[int, ...] = ()


class Evaluator(Protocol):
    """Builds, fine-tunes and scores one candidate; ``on_step`` may stop the fine-tune early."""

    steps: int

    def run(self, cand: Candidate, on_step: StepCallback) -> Outcome: ...


@dataclass
class FinishedTrial:
    number: int
    cand: Candidate
    outcome: str
    result: Outcome
    worker: str


class TrialSink(Protocol):
    """Where a finished fine-tune is recorded (MLflow); returns an id kept with the trial."""

    def record(self, done: FinishedTrial) -> str: ...


class Progress(Protocol):
    def started(self, worker: int, key: str, steps: int) -> None: ...

    def stepped(self, worker: int, done: int) -> None: ...

    def finished(self, worker: int, key: str, outcome: str) -> None: ...


class CandidateDiverged(Exception):
    """Raised inside a trial so Optuna marks it failed; the search catches it and goes on."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def make_sampler(name: str, seed: int, population: int) -> optuna.samplers.BaseSampler:
    """Multi-objective sampler; workers pass different seeds so they do not propose in lockstep."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=max(4, population), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5, constant_liar=True)


def _sqlite_connect(dbapi_connection: object, record: object) -> None:
    """Let SQLAlchemy, not pysqlite, open transactions; WAL journal with fsync at checkpoints only."""
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: sqlalchemy.engine.Connection) -> None:
    """Every transaction takes the write lock first (SQLAlchemy's pysqlite recipe).

    pysqlite runs a SELECT outside any transaction and starts one only at the UPDATE, so two
    processes could both read a queued trial as WAITING and both take it; with ``BEGIN IMMEDIATE``
    Optuna's read-check-update runs whole or waits.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def open_study(url: str, name: str, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create or load the study: heartbeats let any worker fail and re-enqueue a lost machine's trial."""
    sqlite = url.startswith("sqlite")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            url,
            engine_kwargs={"connect_args": {"timeout": 120}} if sqlite else {},
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
        )
        if sqlite:
            sqlalchemy.event.listen(storage.engine, "connect", _sqlite_connect)
            sqlalchemy.event.listen(storage.engine, "begin", _sqlite_begin)
            storage.engine.dispose()
        return optuna.create_study(
            storage=storage, study_name=name, directions=list(DIRECTIONS), sampler=sampler, load_if_exists=True
        )


def trial_key(t: FrozenTrial) -> str | None:
    """The candidate a trial holds, or will hold once a worker takes it from the queue."""
    if "candidate" in t.user_attrs:
        return t.user_attrs["candidate"]
    fixed = t.system_attrs.get("fixed_params")
    return Candidate(**fixed).key if t.state == TrialState.WAITING and fixed else None


@dataclass
class StudyState:
    """Which candidates a study has settled, is training, and has queued."""

    settled: set[str]
    running: set[str]
    queued: set[str]

    @classmethod
    def read(cls, study: optuna.Study, exclude: int | None = None) -> "StudyState":
        settled, running, queued = set(), set(), set()
        for t in study.get_trials(deepcopy=False):
            if t.number == exclude:
                continue
            key = trial_key(t)
            outcome = t.user_attrs.get("outcome")
            if outcome in SETTLED:
                settled.add(key)
            elif t.state == TrialState.RUNNING and t.user_attrs.get("claimed") and outcome is None:
                running.add(key)
            elif t.state == TrialState.WAITING and key:
                queued.add(key)
        return cls(settled, running, queued)

    @property
    def claimed(self) -> set[str]:
        return self.settled | self.running


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(study: optuna.Study) -> list[str]:
    """Fail this machine's trials whose process is gone and enqueue every interrupted candidate again.

    Returns the candidates enqueued. Trials of live processes (another run sharing the study) and
    of other machines (left to the heartbeat) are not touched.
    """
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        name, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if name == host and pid.isdigit() and not _pid_alive(int(pid)):
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    state = StudyState.read(study)
    again = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        key = trial_key(t)
        if t.user_attrs.get("outcome") in SETTLED or not key or key in state.claimed | state.queued:
            continue
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        state.queued.add(key)
        again.append(key)
    return again


@dataclass(frozen=True)
class Plan:
    strategy: str  # "enumerate" or "sample (tpe)" etc.
    target: int  # candidates the study should settle
    feasible: int
    seeded: tuple[str, ...]
    retried: tuple[str, ...]


def plan_search(study: optuna.Study, book: PriceBook, settings: SearchSettings) -> Plan:
    """Choose the strategy, enqueue seeds (or every feasible candidate) and interrupted trials."""
    feasible = book.feasible()
    enumerate_all = settings.strategy == "enumerate" or (
        settings.strategy == "auto" and len(feasible) <= settings.trials
    )
    retried = recover(study)
    state = StudyState.read(study)
    fit_seeds = [c for c in settings.seeds if c.key in {f.key for f in feasible}]
    order = fit_seeds + sorted(
        (c for c in feasible if c not in fit_seeds), key=lambda c: (book.prices[c.key][book.primary].per_frame_ms, c)
    ) if enumerate_all else fit_seeds
    seeded = []
    for cand in order:
        if cand.key not in state.claimed | state.queued:
            study.enqueue_trial(cand.params, user_attrs={"seed": True})
            state.queued.add(cand.key)
            seeded.append(cand.key)
    strategy = "enumerate" if enumerate_all else f"sample ({settings.sampler})"
    target = len(feasible) if enumerate_all else min(settings.trials, len(feasible))
    study.set_user_attr("strategy", strategy)
    return Plan(strategy, target, len(feasible), tuple(seeded), tuple(retried))


class SearchController:
    """One worker's side of the search: asks the study for candidates and trains them until done."""

    def __init__(
        self,
        study: optuna.Study,
        book: PriceBook,
        space: SearchSpace,
        teacher_depth: int,
        settings: SearchSettings,
        plan: Plan,
        evaluator: Evaluator,
        sink: TrialSink,
        progress: Progress,
        worker: int = 0,
    ) -> None:
        self.study, self.book, self.space, self.settings, self.plan = study, book, space, settings, plan
        self.teacher_depth = teacher_depth
        self.evaluator, self.sink, self.progress, self.worker = evaluator, sink, progress, worker
        self.depth_bounds = space.depth_range(teacher_depth)
        self.ai_bounds = space.ai_range(teacher_depth)
        self.feasible = book.feasible()

    def done(self) -> bool:
        return len(StudyState.read(self.study).claimed) >= self.plan.target

    def work(self) -> None:
        """Run trials until the study holds the planned number of settled or running candidates."""
        while not self.done():
            self.study.optimize(self.objective, n_trials=1, catch=(CandidateDiverged,))

    def _suggest(self, trial: Trial) -> Candidate:
        """Fixed distributions over the space's bounding box, so every sampler sees one search space."""
        return Candidate(
            trial.suggest_int("depth", *self.depth_bounds),
            trial.suggest_int("ai_layers", *self.ai_bounds),
            trial.suggest_categorical("rule", list(self.space.rules)),
        )

    def _skip(self, trial: Trial, cand: Candidate, outcome: str) -> None:
        """Record a proposal that costs nothing, and enqueue the nearest untried candidate instead."""
        trial.set_user_attr("outcome", outcome)
        if outcome != "surplus":
            state = StudyState.read(self.study)
            free = [c for c in self.feasible if c.key not in state.claimed | state.queued]
            if free:
                near = min(
                    free,
                    key=lambda c: (abs(c.depth - cand.depth) + abs(c.ai_layers - cand.ai_layers) + (c.rule != cand.rule), c),
                )
                self.study.enqueue_trial(near.params, user_attrs={"instead_of": cand.key})
        raise optuna.TrialPruned(f"{cand.key}: {outcome}")

    def _held_elsewhere(self, trial: Trial, key: str) -> bool:
        """Whether another trial has settled or holds ``key``.

        Every trial writes its candidate before it looks, so of two trials racing for one
        candidate at least one sees the other: none is trained twice (both may yield, and the
        candidate is enqueued again).
        """
        for t in self.study.get_trials(deepcopy=False):
            if t.number == trial.number or trial_key(t) != key:
                continue
            outcome = t.user_attrs.get("outcome")
            if outcome in SETTLED or (t.state == TrialState.RUNNING and outcome is None):
                return True
        return False

    def _over_target(self, trial: Trial) -> bool:
        """Whether the other trials already settle or hold the planned number of candidates (same race rule)."""
        state = StudyState.read(self.study, exclude=trial.number)
        return len(state.claimed) >= self.plan.target

    def objective(self, trial: Trial) -> tuple[float, float]:
        cand = self._suggest(trial)
        trial.set_user_attr("candidate", cand.key)
        trial.set_user_attr("worker", worker_name())
        inside = self.space.contains(cand, self.teacher_depth)
        margin = self.book.margin_ms(cand) if inside else 0.0
        trial.set_constraint("space", 0.0 if inside else 1.0)
        trial.set_constraint("budget_ms", margin)
        if not inside:
            self._skip(trial, cand, "outside_space")
        if margin > 0:
            self._skip(trial, cand, "over_budget")
        if self._held_elsewhere(trial, cand.key):
            self._skip(trial, cand, "duplicate")
        trial.set_user_attr("claimed", True)
        if self._over_target(trial):
            self._skip(trial, cand, "surplus")
        try:
            return self._train(trial, cand)
        except KeyboardInterrupt:
            trial.set_user_attr("outcome", "interrupted")
            raise

    def _train(self, trial: Trial, cand: Candidate) -> tuple[float, float]:
        latency = self.book.prices[cand.key][self.book.primary].per_frame_ms
        self.progress.started(self.worker, cand.key, self.evaluator.steps)
        early = self.settings.early_stop
        rungs = RungTracker(early, self.evaluator.steps) if early else None
        count = 0

        def on_step(step: int, metrics: dict[str, float]) -> bool:
            """``step`` is the number of steps done; True stops the fine-tune."""
            nonlocal count
            count = step
            self.progress.stepped(self.worker, step)
            if rungs is None:
                return False
            stop = False
            for rung in rungs.add(step, metrics["loss"]):
                score = rungs.score()
                trial.set_user_attr(f"rung_{rung}", score)
                peers = [
                    (self.book.prices[trial_key(t)][self.book.primary].per_frame_ms, t.user_attrs[f"rung_{rung}"])
                    for t in self.study.get_trials(deepcopy=False)
                    if t.number != trial.number and f"rung_{rung}" in t.user_attrs
                ]
                stop = stop or should_stop(early, latency, score, peers)
            return stop

        result = self.evaluator.run(cand, on_step)
        outcome = {"ok": "trained", "stopped": "early_stopped", "diverged": "diverged"}[result.status]
        start = time.perf_counter()
        run_id = self.sink.record(FinishedTrial(trial.number, cand, outcome, result, worker_name()))
        seconds = {**result.seconds, "log_candidate": time.perf_counter() - start}
        summary = {"steps": count, "seconds": seconds, "blocks": list(result.blocks), "run_id": run_id}
        summary.update(accuracy=result.accuracy, checkpoint=result.checkpoint)
        trial.set_user_attr("result", summary)
        trial.set_user_attr("outcome", outcome)
        self.progress.finished(self.worker, cand.key, outcome)
        if outcome == "diverged":
            raise CandidateDiverged(f"{cand.key}: fine-tune diverged")
        if outcome == "early_stopped":
            raise optuna.TrialPruned(f"{cand.key}: stopped at step {count}")
        return result.accuracy["ao"], latency


def trained_results(study: optuna.Study, book: PriceBook, accuracy_scale: str) -> list[CandidateResult]:
    """Every candidate the study trained to the end, latest trial per candidate, priced from ``book``."""
    latest: dict[str, FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("outcome") == "trained":
            latest[t.user_attrs["candidate"]] = t
    results = []
    for key, t in sorted(latest.items()):
        cand = Candidate(**t.params)
        prices = book.prices[key]
        results.append(
            CandidateResult(
                key=key,
                depth=cand.depth,
                ai_layers=cand.ai_layers,
                rule=cand.rule,
                accuracy=dict(t.user_attrs["result"]["accuracy"]),
                latency_ms={x: p.per_frame_ms for x, p in prices.items()},
                template_ms={x: p.template_ms for x, p in prices.items()},
                budget_ms=book.budget.ms,
                gmacs_per_frame=book.costs[key].gmacs_per_frame,
                params_m=book.costs[key].params_m,
                accuracy_scale=accuracy_scale,
                blocks=list(t.user_attrs["result"]["blocks"]),
                run_id=t.user_attrs["result"]["run_id"],
                trial=t.number,
            )
        )
    return results


def study_summary(study: optuna.Study, since: datetime | None = None) -> dict[str, float]:
    """Counts of outcomes and the seconds fine-tunes spent, by phase, for trials started ``since``."""
    out: dict[str, float] = {}
    for t in study.get_trials(deepcopy=False):
        if since is not None and (t.datetime_start is None or t.datetime_start < since):
            continue
        outcome = t.user_attrs.get("outcome", "running" if t.state == TrialState.RUNNING else str(t.state.name).lower())
        out[f"trials.{outcome}"] = out.get(f"trials.{outcome}", 0) + 1
        result = t.user_attrs.get("result", {})
        for phase, seconds in result.get("seconds", {}).items():
            out[f"seconds.{phase}"] = out.get(f"seconds.{phase}", 0.0) + seconds
        out["finetune_steps"] = out.get("finetune_steps", 0) + result.get("steps", 0)
    return out
