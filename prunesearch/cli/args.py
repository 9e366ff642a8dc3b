"""Argument types that check a command-line value where argparse reads it, so a bad one is one line."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from prunesearch.fields import INT_MAX, SEED_MAX, Rule


def whole(minimum: int = 0, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``minimum`` to ``maximum`` (a C int if None)."""
    rule = Rule(minimum, maximum)
    top = INT_MAX if maximum is None else maximum

    def read(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not rule.allows(value) or value > top:
            raise argparse.ArgumentTypeError(f"expected a whole number{rule.describe()}, got {text[:40]!r}")
        return value

    return read


seed = whole(0, SEED_MAX)
count = whole(1)


def trials(text: str) -> int | str:
    """An argparse ``type`` for ``--trials``: a whole number >= 1, or ``auto``."""
    if text == "auto":
        return text
    try:
        return count(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or auto, got {text[:40]!r}") from None


def nonempty(text: str) -> str:
    """An argparse ``type``: any text but the empty string (which would quietly mean the default)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (leave the option out for the default)")
    return text


def nonempty_path(text: str) -> Path:
    """An argparse ``type`` for a path: not empty (``Path("")`` would quietly be the working folder)."""
    return Path(nonempty(text))

