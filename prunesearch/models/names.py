"""How a model of the family is named, in every output and every file: the one home of the format.

A student that keeps N teacher blocks, the last M of them interaction blocks, is ``B{N}-{M}``
(LiteTrack's naming: B9-3, B4-2); the unpruned joint teacher is ``teacher``. Search candidates
add their block-choice rule after a slash (``B4-2/first``, see
:class:`prunesearch.search.space.Candidate`).
"""

from __future__ import annotations

import re

TEACHER = "teacher"
_STUDENT = re.compile(r"B(\d+)-(\d+)")


def student_name(depth: int, ai_layers: int) -> str:
    """``B4-2`` for a depth-4 student with 2 interaction blocks."""
    return f"B{depth}-{ai_layers}"


def model_name(depth: int, ai_layers: int | None) -> str:
    """A student's name, or ``teacher`` when ``ai_layers`` is None (every block joint)."""
    return TEACHER if ai_layers is None else student_name(depth, ai_layers)


def parse_student_name(text: str) -> tuple[int, int] | None:
    """``(depth, ai_layers)`` of ``B{N}-{M}``, or None when ``text`` is not such a name (ranges unchecked)."""
    match = _STUDENT.fullmatch(text.strip())
    return (int(match[1]), int(match[2])) if match else None
