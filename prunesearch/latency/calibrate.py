"""Calibrating the additive sum of parts against a few whole per-frame graphs.

A sum of separately timed parts is biased on a GPU: a whole student pays launches, allocator and
scheduling effects its parts, timed apart, do not (or the reverse). A few whole graphs are timed
after the parts, and a three-parameter correction is fitted by non-negative least squares:

    whole_ms = graph_ms + block_scale * (sum of block entries) + other_scale * (fixed + embed + head)

Three parameters from five or six graphs cannot chase noise far, and leave-one-out errors (each
graph predicted by the correction fitted without it) are stored with it, so a user sees how well
it holds for a model it was not fitted to. The same correction prices the template branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from prunesearch.errors import InputError

#: Below this leave-one-out share within 10%, a calibrated table warns wherever it is used.
TRUSTED_WITHIN_10PCT = 0.9
MODEL = "whole_ms = graph_ms + block_scale * blocks_ms + other_scale * (fixed + embeddings + head)_ms"
ADVICE = "time with CUDA graphs (--mode cuda-graph) or TensorRT, or price whole graphs"


@dataclass(frozen=True)
class WholeGraph:
    """One timed whole per-frame graph and the raw sum of its table parts, split as the model is."""

    name: str
    blocks_ms: float
    other_ms: float
    measured_ms: float

    @property
    def raw_ms(self) -> float:
        return self.blocks_ms + self.other_ms


@dataclass(frozen=True)
class Calibration:
    """A fitted correction of the sum of parts; ``graphs`` holds the fit's per-graph report."""

    graph_ms: float
    block_scale: float
    other_scale: float
    graphs: tuple[dict[str, Any], ...] = ()

    def apply(self, blocks_ms: float, other_ms: float) -> float:
        return self.graph_ms + self.block_scale * blocks_ms + self.other_scale * other_ms

    @property
    def loo_within_10pct(self) -> float:
        errors = [abs(g["loo_error_pct"]) for g in self.graphs]
        return sum(e <= 10 for e in errors) / len(errors) if errors else float("nan")

    @property
    def trusted(self) -> bool:
        return self.loo_within_10pct >= TRUSTED_WITHIN_10PCT

    def warning(self, table: str) -> str | None:
        """One line for a table whose calibration does not hold within 10% for most graphs."""
        if self.trusted:
            return None
        return (
            f"warning: latency table {table!r} predicts only {100 * self.loo_within_10pct:.0f}% of its whole "
            f"graphs within 10% after calibration (leave-one-out); its prices are rough: {ADVICE}"
        )

    def to_dict(self) -> dict[str, Any]:
        errors = [abs(g["loo_error_pct"]) for g in self.graphs]
        return {
            "model": MODEL,
            "graph_ms": round(self.graph_ms, 6),
            "block_scale": round(self.block_scale, 6),
            "other_scale": round(self.other_scale, 6),
            "loo_within_10pct": round(self.loo_within_10pct, 4),
            "loo_mape_pct": round(float(np.mean(errors)), 3) if errors else None,
            "graphs": [dict(g) for g in self.graphs],
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "Calibration":
        if not isinstance(data, dict):
            raise InputError(f"{where}: 'calibration' must be a mapping with graph_ms, block_scale, other_scale")
        values = []
        for key in ("graph_ms", "block_scale", "other_scale"):
            v = data.get(key)
            zero_ok = key != "block_scale"  # blocks priced at nothing would price every student alike
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0 or (v == 0 and not zero_ok):
                raise InputError(f"{where}: calibration.{key} must be a finite number {'>=' if zero_ok else '>'} 0, got {v!r}")
            values.append(float(v))
        graphs = data.get("graphs") or []
        if not isinstance(graphs, list) or not all(isinstance(g, dict) and "loo_error_pct" in g for g in graphs):
            raise InputError(f"{where}: calibration.graphs must be a list of graphs with their loo_error_pct")
        return cls(*values, tuple(graphs))


def _nnls(rows: list[WholeGraph]) -> np.ndarray:
    from scipy.optimize import nnls

    a = np.array([[1.0, g.blocks_ms, g.other_ms] for g in rows])
    coef, _ = nnls(a, np.array([g.measured_ms for g in rows]))
    return coef


def fit_calibration(graphs: list[WholeGraph]) -> Calibration:
    """Fit the correction to all graphs; report each graph's fit and leave-one-out prediction."""
    if len(graphs) < 4:
        raise InputError(f"calibration needs at least 4 whole graphs (3 parameters and one left out), got {len(graphs)}")
    coef = _nnls(graphs)
    report = []
    for i, g in enumerate(graphs):
        loo = _nnls(graphs[:i] + graphs[i + 1 :])
        fitted = float(coef @ [1.0, g.blocks_ms, g.other_ms])
        held = float(loo @ [1.0, g.blocks_ms, g.other_ms])
        report.append({
            "name": g.name,
            "measured_ms": round(g.measured_ms, 6),
            "raw_ms": round(g.raw_ms, 6),
            "raw_error_pct": round(100 * (g.raw_ms - g.measured_ms) / g.measured_ms, 3),
            "calibrated_ms": round(fitted, 6),
            "loo_ms": round(held, 6),
            "loo_error_pct": round(100 * (held - g.measured_ms) / g.measured_ms, 3),
        })
    return Calibration(float(coef[0]), float(coef[1]), float(coef[2]), tuple(report))
