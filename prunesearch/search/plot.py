"""The Pareto plot: AO against per-frame latency on one target, for ``run`` and ``pareto --plot`` alike.

It is drawn so that it cannot mislead:

* one accuracy scale per axis. Published figures (GOT-10k AO of the paper's ViT-B models) share
  the search's axis only when the search's accuracy is on that scale too (``accuracy_scale:
  full``); otherwise they get their own panel beside it, over the same latency axis, so a stand-in
  AO on built-in data is never read against a paper's GOT-10k AO;
* every point is labelled, the front drawn as a staircase, tied candidates (not significantly
  below a front member, see ``prunesearch.search.pareto.tied_with_front``) drawn apart;
* the budget line and the teacher's latency are drawn whenever they are known;
* the latency axis is padded around the points, so candidates a few percent apart stay apart.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from prunesearch.outputs import output_file
from prunesearch.search.results import CandidateResult, front_for

FULL_SCALE, SMALL_SCALE = "full", "small"
# What each accuracy scale means, in one line (the CLI, the plot and the MLflow description say it).
SCALE_NOTE = {
    SMALL_SCALE: "accuracy scale: small — AO from the small stand-in teacher, not ViT-B accuracy",
    FULL_SCALE: "accuracy scale: full — AO from a teacher of the deployment architecture",
}


@dataclass(frozen=True)
class ReferencePoint:
    """A published result drawn for reference (e.g. LiteTrack-B9-3 on GOT-10k at its table price)."""

    label: str
    ao: float  # fraction in [0, 1]
    latency_ms: float


def _latency_limits(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = max(0.08 * (high - low), 0.02 * high, 1e-3)
    return max(0.0, low - pad), high + pad


def _label_offsets(xy: list[tuple[float, float]]) -> list[tuple[int, int]]:
    """Label offsets (points) that step labels of near-coincident points apart vertically."""
    if not xy:
        return []
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    near_x, near_y = 0.12 * (max(xs) - min(xs) or 1.0), 0.04 * (max(ys) - min(ys) or 1.0)
    offsets: list[tuple[int, int]] = []
    for i, (x, y) in enumerate(xy):
        crowd = sum(abs(x - xy[j][0]) <= near_x and abs(y - xy[j][1]) <= near_y for j in range(i))
        offsets.append((4, 4 - 9 * crowd))
    return offsets


def pareto_plot(
    results: list[CandidateResult],
    target: str,
    path: Path,
    budget_ms: float | None = None,
    reference: list[ReferencePoint] | None = None,
    teacher_ms: float | None = None,
    tied: Collection[str] = (),
) -> Path:
    """Write the PNG for ``target`` (see :func:`pareto_figure`) into an existing folder, whole or
    not at all (:func:`prunesearch.outputs.output_file`)."""
    import matplotlib.pyplot as plt

    fig = pareto_figure(results, target, budget_ms, reference, teacher_ms, tied)
    try:
        with output_file(path, "--plot") as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return path


def pareto_figure(
    results: list[CandidateResult],
    target: str,
    budget_ms: float | None = None,
    reference: list[ReferencePoint] | None = None,
    teacher_ms: float | None = None,
    tied: Collection[str] = (),
):  # noqa: ANN201 - matplotlib.figure.Figure, imported lazily
    """The figure for ``target``; ``tied`` holds the keys of tied candidates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in results if target in r.latency_ms]
    scales = sorted({r.accuracy_scale for r in points}) or ["?"]
    reference = list(reference or [])
    same_scale = scales == [FULL_SCALE]
    own_panel = bool(reference) and not same_scale
    fig, axes = plt.subplots(1, 2 if own_panel else 1, figsize=(11 if own_panel else 7.5, 4.8), dpi=120,
                             sharex=True, squeeze=False)
    ax = axes[0][0]

    front = front_for(points, target, budget_ms)
    on_front = {r.key for r in front}
    for group, style in (
        ([r for r in points if r.key not in on_front and r.key not in tied], {"c": "0.6", "label": "dominated"}),
        ([r for r in points if r.key in tied and r.key not in on_front],
         {"facecolors": "none", "edgecolors": "tab:blue", "label": "tied with the front"}),
    ):
        if group:
            ax.scatter([r.latency_ms[target] for r in group], [100 * r.ao for r in group], s=22, **style)
    ax.plot([r.latency_ms[target] for r in front], [100 * r.ao for r in front], "o-", c="tab:blue",
            drawstyle="steps-post", label="Pareto front")
    for r, offset in zip(points, _label_offsets([(r.latency_ms[target], 100 * r.ao) for r in points])):
        ax.annotate(r.key, (r.latency_ms[target], 100 * r.ao), textcoords="offset points", xytext=offset,
                    fontsize=6.5, color="tab:blue" if r.key in on_front else "0.35")

    ref_ax = axes[0][1] if own_panel else ax
    if reference:
        ref_ax.scatter([p.latency_ms for p in reference], [100 * p.ao for p in reference], marker="*", s=80,
                       c="tab:orange", label="published (ViT-B, GOT-10k AO)")
        for p in reference:
            ref_ax.annotate(p.label, (p.latency_ms, 100 * p.ao), textcoords="offset points", xytext=(4, -10), fontsize=7)

    xs = [r.latency_ms[target] for r in points] + [p.latency_ms for p in reference]
    for panel in axes[0]:
        if budget_ms is not None:
            panel.axvline(budget_ms, ls="--", c="tab:red", lw=1, label=f"budget {budget_ms:g} ms")
        if teacher_ms is not None:
            panel.axvline(teacher_ms, ls=":", c="0.2", lw=1, label=f"teacher {teacher_ms:.2f} ms")
        panel.set_xlabel(f"per-frame latency on {target} (ms)")
        panel.grid(alpha=0.3)
    marks = [m for m in (budget_ms, teacher_ms) if m is not None]
    if xs or marks:
        ax.set_xlim(*_latency_limits(xs + marks))

    ax.set_title(f"{target}: AO vs per-frame latency, accuracy scale {', '.join(scales)}", fontsize=9)
    ax.set_ylabel("AO (%) " + ("(GOT-10k scale)" if same_scale else "(this search's data and teacher)"))
    ax.legend(fontsize=7)
    if own_panel:
        ref_ax.set_title("published results, their own AO scale (GOT-10k)", fontsize=9)
        ref_ax.set_ylabel("GOT-10k AO (%)")
        ref_ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
