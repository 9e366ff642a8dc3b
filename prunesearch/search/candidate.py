"""Evaluating one candidate for real: prune the teacher, fine-tune briefly, track the validation set.

This is the one place the search calls the other parts of prunesearch: pruning
(:func:`prunesearch.pruning.student_from_teacher`), training (:func:`prunesearch.training.finetune`),
evaluation (:func:`prunesearch.evaluation.evaluate`), checkpoints and ONNX export.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from prunesearch.checkpoints import load_checkpoint, save_checkpoint
from prunesearch.data.processing import box_window, extract, normalize
from prunesearch.data.sequence import Sequence
from prunesearch.models.vit_tracker import JointTracker
from prunesearch.pruning import student_from_teacher
from prunesearch.search.controller import Outcome, StepCallback
from prunesearch.search.results import ACCURACY_KEYS
from prunesearch.search.space import Candidate

# DESIGN.md's crop factors: template sqrt(wh)*2, search sqrt(wh)*4.
TEMPLATE_FACTOR, SEARCH_FACTOR = 2.0, 4.0
CALIBRATION_PAIRS = 8


def calibration_batch(teacher: JointTracker, sequences: list[Sequence], pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Template/search crops from real frames, for measuring block influence."""
    cfg = teacher.cfg
    zs, xs = [], []
    for seq in sequences[:pairs]:
        later = min(len(seq) - 1, 5)
        zs.append(extract(seq.image(0), box_window(seq.boxes[0], TEMPLATE_FACTOR, cfg.template_size)))
        xs.append(extract(seq.image(later), box_window(seq.boxes[later], SEARCH_FACTOR, cfg.search_size)))
    return normalize(zs), normalize(xs)


class CandidateTrainer:
    """The product :class:`~prunesearch.search.controller.Evaluator`; checkpoints go to ``workdir``."""

    def __init__(
        self,
        teacher: JointTracker,
        train: list[Sequence],
        val: list[Sequence],
        finetune_config: Any,
        workdir: Path,
    ) -> None:
        self.teacher, self.train, self.val = teacher.eval(), train, val
        self.config = finetune_config
        self.steps = int(finetune_config.steps)
        self.workdir = workdir
        self._calibration: tuple[torch.Tensor, torch.Tensor] | None = None

    def calibration(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._calibration is None:
            self._calibration = calibration_batch(self.teacher, self.train, CALIBRATION_PAIRS)
        return self._calibration

    def run(self, cand: Candidate, on_step: StepCallback) -> Outcome:
        from prunesearch.evaluation import evaluate
        from prunesearch.training import finetune

        start = time.perf_counter()
        calib = self.calibration() if cand.rule == "influence" else None
        student = student_from_teacher(self.teacher, cand.depth, cand.ai_layers, cand.rule, calibration=calib)
        trained = finetune(student, self.train, self.config, teacher=self.teacher, callback=on_step)
        tuned = time.perf_counter()
        outcome = Outcome(
            status=trained.status,
            losses=list(trained.losses),
            seconds={"finetune": tuned - start},
            blocks=tuple(student.spec.blocks),
        )
        if trained.status != "ok":
            return outcome
        scores = evaluate(student.eval(), self.val)
        scored = time.perf_counter()
        outcome.accuracy = {k: float(getattr(scores, k)) for k in ACCURACY_KEYS}
        outcome.checkpoint = str(save_checkpoint(student, self.workdir / f"{cand.key.replace('/', '-')}.pt"))
        outcome.seconds.update(evaluate=scored - tuned, checkpoint=time.perf_counter() - scored)
        return outcome


def export_onnx(checkpoint: str | Path, out_dir: Path) -> list[Path]:
    """A front member's template and frame graphs, from its saved checkpoint."""
    from prunesearch.export import export_tracker

    return list(export_tracker(load_checkpoint(checkpoint), out_dir, weights=str(checkpoint)))
