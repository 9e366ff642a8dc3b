"""Evaluating one candidate for real: prune the teacher, fine-tune briefly, track the validation set.

This is the one place the search calls the other parts of prunesearch: pruning
(:func:`prunesearch.pruning.choose_blocks`, :func:`~prunesearch.pruning.prune`), training
(:func:`prunesearch.training.finetune`), evaluation (:func:`prunesearch.evaluation.evaluate`), checkpoints and ONNX export.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from prunesearch.checkpoints import load_checkpoint, load_tracker, save_checkpoint
from prunesearch.data.processing import CropGeometry
from prunesearch.data.sequence import Sequence
from prunesearch.devices import resolve_device
from prunesearch.errors import PrunesearchError
from prunesearch.evaluation.uncertainty import SequenceStats
from prunesearch.models.vit_tracker import JointTracker, StudentSpec, TrackerBase
from prunesearch.pruning import CALIBRATION_PAIRS, block_influence, calibration_batch, choose_blocks, needs_calibration, prune
from prunesearch.search.controller import StepCallback, TrainResult
from prunesearch.search.space import Candidate
from prunesearch.search.stage import BRIEF, CONFIRM
from prunesearch.training.finetune import FinetuneConfig

def checkpoint_path(workdir: Path, key: str, stage: str = BRIEF, seed: int = 0) -> Path:
    """Where a candidate's fine-tuned weights go: ``B4-1-uniform.pt`` for the brief stage's first
    seed, ``B4-1-uniform.seed1.pt``, ``B4-1-uniform.confirm.pt`` and so on for the others."""
    parts = [key.replace("/", "-")] + ([stage] if stage != BRIEF else []) + ([f"seed{seed}"] if seed else [])
    return workdir / (".".join(parts) + ".pt")


def seed_checkpoint(first: Path, seed: int) -> Path:
    """The ``seed``-th seed's checkpoint beside a fine-tune's first (:func:`checkpoint_path`): named
    after the candidate that was fine-tuned, which a candidate reusing its result need not be."""
    return first if seed == 0 else first.with_name(f"{first.stem}.seed{seed}{first.suffix}")


class CandidateTrainer:
    """The product :class:`~prunesearch.search.controller.Trainer` of the brief stage: prune the
    teacher, fine-tune, score; checkpoints go to ``workdir``.

    With ``finetune.seeds: K`` each candidate is fine-tuned K times (seeds seed .. seed+K-1) and
    scored on the same sequences after each: its figures are the means over seeds and its
    per-sequence statistics keep every seed, so intervals cover seed noise. The first seed's
    weights are the candidate's checkpoint (exported if it makes the front); ``on_step`` counts
    the steps of all seeds in a row. The teacher is moved once to the fine-tune's device; students
    are fine-tuned there and evaluated on ``eval_device`` (default: the same) in the same precision.
    """

    stage = BRIEF

    def __init__(
        self,
        teacher: JointTracker,
        train: list[Sequence],
        val: list[Sequence],
        finetune_config: FinetuneConfig,
        workdir: Path,
        crop: CropGeometry | None = None,
        eval_device: str | None = None,
        real_data: bool = False,
    ) -> None:
        self.device = resolve_device(finetune_config.device, "finetune.device")
        self.eval_device = str(resolve_device(eval_device, "evaluation.device")) if eval_device else str(self.device)
        self.teacher, self.train, self.val = teacher.to(self.device).eval(), train, val
        self.config = finetune_config
        self.steps = int(finetune_config.steps) * int(finetune_config.seeds)
        self.workdir = workdir
        self.crop = crop or CropGeometry()
        self.real_data = real_data
        self._influence: list[float] | None = None

    def influence(self) -> list[float]:
        """The teacher's block influence on a calibration batch of training crops, measured once."""
        if self._influence is None:
            z, x = calibration_batch(self.teacher, self.train, CALIBRATION_PAIRS, self.crop, self.config.seed)
            self._influence = block_influence(self.teacher, z.to(self.device), x.to(self.device))
        return self._influence

    def blocks(self, cand: Candidate) -> tuple[int, ...]:
        """The teacher blocks ``cand`` keeps (its rule's choice; measured influence where the rule needs it)."""
        influence = self.influence() if needs_calibration(cand.rule) else None
        return choose_blocks(self.teacher.depth, cand.depth, cand.rule, influence)

    def start(self, cand: Candidate, seed: int) -> tuple[TrackerBase, int]:
        """The model the ``seed``-th fine-tune trains, and the steps it has already had."""
        return prune(self.teacher, StudentSpec(cand.depth, cand.ai_layers, self.blocks(cand), cand.rule)), 0

    def seed_of(self, seed: int) -> int:
        """The data seed of the ``seed``-th fine-tune."""
        return self.config.seed + seed

    def run(self, cand: Candidate, on_step: StepCallback) -> TrainResult:
        from prunesearch.evaluation import TrackingParams, evaluate
        from prunesearch.training import finetune

        result = TrainResult(status="ok", seconds={"finetune": 0.0, "evaluate": 0.0, "checkpoint": 0.0})
        per_seed = []
        for k in range(self.config.seeds):
            clock = time.perf_counter()
            model, before = self.start(cand, k)
            config = dataclasses.replace(self.config, seed=self.seed_of(k))
            offset = k * self.config.steps
            trained = finetune(
                model, self.train, config, teacher=self.teacher, callback=lambda step, m: on_step(offset + step, m),
                crop=self.crop, real_data=self.real_data,
            )
            tuned = time.perf_counter()
            result.seconds["finetune"] += tuned - clock
            result.losses += trained.losses
            result.blocks = tuple(model.spec.blocks)
            if trained.status != "ok":
                result.status = trained.status
                return result
            scores = evaluate(
                model.eval(), self.val, params=TrackingParams(crop=self.crop), device=self.eval_device,
                precision=self.config.precision,
            )
            scored = time.perf_counter()
            per_seed.append(scores.sequences)
            path = save_checkpoint(model, checkpoint_path(self.workdir, cand.key, self.stage, k), crop=self.crop,
                                   steps=before + trained.steps, stage=self.stage, seed=config.seed)
            result.checkpoint = result.checkpoint or str(path)
            result.seconds["evaluate"] += scored - tuned
            result.seconds["checkpoint"] += time.perf_counter() - scored
        stats = SequenceStats.from_results(*per_seed)
        result.accuracy = stats.point()
        result.sequences = stats.to_dict()
        return result


