"""What one trial holds: its candidate, its worker, its claim, its MLflow run, its rung losses, and
once it settles its outcome and result; and the one vocabulary of outcomes.

Extending the record: add a field with a default to :class:`TrialRecord`, read it in
:meth:`TrialRecord.of` and write it through a method of :class:`TrialWriter`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from prunesearch.search.space import Candidate
from prunesearch.search.study.liveness import WorkerId

DIRECTIONS = ("maximize", "minimize")


class Outcome(StrEnum):
    """How a trial ended: its ``outcome`` attribute in the study, the ``outcome`` tag of its MLflow
    child run, what the terminal and ``pareto`` say."""

    TRAINED = "trained"
    EARLY_STOPPED = "early_stopped"
    DIVERGED = "diverged"
    FAILED = "failed"  # the fine-tune raised: retried up to ``search.retries`` times, then given up
    INTERRUPTED = "interrupted"  # Ctrl-C or kill: queued again on resume
    # Proposals recorded without a fine-tune (they cost nothing):
    OUTSIDE_SPACE = "outside_space"
    OVER_BUDGET = "over_budget"
    DUPLICATE = "duplicate"
    SURPLUS = "surplus"
    # Only on MLflow child runs, never in the study:
    LOST = "lost"  # its worker was lost before the trial settled
    SUPERSEDED = "superseded"  # failed as lost while it trained; the retry elsewhere counts

    @classmethod
    def of_finetune(cls, status: str) -> "Outcome":
        """The outcome of a fine-tune that ended with ``status`` (``prunesearch.training``'s
        ok, stopped or diverged): the one place the two vocabularies meet."""
        return {"ok": cls.TRAINED, "stopped": cls.EARLY_STOPPED, "diverged": cls.DIVERGED}[status]

    @property
    def label(self) -> str:
        """As runs tables and run names show it: ``early-stopped``."""
        return self.value.replace("_", "-")

    @property
    def run_status(self) -> str:
        """The MLflow status its child run ends with."""
        return "FINISHED" if self in (Outcome.TRAINED, Outcome.EARLY_STOPPED) else "KILLED" if self in (
            Outcome.INTERRUPTED, Outcome.LOST, Outcome.SUPERSEDED) else "FAILED"


# Outcomes that settle a candidate: it is never trained again.
SETTLED = frozenset({Outcome.TRAINED, Outcome.EARLY_STOPPED, Outcome.DIVERGED})
# Outcomes of trials that cost nothing: proposals recorded without a fine-tune.
SKIPPED = frozenset({Outcome.OUTSIDE_SPACE, Outcome.OVER_BUDGET, Outcome.DUPLICATE, Outcome.SURPLUS})


def _outcome(value: object) -> Outcome | None:
    return None if value is None else Outcome(value)


@dataclass(frozen=True)
class TrialRecord:
    """What one trial holds, read from its Optuna trial; the only reader of trial user attributes."""

    number: int
    state: TrialState
    candidate: str | None = None  # also for a queued trial, from its fixed parameters
    worker: str | None = None  # str(WorkerId)
    claimed: bool = False
    run_id: str | None = None  # MLflow child run, created when the fine-tune starts
    rungs: dict[int, float] = field(default_factory=dict)  # early-stopping score per rung step
    outcome: Outcome | None = None
    message: str | None = None  # why it failed, or why it was stopped early
    steps: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    blocks: tuple[int, ...] = ()
    checkpoint: str | None = None
    sequences: dict | None = None  # per-sequence scores of a trained candidate (SequenceStats.to_dict())
    values: tuple[float, ...] = ()  # the objectives, kept so a recovered trial can be completed
    training_key: str | None = None  # see prunesearch.search.identity: finds this fine-tune from any study
    # Settled without a fine-tune of its own: the fine-tune whose result it took (another rule
    # yielding the same student, or an earlier search): {study, trial, candidate, run_id}.
    reused_from: dict | None = None
    retry_of: int | None = None
    started: datetime | None = None
    params: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", _outcome(self.outcome))

    @classmethod
    def of(cls, t: FrozenTrial) -> "TrialRecord":
        a = t.user_attrs
        candidate = a.get("candidate")
        fixed = t.system_attrs.get("fixed_params")
        if candidate is None and t.state == TrialState.WAITING and fixed:
            candidate = Candidate(**fixed).key
        result = a.get("result", {})
        return cls(
            number=t.number,
            state=t.state,
            candidate=candidate,
            worker=a.get("worker"),
            claimed=bool(a.get("claimed")),
            run_id=a.get("run_id"),
            rungs={int(k[len("rung_"):]): float(v) for k, v in a.items() if k.startswith("rung_")},
            outcome=_outcome(a.get("outcome")),
            message=a.get("message"),
            steps=int(result.get("steps", 0)),
            seconds=dict(result.get("seconds", {})),
            accuracy=dict(result.get("accuracy", {})),
            blocks=tuple(result.get("blocks", ())),
            checkpoint=result.get("checkpoint"),
            sequences=result.get("sequences"),
            values=tuple(result.get("values", ())),
            training_key=a.get("training_key") or result.get("training_key"),
            reused_from=result.get("reused_from"),
            retry_of=a.get("retry_of"),
            started=t.datetime_start,
            params=dict(t.params or fixed or {}),
        )

    @property
    def settled(self) -> bool:
        return self.outcome in SETTLED

    @property
    def reused(self) -> bool:
        """Settled from another trial's fine-tune, without one of its own."""
        return self.reused_from is not None

    @property
    def holding(self) -> bool:
        """Claimed and training: the candidate is held until this trial settles or is failed."""
        return self.state == TrialState.RUNNING and self.claimed and self.outcome is None


