"""Which student to fine-tune next, from what is known before training, and when no more is worth it.

Latency is priced exactly before any fine-tune, so the accuracy/latency front is a one-dimensional
question: for each latency, the best AO. What is unknown is a student's AO, and students are
related: a student keeps some of the teacher's blocks and splits them into search-only and
interaction layers; students that keep more blocks are slower and usually more accurate, and some
blocks matter more than others (on the shipped teacher, students keeping block 10 score 5-10 AO
points above those of the same depth that do not: benchmarks/results/space_table.json). So a
Gaussian process over which blocks a student keeps and its split (:func:`student_features`)
predicts the AO of every untrained student with its uncertainty from the fine-tunes done so far, and:

* the next student is the one with the largest **expected hypervolume improvement** of the front
  (closed form here: the front is a step function of latency, and the improvement of a point is
  the area it adds above that step, from its latency to the budget);
* a search with ``trials: auto`` **stops** when no untrained student enters the front with
  probability ``stop_below`` or more (``P(AO > the best AO of the trained no-slower students)``).

Why our own model and not Optuna's GPSampler: a sampler proposes points of a box of integers and a
rule name and learns only from trials it sees; it cannot use the exact latency of every candidate
(known before any trial), that two rule names may be one student, or the teacher blocks a student
keeps. The model is small (tens of points, a feature per teacher block) and plain numpy; its hyper-parameters are
averaged over a grid, weighted by marginal likelihood, refit at each decision. Candidates still training on other
workers count as trained at their predicted AO (a constant liar), so workers do not all pick one.

benchmarks/results/search_front_efficiency.md measures it against enumeration and Optuna's samplers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr
from scipy.stats import norm

# The model may say "stop" only after this many fine-tunes (or every student, in a smaller space):
# with fewer, its hyper-parameters are a guess.
MIN_OBSERVED = 4
_LENGTHS = (0.15, 0.3, 0.6, 1.2)  # features are fractions of the teacher's depth
_SIGNALS = (0.01, 0.03, 0.1)  # AO is a fraction: a student's AO varies by points, not tenths
_NOISES = (0.005, 0.01, 0.02, 0.04)  # seed noise of one brief fine-tune's AO
_SLOPES = (0.0, 0.1, 0.3)  # prior trend along the features (more blocks, more AO)


@dataclass(frozen=True)
class Student:
    """A distinct student as the planner sees it: its training key, price and features."""

    key: str
    latency_ms: float
    features: tuple[float, ...]


def student_features(blocks: Sequence[int], ai_layers: int, teacher_depth: int) -> tuple[float, ...]:
    """What a student keeps: which of the teacher's blocks (one indicator each) and how many
    interaction layers, scaled by the teacher's depth so that distances stay within the kernel's
    length grid. Per-block indicators let the model learn that some blocks matter more than others
    (the rule that keeps the most influential blocks beats the others at equal depth)."""
    scale = math.sqrt(teacher_depth)
    kept = set(blocks)
    return (*(float(b in kept) / scale for b in range(teacher_depth)), ai_layers / teacher_depth)


@dataclass(frozen=True)
class Prediction:
    mean: np.ndarray
    sd: np.ndarray  # of the student's true AO
    noise: float  # sd of one fine-tune's AO around it


class AOModel:
    """A Gaussian process over student features: constant mean, RBF plus linear kernel, noise.

    Its hyper-parameters are not picked but averaged: every point of a small grid is weighted by
    its marginal likelihood, and the prediction is that mixture. With a handful of fine-tunes the
    single most likely setting is often an overconfident one (a tiny signal that calls every deeper
    student hopeless), which would stop a search after its first few students.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.mean = x, float(y.mean())
        self.y = y - self.mean
        grid = list(itertools.product(_LENGTHS, _SIGNALS, _NOISES, _SLOPES))
        fits = [(params, *self._factor(*params)) for params in grid]
        evidence = np.array([-0.5 * self.y @ alpha - np.log(np.diag(chol)).sum() for _, chol, alpha in fits])
        weights = np.exp(evidence - evidence.max())
        keep = weights > 1e-3 * weights.max()  # the rest change nothing but the time taken
        self.fits = [f for f, k in zip(fits, keep) if k]
        self.weights = weights[keep] / weights[keep].sum()

    @staticmethod
    def _kernel(a: np.ndarray, b: np.ndarray, length: float, signal: float, slope: float) -> np.ndarray:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return signal**2 * np.exp(-0.5 * d2 / length**2) + slope**2 * (a @ b.T)

    def _factor(self, length: float, signal: float, noise: float, slope: float) -> tuple[np.ndarray, np.ndarray]:
        k = self._kernel(self.x, self.x, length, signal, slope) + (noise**2 + 1e-10) * np.eye(len(self.x))
        chol = np.linalg.cholesky(k)
        return chol, np.linalg.solve(chol.T, np.linalg.solve(chol, self.y))

    def predict(self, x: np.ndarray) -> Prediction:
        """The mixture's mean and sd of each student's true AO, and its mean noise sd."""
        means, second = np.zeros(len(x)), np.zeros(len(x))
        noise = 0.0
        for w, ((length, signal, sd_noise, slope), chol, alpha) in zip(self.weights, self.fits):
            k = self._kernel(x, self.x, length, signal, slope)
            v = np.linalg.solve(chol, k.T)
            var = np.maximum(signal**2 + slope**2 * (x * x).sum(1) - (v * v).sum(0), 0.0)
            mu = k @ alpha
            means += w * mu
            second += w * (var + mu * mu)
            noise += w * sd_noise
        return Prediction(self.mean + means, np.sqrt(np.maximum(second - means * means, 0.0)), noise)


