"""How far an accuracy figure can be trusted: bootstrap intervals over sequences (and seeds).

A brief fine-tune scored on a handful of short sequences gives an AO whose noise is as large as
the differences the search is asked to rank (see benchmarks/results/litetrack_premise.md). So
every figure comes with a percentile bootstrap interval that resamples whole sequences, the unit
the data is drawn in: frames of one sequence are strongly correlated, so resampling frames would
give intervals far too narrow.

The statistics are the ones :func:`prunesearch.evaluation.metrics.summarize` computes: AO and
SR pooled over all counted frames (so a resample's AO is the sum of its sequences' IoU sums over
the sum of their frame counts), success AUC averaged over sequences. With several seeds per
candidate (the same sequences scored after K fine-tunes that differ only in their seed) the
figure is the mean over seeds, and each resample also draws K seeds with replacement, so the
interval covers seed noise as well as sequence noise (a two-level bootstrap).

Paired comparisons resample the same sequences (and seed draws) for both candidates, which
cancels the difficulty of the sequences themselves: two trackers that fail on the same hard
sequence are not told apart by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prunesearch.errors import InputError, PrunesearchError
from prunesearch.evaluation.metrics import SequenceScores
from prunesearch.fields import MAX_SEEDS

INTERVAL_METRICS = ("ao", "sr50", "sr75", "auc")
DEFAULT_RESAMPLES = 2000
# Bootstrap draws are a (resamples x sequences) index matrix: at most MAX_DRAWS cells (800 MB of int64).
# 100000 resamples settle a percentile far beyond the figures' printed precision.
MAX_RESAMPLES = 100_000
MAX_DRAWS = 100_000_000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided percentile bootstrap interval (fractions in [0, 1])."""

    value: float
    low: float
    high: float
    level: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level}


