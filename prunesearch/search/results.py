"""One finished candidate as every output shows it, and the per-target fronts built from them.

The same record comes from two places: the Optuna study at the end of ``prunesearch run``, and
the MLflow store for ``prunesearch pareto``; tables, CSV, JSON and plots read only this.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from prunesearch.search.pareto import pareto_front

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

    @property
    def name(self) -> str:
        return f"B{self.depth}-{self.ai_layers}"

    @property
    def ao(self) -> float:
        return self.accuracy["ao"]

    def row(self, target: str) -> dict[str, object]:
        """Flat record for one target: what the table, CSV and JSON outputs show."""
        ms = self.latency_ms[target]
        return {
            "candidate": self.key,
            "depth": self.depth,
            "ai_layers": self.ai_layers,
            "rule": self.rule,
            **{k: self.accuracy.get(k) for k in ACCURACY_KEYS},
            "target": target,
            "frame_ms": ms,
            "fps": 1000.0 / ms,
            "template_ms": self.template_ms[target],
            "gmacs_per_frame": self.gmacs_per_frame,
            "params_m": self.params_m,
            "blocks": " ".join(str(b) for b in self.blocks),
            "accuracy_scale": self.accuracy_scale,
            "run_id": self.run_id,
        }

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def front_for(results: list[CandidateResult], target: str, budget_ms: float | None = None) -> list[CandidateResult]:
    """The Pareto front on ``target`` (AO up, per-frame latency down), within ``budget_ms`` if given."""
    fitting = [
        r for r in results if target in r.latency_ms and (budget_ms is None or r.latency_ms[target] <= budget_ms)
    ]
    return pareto_front(fitting, accuracy=lambda r: r.ao, latency=lambda r: r.latency_ms[target])