def records(study: optuna.Study) -> list[TrialRecord]:
    return [TrialRecord.of(t) for t in study.get_trials(deepcopy=False)]


class TrialWriter:
    """Writes one running trial's record, field by field as the trial goes (the only writer)."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial

    def take(self, cand: Candidate, worker: WorkerId, training_key: str | None = None) -> None:
        """The candidate, its student (training key) and the worker, written before the trial looks
        whether another holds either (see the controller's claim rule)."""
        self.trial.set_user_attr("candidate", cand.key)
        self.trial.set_user_attr("worker", str(worker))
        if training_key:
            self.trial.set_user_attr("training_key", training_key)

    def claim(self) -> None:
        self.trial.set_user_attr("claimed", True)

    def run(self, run_id: str) -> None:
        self.trial.set_user_attr("run_id", run_id)

    def rung(self, step: int, score: float) -> None:
        self.trial.set_user_attr(f"rung_{step}", score)

    def stopping(self, reason: str) -> None:
        """Why the early-stopping rule stops this fine-tune (the outcome follows when it settles)."""
        self.trial.set_user_attr("message", reason)

    def skip(self, outcome: Outcome) -> None:
        self.trial.set_user_attr("outcome", outcome.value)

    def fail(self, outcome: Outcome, message: str) -> None:
        """``interrupted`` or ``failed``, with the reason; the candidate may be queued again."""
        self.trial.set_user_attr("message", message)
        self.trial.set_user_attr("outcome", outcome.value)

    def settle(self, outcome: Outcome, steps: int, seconds: dict[str, float], accuracy: dict[str, float],
               blocks: tuple[int, ...], checkpoint: str | None, values: tuple[float, ...],
               sequences: dict | None = None, training_key: str | None = None,
               reused_from: dict | None = None) -> TrialRecord:
        """Store a finished fine-tune (or, with ``reused_from``, the one it reuses): the result
        first, the outcome (which settles it) last.

        Raises :class:`optuna.exceptions.UpdateFinishedTrialError` when the trial was failed as
        lost meanwhile (its candidate re-queued): the caller discards its result.
        """
        result = {"steps": steps, "seconds": seconds, "accuracy": accuracy, "blocks": list(blocks),
                  "checkpoint": checkpoint, "values": list(values), "sequences": sequences, "training_key": training_key}
        if reused_from is not None:
            result["reused_from"] = reused_from
        self.trial.set_user_attr("result", result)
        self.trial.set_user_attr("outcome", Outcome(outcome).value)
        return self.record()

    def record(self) -> TrialRecord:
        """The trial's record as stored now (Optuna's ``Trial`` has no public reader of its own state)."""
        return TrialRecord.of(self.trial.study._storage.get_trial(self.trial._trial_id))


def enqueue(study: optuna.Study, cand: Candidate | dict[str, object], **origin: object) -> None:
    """Queue a candidate; ``origin`` says why (``seed``, ``instead_of``, ``retry_of``)."""
    params = cand.params if isinstance(cand, Candidate) else cand
    study.enqueue_trial(params, user_attrs=origin)


def set_strategy(study: optuna.Study, strategy: str) -> None:
    """The strategy a search chose (``enumerate``, ``sample (tpe)``, ``model``), for optuna-dashboard;
    a new plan also clears why an earlier invocation stopped."""
    study.set_user_attr("strategy", strategy)
    study.set_user_attr("stopped", "")


def set_stopped(study: optuna.Study, reason: str) -> None:
    """Why the planner ended the search before every fitting student was fine-tuned (``trials: auto``)."""
    study.set_user_attr("stopped", reason)


def stopped(study: optuna.Study) -> str:
    """:func:`set_stopped`'s reason, or "" when the search did not stop early."""
    return str(study.user_attrs.get("stopped") or "")
