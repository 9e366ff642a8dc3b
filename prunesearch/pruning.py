"""Layer pruning: build an async student B{N}-{M} from a joint teacher.

The student's blocks are copies of chosen teacher blocks; patch embedding, position embeddings,
final norm and head are copied as they are. Block-choice rules:

* ``first``: the first N teacher blocks (LiteTrack's choice).
* ``uniform``: N blocks evenly spaced over the teacher, always keeping the first and the last.
* ``influence``: the N blocks that change their input most on real crops, measured as
  ``1 - cos(block input, block output)`` averaged over tokens and a calibration batch, kept in order.
* an explicit list of teacher block indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prunesearch.errors import PrunesearchError
from prunesearch.models.vit_tracker import AsyncTracker, JointTracker, StudentSpec, build_student

RULES = ("first", "uniform", "influence")


@torch.no_grad()
def block_influence(teacher: JointTracker, template: torch.Tensor, search: torch.Tensor) -> list[float]:
    """Per teacher block, ``1 - cos(input, output)`` averaged over tokens and the batch.

    ``template`` and ``search`` are a calibration batch of normalised crops ([B, 3, H, W]).
    """
    teacher.eval()
    tokens = teacher.joint_tokens(teacher.template(template), search)
    return [
        float((1 - torch.nn.functional.cosine_similarity(a, b, dim=-1)).mean())
        for a, b in zip(tokens[:-1], tokens[1:])
    ]


def choose_blocks(
    teacher_depth: int,
    depth: int,
    rule: str | Sequence[int] = "first",
    influence: Sequence[float] | None = None,
) -> tuple[int, ...]:
    """Teacher block indices, in order, that a depth-``depth`` student keeps under ``rule``."""
    if not 1 <= depth <= teacher_depth:
        raise PrunesearchError(f"student depth must be between 1 and the teacher's {teacher_depth}, got {depth}")
    if not isinstance(rule, str):
        blocks = tuple(int(b) for b in rule)
        bad = [b for b in blocks if not 0 <= b < teacher_depth]
        if len(blocks) != depth or bad or sorted(set(blocks)) != list(blocks):
            raise PrunesearchError(
                f"block list {list(blocks)} must hold {depth} increasing indices in 0..{teacher_depth - 1}"
            )
        return blocks
    if rule == "first":
        return tuple(range(depth))
    if rule == "uniform":
        if depth == 1:
            return (0,)
        return tuple(round(i * (teacher_depth - 1) / (depth - 1)) for i in range(depth))
    if rule == "influence":
        if influence is None or len(influence) != teacher_depth:
            raise PrunesearchError("the 'influence' rule needs one measured influence per teacher block")
        ranked = sorted(range(teacher_depth), key=lambda i: -influence[i])
        return tuple(sorted(ranked[:depth]))
    raise PrunesearchError(f"unknown block-choice rule {rule!r}; use one of {', '.join(RULES)} or a list of indices")


def prune(teacher: JointTracker, spec: StudentSpec) -> AsyncTracker:
    """A student whose blocks are copies of ``spec.blocks`` of ``teacher``, all else copied too."""
    if max(spec.blocks) >= teacher.depth:
        raise PrunesearchError(f"block {max(spec.blocks)} does not exist in a {teacher.depth}-block teacher")
    student = build_student(teacher.cfg, spec)
    state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("blocks.")}
    for new, old in enumerate(spec.blocks):
        prefix = f"blocks.{old}."
        for k, v in teacher.state_dict().items():
            if k.startswith(prefix):
                state[f"blocks.{new}." + k[len(prefix):]] = v
    student.load_state_dict(state, strict=True)
    return student


def student_from_teacher(
    teacher: JointTracker,
    depth: int,
    ai_layers: int,
    rule: str | Sequence[int] = "first",
    calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> AsyncTracker:
    """Choose blocks by ``rule`` (measuring influence on ``calibration`` crops if needed) and prune."""
    influence = None
    if rule == "influence":
        if calibration is None:
            raise PrunesearchError("the 'influence' rule needs a calibration batch of template/search crops")
        influence = block_influence(teacher, *calibration)
    blocks = choose_blocks(teacher.depth, depth, rule, influence)
    name = rule if isinstance(rule, str) else "list"
    return prune(teacher, StudentSpec(depth, ai_layers, blocks, name))
