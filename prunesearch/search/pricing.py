"""Pricing every candidate before any is fine-tuned: latency per target, MACs and params.

Latency comes from per-device lookup tables (:mod:`prunesearch.latency`) for the experiment's
deployment architecture, whatever teacher supplies the accuracy. What the search optimises and
budgets is what a tracker pays per frame: with ``template_update=K`` the template branch,
amortised over K frames, is part of it; by default the template is paid once per sequence and
left out of the per-frame price (:func:`template_policy` says which, in every output). Pricing is instant, so the whole
space is priced first; the controller never fine-tunes a candidate that fits no target's budget.
"""

from __future__ import annotations

import copy

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from prunesearch.errors import InputError, PrunesearchError
from prunesearch.flops import model_macs
from prunesearch.models.phases import amortised, check_template_update
from prunesearch.models.vit_tracker import PRESETS, StudentSpec, TrackerConfig, build_student, count_params
from prunesearch.search.budget import Budget
from prunesearch.search.space import Candidate

if TYPE_CHECKING:
    from prunesearch.latency.table import LatencyTable


@dataclass(frozen=True)
class Price:
    """Per-frame and once-per-template latency of one candidate on one target, and the template schedule."""

    per_frame_ms: float
    template_ms: float
    template_update: int | None = None

    @property
    def priced_ms(self) -> float:
        """The search's latency: per frame, plus ``template_ms / K`` when the template is re-encoded every K frames."""
        return amortised(self.per_frame_ms, self.template_ms, self.template_update)

    @property
    def fps(self) -> float:
        return 1000.0 / self.priced_ms


def template_policy(template_update: int | None) -> str:
    """The template schedule the prices assume, as every output states it."""
    if template_update is None:
        return "template paid once per sequence (not in the per-frame price)"
    return f"template re-encoded every {template_update} frames, its cost amortised into the per-frame price"


class Pricer(Protocol):
    """Prices candidates on a fixed list of targets; ``table_hashes`` fingerprints what it priced with.

    ``template_update``: the template schedule its prices assume (None: once per sequence).
    """

    targets: tuple[str, ...]
    template_update: int | None

    def price(self, cand: Candidate) -> dict[str, Price]: ...

    def table_hashes(self) -> dict[str, str]: ...

    def warnings(self) -> list[str]: ...


class LatencyTablePricer:
    """The product pricer: one latency table per target, checked to cover the architecture."""

    def __init__(self, targets: tuple[str, ...], arch: TrackerConfig, template_update: int | None = None) -> None:
        from prunesearch.latency import load_table

        check_template_update(template_update)
        self.targets = tuple(targets)
        self.arch = arch
        self.template_update = template_update
        self.tables = {target: load_table(target) for target in self.targets}  # unknown names list the known
        for table in self.tables.values():
            table.check_covers(arch)

    def warnings(self) -> list[str]:
        """One line per table whose calibrated prices do not hold (see :mod:`prunesearch.latency.calibrate`)."""
        return [line for table in self.tables.values() if (line := table.warning())]

    def price(self, cand: Candidate) -> dict[str, Price]:
        return {target: table_price(table, self.arch, cand.depth, cand.ai_layers, self.template_update)
                for target, table in self.tables.items()}

    def table_hashes(self) -> dict[str, str]:
        return {target: table.sha256 for target, table in self.tables.items()}


def table_price(table: "LatencyTable", arch: TrackerConfig, depth: int, ai_layers: int | None,
                template_update: int | None) -> Price:
    """Student ``B{depth}-{ai_layers}`` (the joint teacher when ``ai_layers`` is None) priced by ``table`` for ``arch``.

    The one way a price is made from a table: the search's pricer, and re-pricing what a search
    trained on another table (``pareto --target``, ``verify``), both call it.
    """
    est = table.estimate_teacher(cfg=arch) if ai_layers is None else table.estimate(depth, ai_layers, cfg=arch)
    return Price(float(est.per_frame_ms), float(est.template_ms), template_update)


def architecture_name(cfg: TrackerConfig) -> str:
    """The preset ``cfg`` is (``vit-b``), else its width, heads and crops."""
    named = next((name for name, preset in PRESETS.items() if preset.to_dict() == cfg.to_dict()), None)
    return named or f"width {cfg.embed_dim}, {cfg.num_heads} heads, crops {cfg.template_size}/{cfg.search_size} px"


def check_table_architecture(table: "LatencyTable", architecture: str, experiment: str) -> TrackerConfig:
    """The preset ``architecture`` a search priced for, when ``table`` prices it; else one line naming both."""
    arch = PRESETS.get(architecture)
    if arch is None:
        raise InputError(f"the runs of {experiment!r} record architecture {architecture!r}, which is no preset of this "
                         f"prunesearch ({', '.join(sorted(PRESETS))})")
    if table.missing(arch):
        raise InputError(f"latency table {table.name!r} prices architecture {architecture_name(table.architecture)}; "
                         f"{experiment!r} searched {architecture}: re-price with a table of {architecture} "
                         f"(prunesearch profile --preset {architecture} on the device)")
    return arch


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
        self.template_update = pricer.template_update

    @property
    def primary(self) -> str:
        """The first target: its latency is the sampler's second objective."""
        return self.targets[0]

    def fits(self, cand: Candidate, target: str) -> bool:
        return self.prices[cand.key][target].priced_ms <= self.budget.ms

    def margin_ms(self, cand: Candidate) -> float:
        """How far over budget on its most lenient target (<= 0: feasible); Optuna's constraint value."""
        return min(p.priced_ms for p in self.prices[cand.key].values()) - self.budget.ms

    def only(self, keys: list[str]) -> "PriceBook":
        """The same prices with ``keys`` alone as candidates (the confirmation stage's book)."""
        book, wanted = copy.copy(self), set(keys)
        book.candidates = [c for c in self.candidates if c.key in wanted]
        return book

    def feasible(self) -> list[Candidate]:
        return [c for c in self.candidates if self.margin_ms(c) <= 0]

    def fastest(self) -> tuple[Candidate, str, float]:
        """The candidate and target with the lowest priced latency of the whole space."""
        return min(
            ((c, t, p.priced_ms) for c in self.candidates for t, p in self.prices[c.key].items()),
            key=lambda x: x[2],
        )

    def require_feasible(self, space_name: str) -> list[Candidate]:
        """The feasible candidates, or a one-line error saying how fast the fastest one is."""
        feasible = self.feasible()
        if not feasible:
            cand, target, ms = self.fastest()
            raise PrunesearchError(
                f"no candidate of {space_name} fits {self.budget.text} ({self.budget.ms:.2f} ms) on "
                f"{', '.join(self.targets)}: the fastest, {cand.key}, takes {ms:.2f} ms per frame on {target} "
                f"({template_policy(self.template_update)}); "
                "raise the budget or widen the space"
            )
        return feasible
