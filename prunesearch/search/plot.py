"""Pareto plots: AO against per-frame latency on one target, front highlighted, paper points for reference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunesearch.search.results import CandidateResult, front_for


@dataclass(frozen=True)
class ReferencePoint:
    """A published result drawn beside the search's own points (e.g. LiteTrack-B9-3)."""

    label: str
    ao: float  # fraction in [0, 1]
    latency_ms: float


def pareto_plot(
    results: list[CandidateResult],
    target: str,
    path: Path,
    budget_ms: float | None = None,
    reference: list[ReferencePoint] | None = None,
) -> Path:
    """Write a PNG; the title says the accuracy scale so a small-teacher AO is never read as ViT-B's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    points = [r for r in results if target in r.latency_ms]
    ax.scatter([r.latency_ms[target] for r in points], [100 * r.ao for r in points], s=18, c="0.6", label="fine-tuned")
    front = front_for(points, target, budget_ms)
    ax.plot(
        [r.latency_ms[target] for r in front], [100 * r.ao for r in front], "o-", c="tab:blue", drawstyle="steps-post",
        label="Pareto front"
    )
    for r in front:
        ax.annotate(r.key, (r.latency_ms[target], 100 * r.ao), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if reference:
        ax.scatter(
            [p.latency_ms for p in reference], [100 * p.ao for p in reference], marker="*", s=80, c="tab:orange",
            label="published (ViT-B, GOT-10k)",
        )
        for p in reference:
            ax.annotate(p.label, (p.latency_ms, 100 * p.ao), textcoords="offset points", xytext=(4, -10), fontsize=7)
    if budget_ms is not None:
        ax.axvline(budget_ms, ls="--", c="tab:red", lw=1, label=f"budget {budget_ms:g} ms")
    scales = sorted({r.accuracy_scale for r in points}) or ["?"]
    ax.set_title(f"{target}: AO vs per-frame latency (accuracy scale: {', '.join(scales)})", fontsize=9)
    ax.set_xlabel(f"per-frame latency on {target} (ms)")
    ax.set_ylabel("AO (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
