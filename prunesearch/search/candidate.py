"""Evaluating one candidate for real: prune the teacher, fine-tune briefly, track the validation set.

This is the one place the search calls the other parts of prunesearch: pruning
(:func:`prunesearch.pruning.student_from_teacher`), training (:func:`prunesearch.training.finetune`),
evaluation (:func:`prunesearch.evaluation.evaluate`), checkpoints and ONNX export.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunesearch.checkpoints import load_checkpoint, save_checkpoint
from prunesearch.data.processing import CropGeometry, box_window, extract, normalize
from prunesearch.data.sequence import Sequence
from prunesearch.devices import resolve_device
from prunesearch.errors import PrunesearchError
from prunesearch.evaluation.uncertainty import SequenceStats
from prunesearch.models.vit_tracker import JointTracker
from prunesearch.pruning import student_from_teacher
from prunesearch.search.controller import Outcome, StepCallback
from prunesearch.search.results import ACCURACY_KEYS
from prunesearch.search.space import Candidate

CALIBRATION_PAIRS = 8
CALIBRATION_GAP = 5  # the search frame: this many visible frames after the template, or the last


def calibration_batch(
    teacher: JointTracker, sequences: list[Sequence], pairs: int, crop: CropGeometry, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Template/search crops from real frames, for measuring block influence.

    Sequences are drawn at random (dataset lists are sorted by class: LaSOT's first 8 are one
    class), and both frames of a pair show the target.
    """
    cfg = teacher.cfg
    rng = np.random.default_rng(seed)
    zs, xs = [], []
    for i in rng.permutation(len(sequences)):
        seq = sequences[int(i)]
        visible = np.flatnonzero(seq.visible & (np.nan_to_num(seq.boxes[:, 2:]) >= 2).all(axis=1))
        if len(visible) < 2:
            continue
        t = int(visible[0])
        s = int(visible[min(CALIBRATION_GAP, len(visible) - 1)])
        zs.append(extract(seq.image(t), box_window(seq.boxes[t], crop.template_factor, cfg.template_size)))
        xs.append(extract(seq.image(s), box_window(seq.boxes[s], crop.search_factor, cfg.search_size)))
        if len(zs) == pairs:
            break
    if not zs:
        raise PrunesearchError("no training sequence has two visible frames to calibrate block influence on")
    return normalize(zs), normalize(xs)


class CandidateTrainer:
    """The product :class:`~prunesearch.search.controller.Evaluator`; checkpoints go to ``workdir``.

    The teacher is moved once to the fine-tune's device; students are pruned from it there,
    fine-tuned there and evaluated on ``eval_device`` (default: the same) in the same precision.
    """

    def __init__(
        self,
        teacher: JointTracker,
        train: list[Sequence],
        val: list[Sequence],
        finetune_config: Any,
        workdir: Path,
        crop: CropGeometry | None = None,
        eval_device: str | None = None,
        real_data: bool = False,
    ) -> None:
        self.device = resolve_device(finetune_config.device, "finetune.device")
        self.eval_device = str(resolve_device(eval_device, "evaluation.device")) if eval_device else str(self.device)
        self.teacher, self.train, self.val = teacher.to(self.device).eval(), train, val
        self.config = finetune_config
        self.steps = int(finetune_config.steps)
        self.workdir = workdir
        self.crop = crop or CropGeometry()
        self.real_data = real_data
        self._calibration: tuple[torch.Tensor, torch.Tensor] | None = None

    def calibration(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._calibration is None:
            z, x = calibration_batch(self.teacher, self.train, CALIBRATION_PAIRS, self.crop, self.config.seed)
            self._calibration = (z.to(self.device), x.to(self.device))
        return self._calibration

    def run(self, cand: Candidate, on_step: StepCallback) -> Outcome:
        from prunesearch.evaluation import TrackingParams, evaluate
        from prunesearch.training import finetune

        start = time.perf_counter()
        calib = self.calibration() if cand.rule == "influence" else None
        student = student_from_teacher(self.teacher, cand.depth, cand.ai_layers, cand.rule, calibration=calib)
        trained = finetune(
            student, self.train, self.config, teacher=self.teacher, callback=on_step, crop=self.crop, real_data=self.real_data
        )
        tuned = time.perf_counter()
        outcome = Outcome(
            status=trained.status,
            losses=list(trained.losses),
            seconds={"finetune": tuned - start},
            blocks=tuple(student.spec.blocks),
        )
        if trained.status != "ok":
            return outcome
        scores = evaluate(
            student.eval(), self.val, params=TrackingParams(crop=self.crop), device=self.eval_device,
            precision=self.config.precision,
        )
        scored = time.perf_counter()
        outcome.accuracy = {k: float(getattr(scores, k)) for k in ACCURACY_KEYS}
        outcome.sequences = SequenceStats.from_results(scores.sequences).to_dict()
        path = self.workdir / f"{cand.key.replace('/', '-')}.pt"
        outcome.checkpoint = str(save_checkpoint(student, path, crop=self.crop))
        outcome.seconds.update(evaluate=scored - tuned, checkpoint=time.perf_counter() - scored)
        return outcome


def export_onnx(checkpoint: str | Path, out_dir: Path) -> list[Path]:
    """A front member's template and frame graphs, from its saved checkpoint."""
    from prunesearch.export import export_tracker

    return list(export_tracker(load_checkpoint(checkpoint), out_dir, weights=str(checkpoint)))