class ConfirmTrainer(CandidateTrainer):
    """The confirmation stage's :class:`~prunesearch.search.controller.Trainer`: each seed goes on
    from the candidate's brief checkpoint (the weights, and the step count it records) for
    ``finetune_config.steps`` more steps on fresh pairs, and is scored on ``val`` (more sequences).

    The optimiser starts afresh with its warm-up (a warm restart of the cosine schedule): its
    moments are not kept in checkpoints, which would triple their size for ViT-B students.
    """

    stage = CONFIRM

    def __init__(self, brief: dict[str, str], brief_seeds: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.brief, self.brief_seeds = brief, brief_seeds

    def start(self, cand: Candidate, seed: int) -> tuple[TrackerBase, int]:
        first = self.brief.get(cand.key)
        if not first:
            raise PrunesearchError(f"{cand.key} has no brief checkpoint in the study to confirm it from")
        path = seed_checkpoint(Path(first), seed % self.brief_seeds)
        if not path.is_file():
            raise PrunesearchError(
                f"the brief checkpoint {path} of {cand.key} is not on this machine; on many machines give "
                "every machine the same --workdir on a shared file system"
            )
        loaded = load_tracker(path, device=str(self.device))
        return loaded.model, int(loaded.extra.get("steps", 0))

    def seed_of(self, seed: int) -> int:
        """Seeds after the brief ones: a continued fine-tune never replays its brief pairs."""
        return self.config.seed + self.brief_seeds + seed


def export_onnx(checkpoint: str | Path, out_dir: Path) -> list[Path]:
    """A front member's template and frame graphs, from its saved checkpoint."""
    from prunesearch.export import export_tracker

    return list(export_tracker(load_checkpoint(checkpoint), out_dir, weights=str(checkpoint)))
