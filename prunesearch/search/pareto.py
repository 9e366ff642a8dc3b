"""The accuracy/latency Pareto front: the candidates no other candidate beats on both counts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def pareto_front(items: Iterable[T], accuracy: Callable[[T], float], latency: Callable[[T], float]) -> list[T]:
    """Items not dominated (higher-or-equal accuracy at lower-or-equal latency, one strictly), fastest first.

    Exact ties (same accuracy and latency) dominate neither each other, so both stay.
    """
    ordered = sorted(items, key=lambda it: (latency(it), -accuracy(it)))
    front: list[T] = []
    for item in ordered:
        if not front or accuracy(item) > accuracy(front[-1]):
            front.append(item)
        elif (accuracy(item), latency(item)) == (accuracy(front[-1]), latency(front[-1])):
            front.append(item)
    return front


def tied_with_front(
    items: Iterable[T],
    front: list[T],
    latency: Callable[[T], float],
    significantly_better: Callable[[T, T], bool],
) -> list[T]:
    """Items off the front that no front member at the same or lower latency significantly beats.

    The front itself is computed on point estimates; an item it leaves out only because its AO is
    a little lower, by less than the noise of the measurement, is *tied*: the search cannot tell
    it from the front member that dominates it. ``significantly_better(f, item)`` is the test
    (a paired bootstrap of the AO difference, see prunesearch.evaluation.uncertainty).
    """
    members = {id(f) for f in front}
    tied = []
    for item in items:
        if id(item) in members:
            continue
        rivals = [f for f in front if latency(f) <= latency(item)]
        if not any(significantly_better(f, item) for f in rivals):
            tied.append(item)
    return tied
