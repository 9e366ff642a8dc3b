"""The confirmation stage: the brief front re-checked at a longer budget on more sequences.

A brief fine-tune scored on a few sequences ranks candidates whose AOs lie within its noise (see
benchmarks/results/litetrack_premise.md), so the brief front is a shortlist, not a verdict. After
the brief stage has settled, every brief front member and every candidate tied with the front
(:func:`~prunesearch.search.results.tied_for`) is fine-tuned further from its brief checkpoint
(:class:`~prunesearch.search.candidate.ConfirmTrainer`) and scored on more validation sequences;
the front of those results is the confirmed front, the one ``prunesearch pareto`` shows first.

The stage is a second Optuna study beside the first, named after it and after the confirmation
settings, with every member enqueued: it is shared by workers and machines, and resumed after a
kill, exactly as the brief stage is. Every worker derives the members from the settled brief
study, so all agree on them without talking to each other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from prunesearch.search.results import CandidateResult

if TYPE_CHECKING:  # the CLI reads the stage names below without loading experiment files' machinery
    from prunesearch.search.experiment import ConfirmSettings

# A result's stage: its child run's ``stage`` tag, its checkpoint's name, ``pareto --stage``.
BRIEF, CONFIRM = "brief", "confirm"
STAGES = (BRIEF, CONFIRM)


def members(fronts: dict[str, list[CandidateResult]], ties: dict[str, list[CandidateResult]]) -> list[str]:
    """The candidates to confirm: each target's brief front, then its tied candidates, once each."""
    keys: dict[str, None] = {}
    for target, front in fronts.items():
        keys.update((r.key, None) for r in front + ties.get(target, []))
    return list(keys)


def study_name(brief_study: str, settings: ConfirmSettings, val_fingerprint: str) -> str:
    """The confirmation study of ``brief_study``: other settings or sequences are another study,
    while the brief stage (which they do not change) is kept."""
    identity = json.dumps({"settings": asdict(settings), "val": val_fingerprint}, sort_keys=True)
    return f"{brief_study}/confirm/{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


def dropped(brief_front: list[CandidateResult], confirmed_front: list[CandidateResult],
            confirmed: list[CandidateResult], target: str, given_up: dict[str, str]) -> dict[str, str]:
    """Why each brief front member is not on the confirmed front (empty when none fell off)."""
    on_front = {r.key for r in confirmed_front}
    by_key = {r.key: r for r in confirmed}
    out = {}
    for member in brief_front:
        key = member.key
        if key in on_front:
            continue
        result = by_key.get(key)
        if result is None:
            out[key] = f"confirmation failed: {given_up[key]}" if key in given_up else "not confirmed yet"
            continue
        ms = result.latency_ms[target]
        better = [f for f in confirmed_front if f.latency_ms[target] <= ms and f.ao >= result.ao]
        beaten = max(better, key=lambda f: f.ao) if better else None
        change = f"AO {100 * member.ao:.1f} -> {100 * result.ao:.1f}"
        out[key] = change + (
            f"; {beaten.key} is as fast or faster ({beaten.latency_ms[target]:.2f} <= {ms:.2f} ms) at AO {100 * beaten.ao:.1f}"
            if beaten else "; over the budget on this target"
        )
    return out
