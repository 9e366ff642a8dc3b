"""One finished candidate as every output shows it, and the per-target fronts built from them.

The same record comes from two places: the Optuna study at the end of ``prunesearch run``, and
the MLflow store for ``prunesearch pareto``; tables, CSV, JSON and plots read only this.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from prunesearch.evaluation.uncertainty import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    Comparison,
    Interval,
    SequenceStats,
    bootstrap_intervals,
    paired_difference,
)
from prunesearch.search.pareto import pareto_front, tied_with_front
from prunesearch.models.names import student_name

ACCURACY_KEYS = ("ao", "sr50", "sr75", "auc")


@dataclass
class CandidateResult:
    """Accuracy (fractions in [0, 1]) of one fine-tuned candidate and its price on each target."""

    key: str
    depth: int
    ai_layers: int
    rule: str
    accuracy: dict[str, float]
    latency_ms: dict[str, float]
    template_ms: dict[str, float]
    budget_ms: float
    gmacs_per_frame: float
    params_m: float
    accuracy_scale: str
    blocks: list[int] = field(default_factory=list)
    run_id: str = ""
    trial: int = -1
    # Per-sequence sufficient statistics (SequenceStats.to_dict()), for intervals and paired tests.
    sequences: dict | None = None
    training_key: str = ""  # the student (prunesearch.search.identity); empty for runs logged before it was kept
    same_as: list[str] = field(default_factory=list)  # other candidates that are the same student (same_students)
    _intervals: dict[str, Interval] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return student_name(self.depth, self.ai_layers)

    @property
    def ao(self) -> float:
        return self.accuracy["ao"]

    def stats(self) -> SequenceStats | None:
        return None if self.sequences is None else SequenceStats.from_dict(self.sequences)

    def intervals(self) -> dict[str, Interval]:
        """95% bootstrap intervals over the scored sequences (empty for results that lack them)."""
        if self._intervals is None:
            stats = self.stats()
            self._intervals = {} if stats is None or not stats.names else bootstrap_intervals(stats)
        return self._intervals

    def row(self, target: str, status: str | None = None) -> dict[str, object]:
        """Flat record for one target: what the table, CSV and JSON outputs show. ``status``:
        ``front``, ``tied`` or ``dominated`` where the caller knows it."""
        ms = self.latency_ms[target]
        intervals = self.intervals()
        bounds = {f"{k}_ci_{side}": getattr(intervals[k], side) if k in intervals else None
                  for k in ACCURACY_KEYS for side in ("low", "high")}
        return {
            "candidate": self.key,
            **({"status": status} if status else {}),
            "depth": self.depth,
            "ai_layers": self.ai_layers,
            "rule": self.rule,
            **{k: self.accuracy.get(k) for k in ACCURACY_KEYS},
            **bounds,
            "target": target,
            "frame_ms": ms,
            "fps": 1000.0 / ms,
            "template_ms": self.template_ms[target],
            "gmacs_per_frame": self.gmacs_per_frame,
            "params_m": self.params_m,
            "blocks": " ".join(str(b) for b in self.blocks),
            "same_as": " ".join(self.same_as),
            "accuracy_scale": self.accuracy_scale,
            "run_id": self.run_id,
        }

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out.pop("_intervals")
        return out


def same_students(results: list[CandidateResult]) -> list[CandidateResult]:
    """Set each result's ``same_as``: the other results with its training key (rules that yield
    the same student, trained once). Returns ``results``."""
    by_key: dict[str, list[str]] = {}
    for r in results:
        if r.training_key:
            by_key.setdefault(r.training_key, []).append(r.key)
    for r in results:
        r.same_as = sorted(k for k in by_key.get(r.training_key, []) if k != r.key)
    return results


def front_for(results: list[CandidateResult], target: str, budget_ms: float | None = None) -> list[CandidateResult]:
    """The Pareto front on ``target`` (AO up, per-frame latency down), within ``budget_ms`` if given."""
    fitting = [
        r for r in results if target in r.latency_ms and (budget_ms is None or r.latency_ms[target] <= budget_ms)
    ]
    return pareto_front(fitting, accuracy=lambda r: r.ao, latency=lambda r: r.latency_ms[target])


def compare(a: CandidateResult, b: CandidateResult, level: float = DEFAULT_LEVEL,
            resamples: int = DEFAULT_RESAMPLES) -> Comparison:
    """Paired bootstrap of AO(a) - AO(b) on the sequences both were scored on."""
    sa, sb = a.stats(), b.stats()
    missing = [r.key for r, s in ((a, sa), (b, sb)) if s is None]
    if missing:
        from prunesearch.errors import PrunesearchError

        raise PrunesearchError(f"{missing[0]} has no per-sequence scores (logged before they were kept); it cannot be compared")
    return paired_difference(sa, sb, (a.key, b.key), resamples=resamples, level=level)


def tied_for(results: list[CandidateResult], front: list[CandidateResult], target: str,
             budget_ms: float | None = None, level: float = DEFAULT_LEVEL) -> list[CandidateResult]:
    """Candidates within the budget but off ``front`` that no front member at the same or lower
    latency on ``target`` beats significantly (paired bootstrap at ``level``): the search cannot
    tell them from the front. Results without per-sequence scores are never called tied."""
    pool = [r for r in results if target in r.latency_ms and r.sequences is not None
            and (budget_ms is None or r.latency_ms[target] <= budget_ms)]

    def better(f: CandidateResult, r: CandidateResult) -> bool:
        if f.sequences is None:
            return True
        comparison = compare(f, r, level)
        return comparison.significant and comparison.difference.value > 0

    return tied_with_front(pool, front, lambda r: r.latency_ms[target], better)


def fronts_and_ties(results: list[CandidateResult], targets: tuple[str, ...] | list[str], budget_ms: float | None = None,
                    level: float = DEFAULT_LEVEL) -> tuple[dict[str, list[CandidateResult]], dict[str, list[CandidateResult]]]:
    """Each target's front (:func:`front_for`) and the candidates tied with it (:func:`tied_for`)."""
    fronts = {t: front_for(results, t, budget_ms) for t in targets}
    return fronts, {t: tied_for(results, fronts[t], t, budget_ms, level) for t in targets}


def statuses(results: list[CandidateResult], front: list[CandidateResult], tied: list[CandidateResult]) -> dict[str, str]:
    """``front``, ``tied`` or ``dominated`` for each result's key."""
    on_front, ties = {r.key for r in front}, {r.key for r in tied}
    return {r.key: "front" if r.key in on_front else "tied" if r.key in ties else "dominated" for r in results}
