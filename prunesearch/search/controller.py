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
* Fine-tunes report their loss every few steps; :mod:`~prunesearch.search.early_stop` stops the weak.
  A diverged fine-tune fails its trial and the search goes on.
* A trial killed mid-way (Ctrl-C, kill, a lost machine) is failed and enqueued again: by pid on
  this machine when a run starts, by Optuna's heartbeat elsewhere.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import optuna
from optuna.trial import Trial, TrialState

from prunesearch.search.early_stop import RungTracker, should_stop
from prunesearch.search.experiment import SearchSettings
from prunesearch.search.pricing import PriceBook
from prunesearch.search.space import Candidate, SearchSpace
from prunesearch.search.study import SETTLED, StudyState, recover, trial_key, worker_name

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

    def finished(self, worker: int, key: str, outcome: str, ao: float | None) -> None: ...


class SilentProgress:
    """A :class:`Progress` that shows nothing, for callers that drive the controller themselves."""

    def started(self, worker: int, key: str, steps: int) -> None:
        pass

    def stepped(self, worker: int, done: int) -> None:
        pass

    def finished(self, worker: int, key: str, outcome: str, ao: float | None) -> None:
        pass


class CandidateDiverged(Exception):
    """Raised inside a trial so Optuna marks it failed; the search catches it and goes on."""


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
        (c for c in feasible if c not in fit_seeds), key=lambda c: (book.prices[c.key][book.primary].priced_ms, c)
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
            try:
                self.study.optimize(self.objective, n_trials=1, catch=(CandidateDiverged,))
            finally:
                _hold_interrupts(False)

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
        latency = self.book.prices[cand.key][self.book.primary].priced_ms
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
                    (self.book.prices[trial_key(t)][self.book.primary].priced_ms, t.user_attrs[f"rung_{rung}"])
                    for t in self.study.get_trials(deepcopy=False)
                    if t.number != trial.number and f"rung_{rung}" in t.user_attrs
                ]
                stop = stop or should_stop(early, latency, score, peers)
            return stop

        result = self.evaluator.run(cand, on_step)
        # From here until Optuna has stored the trial, Ctrl-C or kill waits: a finished fine-tune is
        # logged and settled whole, never half-recorded and then trained again on resume.
        _hold_interrupts(True)
        outcome = {"ok": "trained", "stopped": "early_stopped", "diverged": "diverged"}[result.status]
        start = time.perf_counter()
        run_id = self.sink.record(FinishedTrial(trial.number, cand, outcome, result, worker_name()))
        seconds = {**result.seconds, "log_candidate": time.perf_counter() - start}
        summary = {"steps": count, "seconds": seconds, "blocks": list(result.blocks), "run_id": run_id}
        summary.update(accuracy=result.accuracy, checkpoint=result.checkpoint)
        trial.set_user_attr("result", summary)
        trial.set_user_attr("outcome", outcome)
        self.progress.finished(self.worker, cand.key, outcome, result.accuracy.get("ao"))
        if outcome == "diverged":
            raise CandidateDiverged(f"{cand.key}: fine-tune diverged")
        if outcome == "early_stopped":
            raise optuna.TrialPruned(f"{cand.key}: stopped at step {count}")
        return result.accuracy["ao"], latency


def _hold_interrupts(hold: bool) -> None:
    """Defer (``True``) or deliver (``False``) SIGINT and SIGTERM in this thread."""
    if threading.current_thread() is threading.main_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK if hold else signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
