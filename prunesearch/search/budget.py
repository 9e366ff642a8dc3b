"""Latency budgets as people write them: ``10ms``, ``0.01s``, ``100fps``.

Every budget becomes milliseconds per frame, the unit latency tables price in.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from prunesearch.errors import PrunesearchError
from prunesearch.fields import clip

MAX_CHARS = 64
# A per-frame budget outside these is a typo: no tracker runs a frame in under a nanosecond, and
# a budget of hours (or one that overflowed to inf) would admit every candidate silently.
MIN_MS = 1e-6
MAX_MS = 3.6e6

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|fps)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """A per-frame latency budget; ``text`` keeps what the user wrote, for logs and study names."""

    ms: float
    text: str

    def __str__(self) -> str:
        return self.text


def parse_budget(text: str) -> Budget:
    """``"10ms"`` -> 10 ms, ``"0.01s"`` -> 10 ms, ``"100fps"`` -> 10 ms."""
    text = str(text)
    match = _BUDGET.match(text) if len(text) <= MAX_CHARS else None
    if not match:
        raise PrunesearchError(
            f"cannot read the budget {clip(text)!r}; write a per-frame time or rate such as 10ms, 0.01s or 100fps"
        )
    value, unit = float(match.group(1)), match.group(2).lower()
    if value <= 0:
        raise PrunesearchError(f"the budget {clip(text)!r} must be greater than zero")
    ms = {"ms": value, "s": value * 1000.0, "fps": 1000.0 / value}[unit]
    if not (math.isfinite(ms) and MIN_MS <= ms <= MAX_MS):
        raise PrunesearchError(
            f"the budget {clip(text)!r} is {ms:g} ms per frame; give one from {MIN_MS:g} ms to {MAX_MS:.0f} ms (one hour)"
        )
    return Budget(ms=ms, text=f"{match.group(1)}{unit}")
