"""One evaluation: track every sequence with one tracker, time it, score it, optionally write results.

Speed follows the GOT-10k toolkit: fps is the mean of 1/t over all frames (initialisation
included), image reading not timed. Sequences whose ground truth is withheld (GOT-10k test: only
the first box) are tracked and written but not scored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from prunesearch.data.sequence import Sequence
from prunesearch.evaluation.backends import backend_for
from prunesearch.evaluation.baselines import OpenCVTracker
from prunesearch.evaluation.metrics import SequenceScores, Summary, score_sequence, summarize
from prunesearch.evaluation.results import write_sequence_results
from prunesearch.evaluation.tracking_loop import NeuralTracker, SequenceTracker, TrackingParams, run_sequence
from prunesearch.models.vit_tracker import TrackerBase

METRICS = ("ao", "sr50", "sr75", "auc", "precision", "norm_precision")


def _fps(times: np.ndarray) -> float:
    times = times[times > 0]
    return float(np.mean(1.0 / times)) if times.size else float("nan")


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass
class SequenceResult:
    """One tracked sequence: its boxes and times, and its scores unless the ground truth is withheld."""

    name: str
    dataset: str
    boxes: np.ndarray
    times: np.ndarray
    scores: SequenceScores | None

    @property
    def fps(self) -> float:
        return _fps(self.times)

    def to_dict(self) -> dict:
        out: dict = {"name": self.name, "dataset": self.dataset, "frames": len(self.boxes), "fps": _number(self.fps)}
        for metric in METRICS:
            out[metric] = None if self.scores is None else _number(getattr(self.scores, metric))
        return out


@dataclass(frozen=True)
class EvalResult(Summary):
    """Dataset figures (fractions in [0, 1]; NaN where nothing could be scored), speed, and
    per-sequence results of one tracker."""

    name: str = ""
    fps: float = float("nan")
    sequences: list[SequenceResult] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(len(s.boxes) for s in self.sequences)

    @property
    def scored(self) -> int:
        """How many sequences had ground truth to score against."""
        return sum(s.scores is not None for s in self.sequences)

    def to_dict(self) -> dict:
        out: dict = {"name": self.name}
        out.update({m: _number(getattr(self, m)) for m in METRICS})
        out.update(
            fps=_number(self.fps),
            frames=self.frames,
            sequences_scored=self.scored,
            per_sequence=[s.to_dict() for s in self.sequences],
        )
        return out


def evaluate_tracker(
    tracker: SequenceTracker,
    sequences: Iterable[Sequence],
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvalResult:
    """Track and score every sequence with ``tracker``; ``out_dir`` gets GOT-10k-layout results."""
    results = []
    for seq in sequences:
        if progress is not None:
            progress(seq.name)
        tracked = run_sequence(tracker, seq)
        scores = None
        if len(seq.boxes) == len(seq):
            bound = seq.attributes.get("resolution", tracked.image_size)
            scores = score_sequence(tracked.boxes, seq.boxes, seq.visible, seq.dataset, tuple(bound))
        if out_dir is not None:
            write_sequence_results(out_dir, seq.name, tracked.boxes, tracked.times)
        results.append(SequenceResult(seq.name, seq.dataset, tracked.boxes, tracked.times, scores))
    summary = summarize([r.scores for r in results if r.scores is not None])
    all_times = np.concatenate([r.times for r in results]) if results else np.zeros(0)
    return EvalResult(**asdict(summary), name=tracker.name, fps=_fps(all_times), sequences=results)


def evaluate(
    model: object,
    sequences: Iterable[Sequence],
    out_dir: str | Path | None = None,
    params: TrackingParams | None = None,
    name: str = "",
    progress: Callable[[str], None] | None = None,
    device: str | None = None,
    precision: str = "auto",
) -> EvalResult:
    """Evaluate a network: a :class:`TrackerBase`, or ONNX graphs (a folder holding template.onnx
    and frame.onnx, or the two paths). A model in training mode is evaluated in eval mode and
    handed back in training mode, so a fine-tuning loop can evaluate between steps. A PyTorch
    model runs on ``device`` (default: where it is) in ``precision`` (auto: bf16 on a capable GPU)."""
    was_training = isinstance(model, TrackerBase) and model.training
    try:
        tracker = NeuralTracker(backend_for(model, name, device, precision), params)
        return evaluate_tracker(tracker, sequences, out_dir, progress)
    finally:
        if was_training:
            model.train()


def evaluate_baseline(
    name: str,
    sequences: Iterable[Sequence],
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvalResult:
    """Evaluate an OpenCV baseline by name (``mil``; ``kcf``/``csrt`` where OpenCV has them)."""
    return evaluate_tracker(OpenCVTracker(name), sequences, out_dir, progress)
