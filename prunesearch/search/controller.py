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
* A candidate is what it keeps: before any fine-tune, the trainer tells every candidate's kept
  teacher blocks (:meth:`Trainer.blocks`), which with its split give its training key
  (:mod:`~prunesearch.search.identity`). Candidates with one key (two rules yielding the same
  student) are one student: it is fine-tuned once, and every other candidate of it settles from
  that result without a fine-tune (its own trial and child run, ``reused_from`` naming the trial
  that trained it); so does a candidate whose student an earlier search in the same storage
  trained (:mod:`~prunesearch.search.study.reuse`). Plans count fine-tunes in distinct students;
  a reused candidate costs nothing.
* A trial claims its candidate by writing it and its training key, then yields if any other trial
  holds the same candidate or the same student: two workers never train one student twice (a
  candidate that yields to its student's fine-tune is queued again, and settles from it).
* Planning takes no lock, so the cost of a race is a skip, never a second fine-tune: machines that
  plan at the same moment each queue every candidate (the extra copies are skipped as
  ``duplicate``, and a lost worker's candidate still queued comes back through its copy rather than
  a retry); a worker that asks just after another took the last queued candidate gets a sampler
  proposal instead, recorded as a costless skip.
* The MLflow child run of a candidate is opened when its fine-tune starts (live loss) and ended
  FINISHED, FAILED or KILLED on every way out. The result is stored in the study before it is
  logged, so a worker killed while logging loses nothing: a survivor completes its run.
* Fine-tunes report their loss every few steps; :mod:`~prunesearch.search.early_stop` stops the weak.
  A diverged fine-tune settles its candidate as failed; any other error fails the trial with its
  message and the candidate is retried ``retries`` times, then given up.
* Lost workers (killed, a dead machine, a missed heartbeat) are found whenever a worker asks
  whether the search is done (:func:`~prunesearch.search.study.recovery.recover`): their trials are
  failed and their candidates queued again once; a worker waits for the trials others hold rather
  than leave while one might still be lost.
* SIGINT and SIGTERM land only while a fine-tune runs or a worker waits; elsewhere they are held,
  so the study and the MLflow runs are never left half-written by Ctrl-C or ``kill``.
* A settled fine-tune records its training key (:mod:`~prunesearch.search.identity`): the same
  student trained the same way has the same key in any study.

Trials are asked and told here rather than in ``study.optimize``: ``optimize`` marks a trial
FAIL on any exception and re-raises Ctrl-C from wherever it lands, possibly halfway through
writing the trial or its MLflow run; it has no notion of a trial that yields its candidate to
another worker, or of one superseded after it was given up as lost.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import Trial, TrialState

from prunesearch.errors import PrunesearchError
from prunesearch.search.early_stop import RungTracker, stop_reason
from prunesearch.search.experiment import SearchSettings
from prunesearch.search.identity import TrainingIdentity
from prunesearch.search.planner import Decision, Student, decide, student_features
from prunesearch.search.pricing import PriceBook
from prunesearch.search.space import Candidate, SearchSpace
from prunesearch.search.study.liveness import Liveness, heartbeat, this_worker
from prunesearch.search.study.record import Outcome, TrialRecord, TrialWriter, enqueue, records, set_stopped, set_strategy
from prunesearch.search.study.recovery import end_as_recorded, recover
from prunesearch.search.study.reuse import Source, TrainedIndex, same_study_source
from prunesearch.search.study.state import StudyState

StepCallback = Callable[[int, dict[str, float]], bool]
MODEL = "model"  # the strategy whose next student search/planner.py picks


@dataclass
class TrainResult:
    """What fine-tuning and scoring one candidate gave."""

    status: str  # "ok", "diverged" or "stopped", as prunesearch.training reports it (see Outcome.of_finetune)
    # Scores (ao, sr50, sr75, auc; any other number measured per candidate may join them): stored
    # with the trial and logged as child-run metrics by name (mlflow_runs/schema.py).
    accuracy: dict[str, float] = field(default_factory=dict)
    losses: list[dict[str, float]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    checkpoint: str | None = None
    blocks: tuple[int, ...] = ()
    sequences: dict | None = None  # per-sequence scores (SequenceStats.to_dict()) for intervals


class Trainer(Protocol):
    """Builds, fine-tunes and scores one candidate; ``on_step`` may stop the fine-tune early.
    ``steps``: the steps of one candidate (all its seeds). ``blocks``: the teacher blocks a
    candidate keeps, known before any fine-tune (what makes two candidates one student)."""

    steps: int

    def blocks(self, cand: Candidate) -> tuple[int, ...]: ...

    def run(self, cand: Candidate, on_step: StepCallback) -> TrainResult: ...


def training_keys(trainer: Trainer, identity: TrainingIdentity, candidates: list[Candidate]) -> dict[str, str]:
    """Each candidate's training key (candidate key -> key): equal keys, one student."""
    return {c.key: identity.key(tuple(trainer.blocks(c)), c.depth, c.ai_layers) for c in candidates}


class TrialSink(Protocol):
    """Where fine-tunes are recorded (MLflow child runs), from their start to their end.

    ``end`` gets the settled record, or None when the fine-tune did not finish; ``status`` is
    FINISHED, FAILED or KILLED. ``close_lost`` ends the open runs of lost workers (a lost run whose
    trial settled is completed from its record).
    """

    def begin(self, number: int, cand: Candidate, worker: str) -> str: ...

    def progress(self, run_id: str, step: int, metrics: dict[str, float]) -> None: ...

    def end(self, run_id: str, cand: Candidate, record: TrialRecord | None, status: str, message: str = "") -> None: ...

    def close_lost(self, recs: list[TrialRecord], live: Liveness) -> None: ...


class NoSink:
    """A :class:`TrialSink` that keeps nothing, for callers that only want the study."""

    def begin(self, number: int, cand: Candidate, worker: str) -> str:
        return ""

    def progress(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        pass

    def end(self, run_id: str, cand: Candidate, record: TrialRecord | None, status: str, message: str = "") -> None:
        pass

    def close_lost(self, recs: list[TrialRecord], live: Liveness) -> None:
        pass


class Progress(Protocol):
    def started(self, worker: int, key: str, steps: int) -> None: ...

    def stepped(self, worker: int, done: int) -> None: ...

    def finished(self, worker: int, key: str, outcome: str, ao: float | None) -> None: ...

    def reused(self, worker: int, key: str, source: str, outcome: str, ao: float | None) -> None: ...


class SilentProgress:
    """A :class:`Progress` that shows nothing, for callers that drive the controller themselves."""

    def started(self, worker: int, key: str, steps: int) -> None:
        pass

    def stepped(self, worker: int, done: int) -> None:
        pass

    def finished(self, worker: int, key: str, outcome: str, ao: float | None) -> None:
        pass

    def reused(self, worker: int, key: str, source: str, outcome: str, ao: float | None) -> None:
        pass


class CandidateFailed(Exception):
    """A fine-tune that diverged or raised: its trial fails and the search goes on."""


class Superseded(Exception):
    """This worker's trial was failed as lost while it trained; another worker has its candidate."""


@dataclass(frozen=True)
class Plan:
    strategy: str  # "enumerate", "sample (tpe)", "model" etc.
    target: int  # fine-tunes (distinct students) the study should settle; reused results cost none
    feasible: int  # candidates that fit the budget
    seeded: tuple[str, ...]
    retried: tuple[str, ...]
    students: int = 0  # distinct students among the feasible candidates
    known: int = 0  # of them, fine-tuned by earlier searches in the same storage
    done: int = 0  # fine-tunes this study had settled (or given up) before this plan


def plan_search(study: optuna.Study, book: PriceBook, settings: SearchSettings, students: dict[str, str],
                index: TrainedIndex | None = None) -> Plan:
    """Choose the strategy, enqueue seeds (or every feasible candidate), the candidates whose
    students earlier searches trained, and interrupted trials.

    ``students``: each candidate's training key (:func:`training_keys`); ``index``: the fine-tunes
    of the storage's other studies (read here when not given). ``auto`` enumerates when the
    students still to fine-tune are no more than a fixed ``trials``, and lets the model planner
    pick otherwise; with ``trials: auto`` the target is every student, and the planner stops
    the search earlier when no untrained student can enter the front.
    """
    index = index or TrainedIndex.of(study)
    feasible = book.feasible()
    distinct = {students[c.key] for c in feasible}
    new = distinct - index.keys()
    fixed = settings.trials
    enumerate_all = settings.strategy == "enumerate" or (settings.strategy == "auto" and fixed is not None and len(new) <= fixed)
    retried = recover(study, Liveness.read(study, settings.grace_s), settings.retries)
    state = StudyState.read(study, settings.retries)
    fit_seeds = [c for c in settings.seeds if c.key in {f.key for f in feasible}]
    rest = [c for c in feasible if c not in fit_seeds and (enumerate_all or students[c.key] not in new)]
    order = fit_seeds + sorted(rest, key=lambda c: (book.prices[c.key][book.primary].priced_ms, c))
    seeded = []
    for cand in order:
        if cand.key not in state.claimed | state.queued:
            enqueue(study, cand, seed=True)
            state.queued.add(cand.key)
            seeded.append(cand.key)
    if enumerate_all:
        strategy = "enumerate"
    elif settings.strategy == "sample":
        strategy = f"sample ({settings.sampler})"
    else:
        strategy = MODEL if fixed is not None else f"{MODEL}, until no student enters the front with p >= {settings.stop_chance:g}"
    target = len(new) if enumerate_all or fixed is None else min(fixed, len(new))
    set_strategy(study, strategy)
    done = {students[c] for c in state.finished - state.reused if c in students}
    return Plan(strategy, target, len(feasible), tuple(seeded), tuple(retried), len(distinct), len(distinct) - len(new),
                len(done))


class _Gate:
    """SIGINT and SIGTERM raise KeyboardInterrupt only while the gate is open; otherwise they wait.

    Optuna has nothing of the kind: ``study.optimize`` lets Ctrl-C land anywhere and marks the
    trial FAIL on its way out, which is safe for its own bookkeeping but not for ours (a trial's
    record, its MLflow run and its settle must each be written whole).

    A handler that only sets a flag works whatever thread the signal lands on (blocking it with
    ``pthread_sigmask`` in the main thread does not: Optuna's and torch's threads take it).
    Outside the main thread the gate does nothing.

    An interrupt raised while the gate is open can land in a finalizer or a garbage-collector
    callback (SQLAlchemy registers some), where Python reports it as "Exception ignored" and drops
    it: the search then ran on to the end after Ctrl-C. So every signal is also remembered, the
    fine-tune asks at each logged step (:meth:`check`), and such a dropped interrupt is not reported.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.is_open = False
        self.pending = False
        self.saved: dict[int, object] = {}
        self.unraisable = sys.unraisablehook

    def __enter__(self) -> "_Gate":
        if threading.current_thread() is threading.main_thread():
            self.saved = {sig: signal.signal(sig, self._handler) for sig in self.SIGNALS}
            self.unraisable, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        if self.saved:
            sys.unraisablehook = self.unraisable
        if self.pending and kind is None:
            raise KeyboardInterrupt

    def _handler(self, signum: int, frame: object) -> None:
        self.pending = True  # kept until delivered: the raise below may be dropped (see above)
        if self.is_open:
            raise KeyboardInterrupt

    def _unraisable(self, info: Any) -> None:
        if not (self.pending and isinstance(info.exc_value, KeyboardInterrupt)):
            self.unraisable(info)

    def check(self) -> None:
        """At a safe point: deliver an interrupt that arrived while the gate was shut."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def opened(self) -> Iterator[None]:
        self.check()
        self.is_open = True
        try:
            yield
        finally:
            self.is_open = False


class SearchController:
    """One worker's side of the search: asks the study for candidates and trains them until done.

    ``identity``: the training identity of ``trainer``'s fine-tunes: with the blocks the trainer
    tells, every candidate's training key (``students``). ``index``: the fine-tunes of the
    storage's other studies (read here when not given).
    """

    def __init__(
        self,
        study: optuna.Study,
        book: PriceBook,
        space: SearchSpace,
        teacher_depth: int,
        settings: SearchSettings,
        plan: Plan,
        trainer: Trainer,
        sink: TrialSink,
        progress: Progress,
        identity: TrainingIdentity,
        worker: int = 0,
        index: TrainedIndex | None = None,
    ) -> None:
        self.study, self.book, self.space, self.settings, self.plan = study, book, space, settings, plan
        self.teacher_depth = teacher_depth
        self.trainer, self.sink, self.progress, self.identity, self.worker = trainer, sink, progress, identity, worker
        self.depth_bounds = space.depth_range(teacher_depth)
        self.ai_bounds = space.ai_range(teacher_depth)
        self.feasible = book.feasible()
        self.members = {c.key for c in book.candidates}  # the confirmation stage's book holds a few
        self.blocks = {c.key: tuple(trainer.blocks(c)) for c in book.candidates}
        self.students = {c.key: identity.key(self.blocks[c.key], c.depth, c.ai_layers) for c in book.candidates}
        self.index = index or TrainedIndex.of(study)
        self.gate = _Gate()
        self.stopped: str | None = None  # why the planner ended the search early (trials: auto)
        self.planner_students = list({
            self.students[c.key]: Student(self.students[c.key], book.prices[c.key][book.primary].priced_ms,
                                          student_features(self.blocks[c.key], c.ai_layers, teacher_depth))
            for c in self.feasible
        }.values())

    def state(self) -> StudyState:
        return StudyState.read(self.study, self.settings.retries)

    @property
    def planned(self) -> bool:
        """Whether the model planner picks each next student (search/planner.py)."""
        return self.plan.strategy.startswith(MODEL)

    def recover(self) -> StudyState:
        """Fail and re-queue lost workers' trials, close their MLflow runs; the state after that."""
        live = Liveness.read(self.study, self.settings.grace_s)
        recover(self.study, live, self.settings.retries)
        self.sink.close_lost(records(self.study), live)
        return self.state()

    def done(self) -> bool:
        return self._done(self.recover())

    def _spent(self, state: StudyState) -> set[str]:
        """Students this study fine-tuned (or gave up on): what counts against the plan's target."""
        return {self.students[c] for c in state.finished - state.reused}

    def _settleable(self, state: StudyState) -> set[str]:
        """Feasible candidates not finished whose student is settled here or trained in another
        study: they settle at no cost."""
        known = {self.students[c] for c in state.settled} | self.index.keys()
        return {c.key for c in self.feasible if c.key not in state.finished and self.students[c.key] in known}

    def _done(self, state: StudyState) -> bool:
        """Nothing is left to settle at no cost, and every feasible candidate is finished, the
        planned fine-tunes are spent, or the planner found nothing more worth training."""
        unfinished = {c.key for c in self.feasible} - state.finished
        return not self._settleable(state) and (
            not unfinished or len(self._spent(state)) >= self.plan.target or self.stopped is not None)

    def decide(self, state: StudyState) -> Decision:
        """The planner's next student (search/planner.py) from the study's settled fine-tunes;
        with ``trials: auto`` it may say stop."""
        observed: dict[str, float] = {}
        closed = {self.students[c] for c in state.given_up if c in self.students}
        for r in records(self.study):
            if r.settled and r.candidate in self.students:
                if r.outcome == Outcome.TRAINED:
                    observed[self.students[r.candidate]] = r.accuracy["ao"]
                else:
                    closed.add(self.students[r.candidate])  # stopped early or diverged: no AO, not again
        pending = {self.students[c] for c in state.running if c in self.students}
        stop = self.settings.stop_chance if self.settings.trials is None else None
        return decide(self.planner_students, observed, pending, self.book.budget.ms, stop, closed - set(observed))

    def _plan_next(self, state: StudyState) -> bool:
        """Queue the planner's pick, unless a queued candidate is waiting; False: nothing to start
        now (the planner stopped the search, or waits for the fine-tunes still running)."""
        free = [c for c in self.feasible if c.key in state.queued and c.key not in state.claimed]
        if free:
            return True
        decision = self.decide(state)
        if decision.pick is None:
            if not state.running:
                self.stopped = decision.reason
                set_stopped(self.study, decision.reason)
            return False
        cand = min(c for c in self.feasible if self.students[c.key] == decision.pick and c.key not in state.claimed)
        enqueue(self.study, cand, planned=decision.reason)
        return True

    def _busy(self, state: StudyState) -> bool:
        """Whether everything left is held by other trials (a candidate, or its student in training)."""
        free = {c.key for c in self.feasible} - state.claimed
        if free & self._settleable(state):
            return False
        held = {self.students[c] for c in state.running}
        blocked = {c for c in free if self.students[c] in held}
        return not free - blocked or len(self._spent(state) | held) >= self.plan.target

    def work(self) -> None:
        """Run trials until the study has settled (or given up on) the planned fine-tunes, and
        every candidate whose student is trained has settled from it.

        When every candidate left is held by another worker, wait: that worker may be lost, and
        then its candidate comes back to the queue here.
        """
        with heartbeat(self.study, self.settings.heartbeat_s), self.gate:
            while True:
                self.gate.check()
                state = self.recover()
                if self._done(state):
                    return
                for key in sorted(self._settleable(state) - state.claimed - state.queued):
                    enqueue(self.study, Candidate.parse(key), reuse=True)
                if self._busy(state) or (self.planned and not self._plan_next(state)):
                    if self.stopped is not None:
                        return
                    with self.gate.opened():
                        time.sleep(min(self.settings.heartbeat_s, 2.0))
                    continue
                self._trial()

    def _trial(self) -> None:
        """One trial, asked and told here (not in ``study.optimize``) so every way out is ours."""
        trial = self.study.ask()
        values, state = None, TrialState.FAIL
        try:
            values, state = self.objective(trial), TrialState.COMPLETE
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except (CandidateFailed, Superseded):
            pass
        except BaseException:
            # A trial that settled before the way out (logging its result failed) keeps its result.
            end_as_recorded(self.study, TrialWriter(trial).record())
            raise
        self.study.tell(trial, values, state=state, skip_if_finished=True)

    def _suggest(self, trial: Trial) -> Candidate:
        """Fixed distributions over the space's bounding box, so every sampler sees one search space."""
        return Candidate(
            trial.suggest_int("depth", *self.depth_bounds),
            trial.suggest_int("ai_layers", *self.ai_bounds),
            trial.suggest_categorical("rule", list(self.space.rules)),
        )

    def _skip(self, writer: TrialWriter, cand: Candidate, outcome: Outcome) -> None:
        """Record a proposal that costs nothing, and enqueue the nearest untried candidate instead."""
        writer.skip(outcome)
        if outcome != Outcome.SURPLUS and not self.planned:  # the planner picks its own next candidate
            state = self.state()
            free = [c for c in self.feasible if c.key not in state.claimed | state.queued]
            if free:
                near = min(
                    free,
                    key=lambda c: (abs(c.depth - cand.depth) + abs(c.ai_layers - cand.ai_layers) + (c.rule != cand.rule), c),
                )
                enqueue(self.study, near, instead_of=cand.key)
        raise optuna.TrialPruned(f"{cand.key}: {outcome}")

    def _held_elsewhere(self, trial: Trial, key: str, student: str | None) -> bool:
        """Whether another trial has settled or holds candidate ``key``, or holds its ``student``.

        Every trial writes its candidate and student before it looks, so of two trials racing for
        one candidate, or for two candidates of one student, at least one sees the other: no
        student is trained twice (both may yield, and the candidates are enqueued again).
        """
        def holds(r: TrialRecord) -> bool:
            return r.state == TrialState.RUNNING and r.outcome is None

        return any(
            r.number != trial.number and (
                (r.candidate == key and (r.settled or holds(r))) or (student is not None and r.training_key == student and holds(r)))
            for r in records(self.study)
        )

    def _over_target(self, trial: Trial) -> bool:
        """Whether the other trials already spend or hold the planned fine-tunes (same race rule)."""
        state = StudyState.read(self.study, self.settings.retries, exclude=trial.number)
        return len(self._spent(state) | {self.students[c] for c in state.running}) >= self.plan.target

    def _source(self, trial: Trial, student: str | None) -> Source | None:
        """A settled fine-tune of ``student`` to settle from: this study's, else an earlier search's
        (the other studies are read again first: another search may have trained it meanwhile)."""
        if student is None:
            return None
        found = same_study_source(records(self.study), self.study.study_name, student, trial.number)
        if found is None and self.index.get(student) is None:
            self.index.refresh()
        return found or self.index.get(student)

    def objective(self, trial: Trial) -> tuple[float, float]:
        cand = self._suggest(trial)
        writer = TrialWriter(trial)
        student = self.students.get(cand.key)  # None outside the space
        writer.take(cand, this_worker(), student)
        inside = self.space.contains(cand, self.teacher_depth) and cand.key in self.members
        margin = self.book.margin_ms(cand) if inside else 0.0
        trial.set_constraint("space", 0.0 if inside else 1.0)
        trial.set_constraint("budget_ms", margin)
        if not inside:
            self._skip(writer, cand, Outcome.OUTSIDE_SPACE)
        if margin > 0:
            self._skip(writer, cand, Outcome.OVER_BUDGET)
        if self._held_elsewhere(trial, cand.key, student):
            self._skip(writer, cand, Outcome.DUPLICATE)
        writer.claim()
        source = self._source(trial, student)
        if source is not None:
            return self._reuse(trial, writer, cand, source)
        if self._over_target(trial):
            self._skip(writer, cand, Outcome.SURPLUS)
        return self._train(trial, writer, cand, student)

    def _reuse(self, trial: Trial, writer: TrialWriter, cand: Candidate, source: Source) -> tuple[float, float]:
        """Settle ``cand`` from the fine-tune of its student ``source`` holds: same outcome, scores,
        sequences, checkpoint and rung losses (early stopping compares them as a fine-tune's), no
        fine-tune steps of its own."""
        start = time.perf_counter()
        run_id = self.sink.begin(trial.number, cand, str(this_worker()))
        writer.run(run_id)
        rec, reference = source.record, source.reference()
        for rung, score in sorted(rec.rungs.items()):
            writer.rung(rung, score)
        if rec.message:
            writer.stopping(rec.message)
        latency = self.book.prices[cand.key][self.book.primary].priced_ms
        values = (rec.accuracy["ao"], latency) if rec.outcome == Outcome.TRAINED else ()
        seconds = {"log_candidate": time.perf_counter() - start}
        try:
            record = writer.settle(rec.outcome, rec.steps, seconds, rec.accuracy, rec.blocks, rec.checkpoint, values,
                                   rec.sequences, rec.training_key, reference)
        except UpdateFinishedTrialError:
            self._end_unsettled(writer, run_id, cand, Outcome.SUPERSEDED)
            raise Superseded(cand.key) from None
        self.sink.end(run_id, cand, record, rec.outcome.run_status)
        where = "" if reference["study"] == self.study.study_name else f" of an earlier search ({reference['study']})"
        self.progress.reused(self.worker, cand.key, f"{reference['candidate']}{where}", rec.outcome, rec.accuracy.get("ao"))
        return self._settled(cand, rec.outcome, rec.steps, values)

    def _settled(self, cand: Candidate, outcome: Outcome, steps: int, values: tuple[float, ...]) -> tuple[float, float]:
        """The way out of a settled trial: its objectives, or why it is not a completed one."""
        if outcome == Outcome.DIVERGED:
            raise CandidateFailed(f"{cand.key}: fine-tune diverged")
        if outcome == Outcome.EARLY_STOPPED:
            raise optuna.TrialPruned(f"{cand.key}: stopped at step {steps}")
        return values  # type: ignore[return-value]

    def _train(self, trial: Trial, writer: TrialWriter, cand: Candidate, student: str | None) -> tuple[float, float]:
        latency = self.book.prices[cand.key][self.book.primary].priced_ms
        start = time.perf_counter()
        run_id = self.sink.begin(trial.number, cand, str(this_worker()))
        writer.run(run_id)
        logging = time.perf_counter() - start
        self.progress.started(self.worker, cand.key, self.trainer.steps)
        early = self.settings.early_stop
        rungs = RungTracker(early, self.trainer.steps) if early else None
        count = 0

        def on_step(step: int, metrics: dict[str, float]) -> bool:
            """``step`` is the number of steps done; True stops the fine-tune."""
            nonlocal count, logging
            self.gate.check()  # an interrupt a finalizer dropped stops the fine-tune here
            count = step
            self.progress.stepped(self.worker, step)
            clock = time.perf_counter()
            self.sink.progress(run_id, step, metrics)
            logging += time.perf_counter() - clock
            if rungs is None:
                return False
            stop = False
            for rung in rungs.add(step, metrics["loss"]):
                score = rungs.score()
                writer.rung(rung, score)
                peers = [
                    (self.book.prices[r.candidate][self.book.primary].priced_ms, r.rungs[rung])
                    for r in records(self.study)
                    if r.number != trial.number and rung in r.rungs
                ]
                reason = None if stop else stop_reason(early, latency, score, peers, rung, self.trainer.steps)
                if reason:
                    writer.stopping(reason)
                    stop = True
            return stop

        try:
            with self.gate.opened():
                result = self.trainer.run(cand, on_step)
        except UpdateFinishedTrialError:
            self._end_unsettled(writer, run_id, cand, Outcome.SUPERSEDED)
            raise Superseded(cand.key) from None
        except KeyboardInterrupt:
            self._end_unsettled(writer, run_id, cand, Outcome.INTERRUPTED, "interrupted (Ctrl-C or kill)")
            raise
        except PrunesearchError as err:
            # A problem of this machine, not of the candidate (a full disk): the worker stops.
            self._end_unsettled(writer, run_id, cand, Outcome.FAILED, str(err))
            raise
        except Exception as err:  # noqa: BLE001 - any other error is this candidate's: retried, then given up
            first = (str(err).strip().splitlines() or [""])[0]
            message = f"{type(err).__name__}: {first}" if first else type(err).__name__
            self._end_unsettled(writer, run_id, cand, Outcome.FAILED, message)
            final = "; given up (search.retries)" if cand.key in self.state().given_up else "; will be retried"
            self.progress.finished(self.worker, cand.key, f"failed ({message}){final}", None)
            raise CandidateFailed(f"{cand.key}: {message}") from None
        outcome = Outcome.of_finetune(result.status)
        values = (result.accuracy["ao"], latency) if outcome == Outcome.TRAINED else ()
        seconds = {**result.seconds, "log_candidate": logging}
        try:
            record = writer.settle(outcome, count, seconds, result.accuracy, result.blocks or self.blocks[cand.key],
                                   result.checkpoint, values, result.sequences, student)
        except UpdateFinishedTrialError:
            # Failed as lost while it trained (a missed heartbeat): the retry elsewhere counts.
            self._end_unsettled(writer, run_id, cand, Outcome.SUPERSEDED)
            self.progress.finished(self.worker, cand.key, "discarded: the trial was given up as lost and re-run elsewhere", None)
            raise Superseded(cand.key) from None
        self.sink.end(run_id, cand, record, outcome.run_status)
        self.progress.finished(self.worker, cand.key, outcome, result.accuracy.get("ao"))
        return self._settled(cand, outcome, count, values)

    def _end_unsettled(self, writer: TrialWriter, run_id: str, cand: Candidate, outcome: Outcome, message: str = "") -> None:
        """Mark a fine-tune that did not finish, on the way out: never let the bookkeeping hide the cause.
        A superseded trial was already failed by whoever found it lost; only its run is ended."""
        with contextlib.suppress(UpdateFinishedTrialError):
            if outcome != Outcome.SUPERSEDED:
                writer.fail(outcome, message)
        with contextlib.suppress(Exception):
            self.sink.end(run_id, cand, None, outcome.run_status, message or outcome)
