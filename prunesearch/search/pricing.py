"""Pricing every candidate before any is fine-tuned: latency per target, MACs and params.

Latency comes from per-device lookup tables (:mod:`prunesearch.latency`) for the experiment's
deployment architecture, whatever teacher supplies the accuracy. Pricing is instant, so the whole
space is priced first; the controller never fine-tunes a candidate that fits no target's budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from prunesearch.errors import PrunesearchError
from prunesearch.flops import model_macs
from prunesearch.models.vit_tracker import StudentSpec, TrackerConfig, build_student, count_params
from prunesearch.search.budget import Budget
from prunesearch.search.space import Candidate


@dataclass(frozen=True)
class Price:
    """Per-frame and once-per-template latency of one candidate on one target."""

    per_frame_ms: float
    template_ms: float

    @property
    def fps(self) -> float:
        return 1000.0 / self.per_frame_ms


class Pricer(Protocol):
    """Prices candidates on a fixed list of targets; ``table_hashes`` fingerprints what it priced with."""

    targets: tuple[str, ...]

    def price(self, cand: Candidate) -> dict[str, Price]: ...

    def table_hashes(self) -> dict[str, str]: ...


class LatencyTablePricer:
    """The product pricer: one latency table per target, checked to cover the architecture."""

    def __init__(self, targets: tuple[str, ...], arch: TrackerConfig) -> None:
        from prunesearch.latency import load_table

        self.targets = tuple(targets)
        self.arch = arch
        self.tables = {target: load_table(target) for target in self.targets}  # unknown names list the known
        for table in self.tables.values():
            table.check_covers(arch)

    def price(self, cand: Candidate) -> dict[str, Price]:
        out = {}
        for target, table in self.tables.items():
            est = table.estimate(cand.depth, cand.ai_layers, cfg=self.arch)
            out[target] = Price(per_frame_ms=float(est.per_frame_ms), template_ms=float(est.template_ms))
        return out

    def table_hashes(self) -> dict[str, str]:
        return {target: table.sha256 for target, table in self.tables.items()}


@dataclass(frozen=True)
class Cost:
    """Size of a candidate in the deployment architecture (independent of the target)."""

    gmacs_per_frame: float
    gmacs_template: float
    params_m: float


def candidate_cost(arch: TrackerConfig, cand: Candidate) -> Cost:
    """MACs from the analytic part counts; params from a weightless (meta-device) build."""
    macs = model_macs(arch, cand.depth, cand.ai_layers)
    with torch.device("meta"):
        params = count_params(build_student(arch, StudentSpec(cand.depth, cand.ai_layers)))
    return Cost(macs.per_frame_gmacs, macs.template_gmacs, params / 1e6)


class PriceBook:
    """Every candidate of a space priced on every target against one budget.

    A candidate is *feasible* when it fits the budget on at least one target, so one search can
    serve several devices; each target's front then holds only the candidates that fit it.
    """

    def __init__(self, candidates: list[Candidate], pricer: Pricer, budget: Budget, arch: TrackerConfig) -> None:
        self.budget = budget
        self.pricer = pricer
        self.targets = tuple(pricer.targets)
        self.candidates = list(candidates)
        self.prices = {c.key: pricer.price(c) for c in self.candidates}
        self.costs = {c.key: candidate_cost(arch, c) for c in self.candidates}
        self.table_hashes = pricer.table_hashes()

    @property
    def primary(self) -> str:
        """The first target: its latency is the sampler's second objective."""
        return self.targets[0]

    def fits(self, cand: Candidate, target: str) -> bool:
        return self.prices[cand.key][target].per_frame_ms <= self.budget.ms

    def margin_ms(self, cand: Candidate) -> float:
        """How far over budget on its most lenient target (<= 0: feasible); Optuna's constraint value."""
        return min(p.per_frame_ms for p in self.prices[cand.key].values()) - self.budget.ms

    def feasible(self) -> list[Candidate]:
        return [c for c in self.candidates if self.margin_ms(c) <= 0]

    def fastest(self) -> tuple[Candidate, str, float]:
        """The candidate and target with the lowest per-frame latency of the whole space."""
        return min(
            ((c, t, p.per_frame_ms) for c in self.candidates for t, p in self.prices[c.key].items()),
            key=lambda x: x[2],
        )

    def require_feasible(self, space_name: str) -> list[Candidate]:
        """The feasible candidates, or a one-line error saying how fast the fastest one is."""
        feasible = self.feasible()
        if not feasible:
            cand, target, ms = self.fastest()
            raise PrunesearchError(
                f"no candidate of {space_name} fits {self.budget.text} ({self.budget.ms:.2f} ms) on "
                f"{', '.join(self.targets)}: the fastest, {cand.key}, takes {ms:.2f} ms per frame on {target}; "
                "raise the budget or widen the space"
            )
        return feasible
