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

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import optuna

from prunesearch.search.candidate import ConfirmTrainer
from prunesearch.search.controller import Plan, Progress, SearchController, plan_search, training_keys
from prunesearch.search.experiment import ConfirmSettings
from prunesearch.search.front import trained_results
from prunesearch.search.identity import confirm_study_name
from prunesearch.search.mlflow_runs.log import SearchLog
from prunesearch.search.reproducibility import data_fingerprint
from prunesearch.search.results import CandidateResult, fronts_and_ties
from prunesearch.search.samplers import make_sampler
from prunesearch.search.setup import Setup, load_val
from prunesearch.search.stage import CONFIRM
from prunesearch.search.study.reuse import TrainedIndex
from prunesearch.search.study.state import StudyState, checkpoints
from prunesearch.search.study.storage import open_study


@dataclass(frozen=True)
class ConfirmStage:
    """The confirmation stage of one search, as it starts."""

    settings: ConfirmSettings  # resolved: steps and sequences as numbers
    study: optuna.Study
    plan: Plan
    members: list[str]
    sequences: int  # validation sequences it scores (the split may hold fewer than asked)
    settled: int  # members confirmed before this invocation


def confirm(setup: Setup, wanted: ConfirmSettings, storage: str, brief: optuna.Study, log: SearchLog, progress: Progress,
            index: int, announce: Callable[[ConfirmStage], None] | None = None) -> ConfirmStage:
    """Work on the confirmation, with the settings ``wanted``, of the settled brief study ``brief``
    (``announce(stage)`` is told before it starts); every worker does this and agrees on the members."""
    exp = setup.experiment
    settings = wanted.resolved(setup.finetune_config.steps, exp.data.val_sequences)
    brief_results = trained_results(brief, setup.book, setup.info.accuracy_scale)
    keys = members(*fronts_and_ties(brief_results, setup.book.targets, setup.budget.ms))
    val = load_val(exp.data, settings.val_sequences)
    val_fp = data_fingerprint(setup.train, val)
    study = open_study(storage, confirm_study_name(setup.info.study, settings, val_fp),
                       make_sampler("random", exp.seed * 100 + index, 1), setup.book.primary)
    book = setup.book.only(keys)
    search = dataclasses.replace(exp.search, strategy="enumerate", seeds=(), early_stop=None)
    settled = len(StudyState.read(study, search.retries).finished)
    config = dataclasses.replace(setup.finetune_config, steps=settings.steps, seeds=settings.seeds)
    trainer = ConfirmTrainer(
        checkpoints(brief), setup.finetune_config.seeds, setup.teacher, setup.train, val, config, setup.workdir,
        setup.crop, setup.eval_device, real_data=setup.training.real_data,
    )
    identity = setup.training.continue_with(settings, val_fp)
    trained = TrainedIndex.of(study)  # earlier searches' confirmations with these settings
    plan = plan_search(study, book, search, training_keys(trainer, identity, book.candidates), trained)
    stage = ConfirmStage(settings, study, plan, keys, len(val), settled)
    if announce is not None:
        announce(stage)
    stage_log = log.for_stage(CONFIRM, {**dataclasses.asdict(settings), "val_sequences": len(val)})
    SearchController(study, book, exp.space, setup.teacher.depth, search, stage.plan, trainer, stage_log, progress,
                     identity, index, trained).work()
    return stage


def members(fronts: dict[str, list[CandidateResult]], ties: dict[str, list[CandidateResult]]) -> list[str]:
    """The candidates to confirm: each target's brief front, then its tied candidates, once each."""
    keys: dict[str, None] = {}
    for target, front in fronts.items():
        keys.update((r.key, None) for r in front + ties.get(target, []))
    return list(keys)


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


def confirmation_markdown(stage: ConfirmStage, brief_fronts: dict[str, list[CandidateResult]],
                          dropped: dict[str, dict[str, str]]) -> str:
    """How the front was confirmed, the brief front, and what the confirmation dropped, per target."""
    s = stage.settings
    lines = [f"**Confirmed front**: {len(stage.members)} candidates (the brief front and those tied with it) fine-tuned "
             f"{s.steps} more steps x {s.seeds} seed(s) from their brief checkpoints, scored on {stage.sequences} sequences "
             "(child runs tagged `stage: confirm`)."]
    for target, front in brief_fronts.items():
        lines.append(f"- brief front on {target}: {', '.join(r.key for r in front) or 'none'}")
        lines += [f"  - dropped {key}: {why}" for key, why in dropped.get(target, {}).items()]
    return "\n".join(lines)