def _prior(n: int, observed: Sequence[float]) -> Prediction:
    """Before two fine-tunes there is nothing to fit: every student is as uncertain as AO itself."""
    mean = float(np.mean(observed)) if len(observed) else 0.5
    return Prediction(np.full(n, mean), np.full(n, 0.25), max(_NOISES))


class Front:
    """The trained students' front as a step function of latency: the best AO at or below each latency."""

    def __init__(self, points: Sequence[tuple[float, float]], budget_ms: float, floor: float = 0.0) -> None:
        best, steps = floor, []
        for latency, ao in sorted(points, key=lambda p: (p[0], -p[1])):
            if ao > best:
                best = ao
                steps.append((latency, ao))
        self.steps, self.budget_ms, self.floor = steps, budget_ms, floor

    def at(self, latency_ms: float) -> float:
        """The best AO among the trained students no slower than ``latency_ms`` (the floor if none)."""
        best = self.floor
        for latency, ao in self.steps:
            if latency > latency_ms:
                break
            best = ao
        return best

    def segments(self, latency_ms: float) -> list[tuple[float, float]]:
        """(width, front AO) of each stretch of latency from ``latency_ms`` to the budget."""
        edges = [latency_ms] + [lat for lat, _ in self.steps if latency_ms < lat < self.budget_ms] + [self.budget_ms]
        return [(b - a, self.at(a)) for a, b in zip(edges, edges[1:]) if b > a]


def expected_improvement(front: Front, latency_ms: float, mean: float, sd: float) -> float:
    """Expected hypervolume a student at ``latency_ms`` with AO ~ N(mean, sd^2) adds to ``front``."""
    total = 0.0
    for width, level in front.segments(latency_ms):
        if sd <= 0:
            total += width * max(0.0, mean - level)
            continue
        z = (mean - level) / sd
        total += width * (sd * float(norm.pdf(z)) + (mean - level) * float(ndtr(z)))
    return total


@dataclass(frozen=True)
class Decision:
    """The student to fine-tune next (None: stop), why, and the best chance left of entering the front."""

    pick: str | None
    reason: str
    chance: float


def decide(students: Sequence[Student], observed: dict[str, float], pending: set[str], budget_ms: float,
           stop_below: float | None, closed: Collection[str] = ()) -> Decision:
    """The next student to fine-tune among those neither ``observed`` (key -> AO) nor ``pending``
    (training elsewhere) nor ``closed`` (stopped early, failed); with ``stop_below``, None when no
    untrained student enters the front with at least that probability (and at least
    :data:`MIN_OBSERVED` fine-tunes are in): the search stops there, or waits for the ``pending``
    fine-tunes and asks again."""
    ordered = sorted(students, key=lambda s: (s.latency_ms, s.key))
    x = np.array([s.features for s in ordered], dtype=float)
    done = [i for i, s in enumerate(ordered) if s.key in observed]
    y = np.array([observed[ordered[i].key] for i in done], dtype=float)
    pred = AOModel(x[done], y).predict(x) if len(done) >= 2 else _prior(len(ordered), y)
    liar = [(s.latency_ms, float(pred.mean[i])) for i, s in enumerate(ordered) if s.key in pending]
    # The trained students at the model's estimate of their true AO, not at one noisy fine-tune's:
    # a lucky draw would otherwise hide the students just below it.
    front = Front([(ordered[i].latency_ms, float(pred.mean[i])) for i in done] + liar, budget_ms)
    open_ = [i for i, s in enumerate(ordered) if s.key not in observed and s.key not in pending and s.key not in closed]
    if not open_:
        return Decision(None, "every student is trained or training", 0.0)
    spread = np.maximum(pred.sd, 1e-9)
    # Entering the front by less than one fine-tune's seed noise is not something a brief fine-tune
    # can tell: the chance that counts is of beating the front by more than that.
    chance = {i: float(ndtr((pred.mean[i] - front.at(ordered[i].latency_ms) - pred.noise) / spread[i])) for i in open_}
    best_chance = max(chance.values())
    if stop_below is not None and len(done) >= min(MIN_OBSERVED, len(ordered)) and best_chance < stop_below:
        return Decision(None, f"{len(done)} of {len(ordered)} students fine-tuned; no untrained one enters the front "
                              f"with probability {stop_below:g} or more (best {best_chance:.3f})", best_chance)
    gain = {i: expected_improvement(front, ordered[i].latency_ms, float(pred.mean[i]), float(spread[i])) for i in open_}
    pick = max(open_, key=lambda i: (gain[i], -i))
    return Decision(ordered[pick].key, f"expected front gain {gain[pick]:.4g}, chance {chance[pick]:.2f}", best_chance)