@dataclass(frozen=True)
class SequenceStats:
    """What each metric needs of each scored sequence, as arrays of shape (seeds, sequences).

    Only sufficient statistics are kept (sums and counts, not every IoU), so a candidate's
    scores fit in a trial record and are cheap to resample.
    """

    names: tuple[str, ...]
    iou_sum: np.ndarray
    frames: np.ndarray
    hits50: np.ndarray
    hits75: np.ndarray
    auc: np.ndarray

    @classmethod
    def from_scores(cls, names: Sequence[str], per_seed: Sequence[Sequence[SequenceScores]]) -> SequenceStats:
        """``per_seed[k][i]`` is sequence ``names[i]`` scored after the fine-tune with seed k."""
        if not per_seed or any(len(scores) != len(names) for scores in per_seed):
            raise ValueError("every seed needs one score per named sequence")

        def table(value) -> np.ndarray:
            return np.array([[value(s) for s in scores] for scores in per_seed], dtype=np.float64)

        return cls(
            names=tuple(names),
            iou_sum=table(lambda s: s.ious.sum()),
            frames=table(lambda s: s.ious.size),
            hits50=table(lambda s: (s.ious > 0.5).sum()),
            hits75=table(lambda s: (s.ious > 0.75).sum()),
            auc=table(lambda s: s.auc),
        )

    @classmethod
    def from_results(cls, *per_seed: Sequence) -> SequenceStats:
        """Per-sequence results (``SequenceResult``) of one or more seeds, each over the same
        sequences; sequences without ground truth are left out."""
        scored = [[r for r in results if r.scores is not None] for results in per_seed]
        names = [r.name for r in scored[0]]
        if any([r.name for r in results] != names for results in scored):
            raise ValueError("every seed must be scored on the same sequences")
        return cls.from_scores(names, [[r.scores for r in results] for results in scored])

    @property
    def seeds(self) -> int:
        return self.iou_sum.shape[0]

    def point(self) -> dict[str, float]:
        """Each metric's figure: the mean over seeds of the pooled (AO, SR) or averaged (AUC) value."""
        return {metric: float(resampled_metric(self, metric, *_identity(self))[0]) for metric in INTERVAL_METRICS}

    def to_dict(self) -> dict[str, list]:
        """Plain lists (JSON, Optuna attributes, MLflow artifacts)."""
        return {
            "names": list(self.names),
            **{key: getattr(self, key).tolist() for key in ("iou_sum", "frames", "hits50", "hits75", "auc")},
        }

    @classmethod
    def from_dict(cls, data: dict) -> SequenceStats:
        arrays = {key: np.asarray(data[key], dtype=np.float64).reshape(-1, len(data["names"])) for key in
                  ("iou_sum", "frames", "hits50", "hits75", "auc")}
        return cls(names=tuple(data["names"]), **arrays)

    def restrict(self, names: Sequence[str]) -> SequenceStats:
        """The same statistics for ``names`` only, in that order (for pairing two candidates)."""
        index = {name: i for i, name in enumerate(self.names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise PrunesearchError(f"sequence {missing[0]!r} was not scored for this candidate")
        cols = [index[n] for n in names]
        return SequenceStats(
            names=tuple(names),
            **{key: getattr(self, key)[:, cols] for key in ("iou_sum", "frames", "hits50", "hits75", "auc")},
        )


def resampled_metric(stats: SequenceStats, metric: str, seeds: np.ndarray, seqs: np.ndarray) -> np.ndarray:
    """The metric for each resample: ``seeds`` (R, K) and ``seqs`` (R, N) index the drawn seeds and
    sequences; the value is the mean over the drawn seeds of the pooled/averaged figure. Public for
    bootstraps of statistics over several candidates (a rank correlation) that share their draws."""
    rows, cols = seeds[:, :, None], seqs[:, None, :]
    if metric == "auc":
        per_seed = stats.auc[rows, cols].mean(axis=2)
    else:
        numerator = {"ao": stats.iou_sum, "sr50": stats.hits50, "sr75": stats.hits75}[metric]
        frames = stats.frames[rows, cols].sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_seed = np.where(frames > 0, numerator[rows, cols].sum(axis=2) / frames, np.nan)
    return per_seed.mean(axis=1)


def _identity(stats: SequenceStats) -> tuple[np.ndarray, np.ndarray]:
    seeds, seqs = stats.iou_sum.shape
    return np.arange(seeds)[None, :], np.arange(seqs)[None, :]


def check_resamples(resamples: int, seqs: int) -> None:
    """Refuse a bootstrap whose draw matrix would pass :data:`MAX_DRAWS` (checked before tracking starts)."""
    if resamples * seqs > MAX_DRAWS:
        raise InputError(f"--resamples {resamples} over {seqs} sequences is {resamples * seqs:,} draws; "
                         f"at most {MAX_DRAWS:,} (MAX_DRAWS): use fewer resamples")


def _draws(seqs: int, resamples: int, level: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Drawn sequence indices (R, seqs) and uniforms (R, MAX_SEEDS) that pick seeds (see _seed_draws)."""
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    check_resamples(resamples, seqs)
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie strictly between 0 and 1")
    rng = np.random.default_rng(seed)
    return rng.integers(0, seqs, size=(resamples, seqs)), rng.random((resamples, MAX_SEEDS))


def _seed_draws(uniform: np.ndarray, seeds: int) -> np.ndarray:
    """K seeds drawn with replacement from one shared uniform matrix, so two candidates compared
    with each other get the same draws whichever is named first."""
    if seeds > MAX_SEEDS:
        raise ValueError(f"at most {MAX_SEEDS} seeds per candidate")
    return np.minimum((uniform[:, :seeds] * seeds).astype(int), seeds - 1)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not values.size:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_intervals(
    stats: SequenceStats,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict[str, Interval]:
    """AO, SR0.5, SR0.75 and AUC with their ``level`` intervals, resampling sequences (and seeds).

    Seeded: the same statistics, resamples and seed always give the same intervals.
    """
    seqs, uniform = _draws(len(stats.names), resamples, level, seed)
    seeds = _seed_draws(uniform, stats.seeds)
    out = {}
    points = stats.point()
    for metric in INTERVAL_METRICS:
        low, high = _percentiles(resampled_metric(stats, metric, seeds, seqs), level)
        out[metric] = Interval(points[metric], low, high, level)
    return out


@dataclass(frozen=True)
class Comparison:
    """AO of ``a`` minus AO of ``b`` on the sequences both were scored on, with its interval."""

    a: str
    b: str
    sequences: int
    difference: Interval

    @property
    def significant(self) -> bool:
        """The interval excludes zero: one candidate is better at the interval's level."""
        return self.difference.low > 0.0 or self.difference.high < 0.0

    def verdict(self) -> str:
        d = self.difference
        span = f"{100 * d.value:+.1f} AO points ({100 * d.level:.0f}% interval {100 * d.low:+.1f} .. {100 * d.high:+.1f})"
        if not self.significant:
            return f"{self.a} and {self.b} are not told apart on {self.sequences} sequences: {span}"
        better, worse = (self.a, self.b) if d.value > 0 else (self.b, self.a)
        return f"{better} is better than {worse}: {self.a} - {self.b} = {span}"

    def to_dict(self) -> dict[str, object]:
        return {"a": self.a, "b": self.b, "sequences": self.sequences, "significant": self.significant,
                "difference": self.difference.to_dict()}


def paired_difference(
    a: SequenceStats,
    b: SequenceStats,
    names: tuple[str, str] = ("a", "b"),
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Comparison:
    """Paired bootstrap of AO(a) - AO(b): each resample draws one set of sequences for both.

    Only the sequences both were scored on count. Swapping ``a`` and ``b`` negates the result
    exactly (same draws), so the verdict does not depend on the order asked.
    """
    common = [n for n in a.names if n in set(b.names)]
    if not common:
        raise PrunesearchError(f"{names[0]} and {names[1]} were scored on no common sequence; they cannot be compared")
    a, b = a.restrict(common), b.restrict(common)
    seqs, uniform = _draws(len(common), resamples, level, seed)
    seeds_a, seeds_b = _seed_draws(uniform, a.seeds), _seed_draws(uniform, b.seeds)
    point = a.point()["ao"] - b.point()["ao"]
    diffs = resampled_metric(a, "ao", seeds_a, seqs) - resampled_metric(b, "ao", seeds_b, seqs)
    low, high = _percentiles(diffs, level)
    return Comparison(names[0], names[1], len(common), Interval(point, low, high, level))
