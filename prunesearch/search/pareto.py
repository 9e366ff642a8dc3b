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
