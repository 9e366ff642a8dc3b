"""What a study's trials add up to: which candidates are settled, training, queued or given up;
the outcomes and work of one invocation; the trained candidates and their checkpoints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import optuna
from optuna.trial import TrialState

from prunesearch.search.study.record import Outcome, TrialRecord, records


@dataclass
class StudyState:
    """Which candidates a study has settled, is training, has queued, and has given up on."""

    settled: set[str]
    running: set[str]
    queued: set[str]
    given_up: dict[str, str]  # candidate -> last failure message
    reused: set[str] = field(default_factory=set)  # settled from another trial's fine-tune, without one of their own

    @classmethod
    def read(cls, study: optuna.Study, retries: int, exclude: int | None = None) -> "StudyState":
        return cls.of([r for r in records(study) if r.number != exclude], retries)

    @classmethod
    def of(cls, recs: list[TrialRecord], retries: int) -> "StudyState":
        settled, running, queued, reused = set(), set(), set(), set()
        failures: Counter[str] = Counter()
        last: dict[str, str] = {}
        for r in recs:
            if r.settled:
                settled.add(r.candidate)
                if r.reused:
                    reused.add(r.candidate)
            elif r.holding:
                running.add(r.candidate)
            elif r.state == TrialState.WAITING and r.candidate:
                queued.add(r.candidate)
            if r.outcome == Outcome.FAILED:
                failures[r.candidate] += 1
                last[r.candidate] = r.message or ""
        given_up = {k: last[k] for k, n in failures.items() if n > retries and k not in settled | running}
        return cls(settled, running, queued, given_up, reused - {r.candidate for r in recs if r.settled and not r.reused})

    @property
    def claimed(self) -> set[str]:
        return self.settled | self.running | set(self.given_up)

    @property
    def finished(self) -> set[str]:
        """Candidates nobody will train again."""
        return self.settled | set(self.given_up)


def trained(study: optuna.Study) -> dict[str, TrialRecord]:
    """Every candidate the study trained to the end, by key: its latest trained trial."""
    return {r.candidate: r for r in records(study) if r.outcome == Outcome.TRAINED}


def checkpoints(study: optuna.Study) -> dict[str, str]:
    """Candidate -> checkpoint file of its latest trained trial (on whichever machine trained it)."""
    return {key: r.checkpoint for key, r in trained(study).items() if r.checkpoint}


@dataclass(frozen=True)
class StudyCounts:
    """Outcomes and fine-tune work of the trials of one invocation (what the end of a run reports).

    A candidate settled from another trial's fine-tune counts under its outcome (``trained``) and
    in ``reused``, by where that fine-tune was done: ``same search`` (another rule yields the same
    student) or ``earlier search``; its steps are not fine-tune steps spent.
    """

    outcomes: dict[str, int]
    seconds: dict[str, float]  # by phase: finetune, evaluate, checkpoint, log_candidate
    finetune_steps: int
    reused: dict[str, int] = field(default_factory=dict)

    SAME, EARLIER = "same search", "earlier search"

    @classmethod
    def of(cls, study: optuna.Study, since: datetime | None = None) -> "StudyCounts":
        outcomes: Counter[str] = Counter()
        seconds: Counter[str] = Counter()
        reused: Counter[str] = Counter()
        steps = 0
        for r in records(study):
            if since is not None and (r.started is None or r.started < since):
                continue
            outcomes[str(r.outcome or ("running" if r.state == TrialState.RUNNING else r.state.name.lower()))] += 1
            seconds.update(r.seconds)
            if r.reused_from is not None:
                reused[cls.SAME if r.reused_from.get("study") == study.study_name else cls.EARLIER] += 1
            else:
                steps += r.steps
        return cls(dict(outcomes), dict(seconds), steps, dict(reused))

    def plus(self, other: "StudyCounts") -> "StudyCounts":
        """Both counts together (a brief stage and its confirmation)."""
        return StudyCounts(dict(Counter(self.outcomes) + Counter(other.outcomes)),
                           dict(Counter(self.seconds) + Counter(other.seconds)), self.finetune_steps + other.finetune_steps,
                           dict(Counter(self.reused) + Counter(other.reused)))
