"""Stopping weak candidates early: successive halving made Pareto-aware.

Optuna's pruners (successive halving, Hyperband, median) rank trials on one intermediate value and
do not support multi-objective studies. Here the question is not "is this candidate's loss in the
top third" but "could it still reach the front": a slow candidate with a middling loss is worth
nothing, a fast one with the same loss may be on the front. So at each rung (steps ``S/r^k``,
``r`` the reduction factor) a candidate is compared only with the candidates that reached the
same rung and are no slower on the primary target; it goes on if its training loss (mean over the
last ``window`` steps) is in the best ``1/r`` of that group (itself included), and stops otherwise.
A peer counts as better only when its loss is lower by more than ``margin`` (a fraction): early
losses of different depths are close and noisy, and a stopped front member is lost for good
(benchmarks/results/search_front_efficiency.md replays the default setting on the whole space: what it
saves and whether it loses a front member).
Every fine-tune uses the same seed, so at a given step all candidates have seen the same batches.
Alone at a rung (no faster peer yet), a candidate always goes on.
"""

from __future__ import annotations

import math

from prunesearch.search.experiment import EarlyStop


def rung_steps(settings: EarlyStop, steps: int) -> list[int]:
    """Steps at which candidates are compared, ascending; rungs shorter than the window are dropped."""
    found = {steps // settings.reduction**k for k in range(1, settings.rungs + 1)}
    return sorted(s for s in found if settings.window <= s < steps)


def should_stop(settings: EarlyStop, latency_ms: float, score: float, peers: list[tuple[float, float]]) -> bool:
    """``peers`` are (latency, score) of other candidates at this rung; lower score is better."""
    return stop_reason(settings, latency_ms, score, peers) is not None


def stop_reason(
    settings: EarlyStop, latency_ms: float, score: float, peers: list[tuple[float, float]], rung: int = 0, steps: int = 0
) -> str | None:
    """Why the candidate stops at ``rung`` of ``steps`` (see :func:`should_stop`), or None: it goes on.

    The reason is what a reviewer reads on the stopped candidate's run, with the numbers compared.
    """
    group = [s for lat, s in peers if lat <= latency_ms]
    if not group:
        return None
    keep = math.ceil((len(group) + 1) / settings.reduction)
    better = sorted(s for s in group if s < score * (1 - settings.margin))
    if len(better) < keep:
        return None
    if len(group) == 1:
        compared = f"loss {score:.3g} vs {better[0]:.3g} of a no-slower peer"
    else:
        compared = f"loss {score:.3g}; {len(better)} of {len(group)} no-slower peers lower (best {better[0]:.3g})"
    return f"stopped at rung {rung}/{steps}: {compared}"


class RungTracker:
    """One fine-tune's logged losses, and which rungs it has reached.

    The fine-tune reports every few steps (``log_every``), each loss already a mean over those
    steps; a rung is reached at the first report at or after its step, and scored as the mean of
    the reports covering the last ``window`` steps.
    """

    def __init__(self, settings: EarlyStop, steps: int) -> None:
        self.window = settings.window
        self.pending = rung_steps(settings, steps)
        self.reports: list[tuple[int, float]] = []

    def add(self, step: int, loss: float) -> list[int]:
        """Record a report; returns the rungs it reaches (usually none, at most a few)."""
        self.reports.append((step, float(loss)))
        reached = [r for r in self.pending if r <= step]
        self.pending = [r for r in self.pending if r > step]
        return reached

    def score(self) -> float:
        last = self.reports[-1][0]
        recent = [loss for step, loss in self.reports if step > last - self.window]
        return sum(recent) / len(recent)
