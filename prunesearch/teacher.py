"""The small teacher shipped inside the package, so nothing must be trained before a first run.

It is a ``small``-preset joint tracker trained from scratch on built-in synthetic sequences by
``prunesearch teacher train`` (the recipe); stored in fp16 to stay under 10 MB.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from prunesearch.checkpoints import load_checkpoint, save_checkpoint
from prunesearch.data.sequence import Sequence
from prunesearch.errors import PrunesearchError
from prunesearch.models.vit_tracker import JointTracker, build_teacher, get_preset
from prunesearch.outputs import check_output, output_file
from prunesearch.training.finetune import FinetuneConfig, FinetuneResult, finetune
from prunesearch.training.pairs import AugmentConfig

SHIPPED_TEACHER = Path(__file__).parent / "assets" / "small_teacher.pt"


def load_shipped_teacher() -> JointTracker:
    """The shipped small teacher in eval mode, in fp32."""
    if not SHIPPED_TEACHER.is_file():
        raise PrunesearchError(
            f"the shipped teacher {SHIPPED_TEACHER} is missing; rebuild it with `prunesearch teacher train`"
        )
    model = load_checkpoint(SHIPPED_TEACHER)
    if not isinstance(model, JointTracker):
        raise PrunesearchError(f"{SHIPPED_TEACHER} holds a {model.kind} model, not a joint teacher")
    return model


TEACHER_PRESET = "small"
TEACHER_STEPS = 12000


def teacher_recipe(steps: int = TEACHER_STEPS, seed: int = 0, device: str = "cpu") -> FinetuneConfig:
    """How the shipped teacher is trained from scratch: every weight at the full learning rate.

    Small batches (more updates per sample) and a narrower centre jitter than OSTrack's 3 (the
    tracking loop crops around the previous box, so the target is rarely far from the middle)
    make the most of a CPU budget.
    """
    return FinetuneConfig(
        steps=steps,
        batch_size=16,
        lr=5e-4,
        backbone_lr_mult=1.0,
        weight_decay=0.05,
        grad_clip=1.0,
        warmup_steps=min(100, max(steps // 10, 1)),
        seed=seed,
        log_every=50,
        augment=AugmentConfig(center_jitter=2.0),
        device=device,
    )


def train_teacher(
    out: str | Path,
    steps: int = TEACHER_STEPS,
    seed: int = 0,
    sequences: list[Sequence] | None = None,
    save_every: int = 300,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    device: str = "cpu",
) -> FinetuneResult:
    """Train the small preset's joint teacher from scratch and save it in fp16 at ``out``.

    ``sequences`` defaults to the built-in synthetic train split. The file is rewritten every
    ``save_every`` steps (each time whole, :func:`prunesearch.outputs.output_file`), so an interrupted
    run still leaves a usable teacher. ``out`` has no default: the shipped file is replaced only when named.
    """
    if steps < 1:
        raise PrunesearchError(f"--steps must be at least 1, got {steps}")
    check_output(out, "--out")
    from prunesearch.data.synthetic import builtin_sequences

    torch.manual_seed(seed)
    model = build_teacher(get_preset(TEACHER_PRESET))
    train = sequences if sequences is not None else builtin_sequences("train")
    cfg = teacher_recipe(steps, seed, device)

    def on_step(step: int, metrics: dict[str, float]) -> bool:
        if progress is not None:
            progress(step, metrics)
        if save_every and step % save_every == 0 and step < steps:
            _save(model, out, steps=step, loss=metrics["loss"], recipe=asdict(cfg))
        return False

    result = finetune(model, train, cfg, callback=on_step)
    if result.status == "diverged":
        raise PrunesearchError(f"teacher training diverged ({result.message}); try a lower learning rate or another --seed")
    _save(model, out, steps=result.steps, loss=result.final_loss, recipe=asdict(cfg))
    return result


def _save(model: JointTracker, out: str | Path, **info: object) -> None:
    with output_file(out, "--out") as tmp:
        save_checkpoint(model, tmp, half=True, **info)
