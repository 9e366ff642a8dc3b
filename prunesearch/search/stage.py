"""The stages of a search, by name: a result's stage is its child run's ``stage`` tag, part of its
checkpoint's name, and what ``pareto --stage`` picks. Kept apart and light so the CLI can offer the
names without loading the search."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    BRIEF = "brief"  # every candidate the search trains, at the brief fine-tune
    CONFIRM = "confirm"  # the brief front and its ties, fine-tuned further (search/confirm.py)


BRIEF, CONFIRM = Stage.BRIEF, Stage.CONFIRM
STAGES = tuple(s.value for s in Stage)
