"""Layer pruning: build an async student B{N}-{M} from a joint teacher.

The student's blocks are copies of chosen teacher blocks; patch embedding, position embeddings,
final norm and head are copied as they are. Which blocks it keeps is a block-choice rule, looked up
by name in a registry (the search space, the experiment file and ``--rule`` all read it):

* ``first``: the first N teacher blocks (LiteTrack's choice).
* ``uniform``: N blocks evenly spaced over the teacher, always keeping the first and the last.
* ``influence``: the N blocks that change their input most on real crops, measured as
  ``1 - cos(block input, block output)`` averaged over tokens and a calibration batch, kept in order.
* an explicit list of teacher block indices.

A new rule is a :class:`BlockRule` subclass with a ``name`` and a ``choose``, decorated with
:func:`register_rule`; nothing else names the rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch

from prunesearch.data.processing import CropGeometry, box_window, extract, normalize
from prunesearch.data.sequence import Sequence as TrackSequence
from prunesearch.errors import InputError, PrunesearchError
from prunesearch.models.vit_tracker import AsyncTracker, JointTracker, StudentSpec, build_student

CALIBRATION_PAIRS = 8
CALIBRATION_GAP = 5  # the search frame: this many visible frames after the template, or the last
_RULE_NAME = re.compile(r"\w+")  # a rule name is part of a candidate's key (``B4-2/first``)


class BlockRule:
    """Which teacher blocks a depth-``depth`` student keeps.

    ``needs_calibration`` rules are handed the measured :func:`block_influence` of every teacher
    block (the search and ``inspect`` measure it on real crops); the others get None.
    """

    name: ClassVar[str]
    needs_calibration: ClassVar[bool] = False

    def choose(self, teacher_depth: int, depth: int, influence: Sequence[float] | None) -> tuple[int, ...]:
        """``depth`` increasing teacher block indices in ``0 .. teacher_depth - 1``."""
        raise NotImplementedError


_RULES: dict[str, BlockRule] = {}


def register_rule(rule: type[BlockRule]) -> type[BlockRule]:
    """Class decorator: make ``rule`` available by its ``name`` everywhere a rule is named."""
    name = getattr(rule, "name", None)
    if not isinstance(name, str) or not _RULE_NAME.fullmatch(name):
        raise ValueError(f"{rule.__name__}.name must be a word (letters, digits, _), got {name!r}")
    if name in _RULES:
        raise ValueError(f"a block-choice rule named {name!r} is already registered ({type(_RULES[name]).__name__})")
    _RULES[name] = rule()
    return rule


def unregister_rule(name: str) -> None:
    """Take a rule out of the registry again (for tests and plugins that clean up)."""
    del _RULES[name]


def rule_names() -> tuple[str, ...]:
    """The registered rules, in registration order (the built-ins first)."""
    return tuple(_RULES)


def block_rule(name: str) -> BlockRule:
    """The registered rule ``name``; an unknown name is one line listing the registered ones."""
    try:
        return _RULES[name]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown block-choice rule {name!r}; use one of {', '.join(_RULES)} or a list of teacher block indices"
        ) from None


def needs_calibration(rule: str | Sequence[int]) -> bool:
    """Whether ``rule`` chooses from measured block influence (an explicit block list never does)."""
    return isinstance(rule, str) and block_rule(rule).needs_calibration


@register_rule
class First(BlockRule):
    name = "first"

    def choose(self, teacher_depth: int, depth: int, influence: Sequence[float] | None) -> tuple[int, ...]:
        return tuple(range(depth))


@register_rule
class Uniform(BlockRule):
    name = "uniform"

    def choose(self, teacher_depth: int, depth: int, influence: Sequence[float] | None) -> tuple[int, ...]:
        if depth == 1:
            return (0,)
        return tuple(round(i * (teacher_depth - 1) / (depth - 1)) for i in range(depth))


@register_rule
class Influence(BlockRule):
    name = "influence"
    needs_calibration = True

    def choose(self, teacher_depth: int, depth: int, influence: Sequence[float] | None) -> tuple[int, ...]:
        if influence is None or len(influence) != teacher_depth:
            raise PrunesearchError("the 'influence' rule needs one measured influence per teacher block")
        ranked = sorted(range(teacher_depth), key=lambda i: -influence[i])
        return tuple(sorted(ranked[:depth]))


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


def calibration_batch(
    teacher: JointTracker, sequences: list[TrackSequence], pairs: int, crop: CropGeometry, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Template/search crops from real frames, for measuring block influence.

    ``crop`` must be the geometry the teacher tracks with (a checkpoint's own, see
    :func:`prunesearch.checkpoints.load_tracker`), or the influence is measured on crops it never sees.
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
        raise InputError("no training sequence has two visible frames to calibrate block influence on")
    return normalize(zs), normalize(xs)


def choose_blocks(
    teacher_depth: int,
    depth: int,
    rule: str | Sequence[int] = "first",
    influence: Sequence[float] | None = None,
) -> tuple[int, ...]:
    """Teacher block indices, in order, that a depth-``depth`` student keeps under ``rule``."""
    if not 1 <= depth <= teacher_depth:
        raise InputError(f"student depth must be between 1 and the teacher's {teacher_depth}, got {depth}")
    if isinstance(rule, str):
        blocks = tuple(block_rule(rule).choose(teacher_depth, depth, influence))
    else:
        blocks = tuple(int(b) for b in rule)
    bad = [b for b in blocks if not 0 <= b < teacher_depth]
    if len(blocks) != depth or bad or sorted(set(blocks)) != list(blocks):
        raise InputError(f"block list {list(blocks)} must hold {depth} increasing indices in 0..{teacher_depth - 1}")
    return blocks


def prune(teacher: JointTracker, spec: StudentSpec) -> AsyncTracker:
    """A student whose blocks are copies of ``spec.blocks`` of ``teacher``, all else copied too."""
    if max(spec.blocks) >= teacher.depth:
        raise InputError(f"block {max(spec.blocks)} does not exist in a {teacher.depth}-block teacher")
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
    if needs_calibration(rule):
        if calibration is None:
            raise PrunesearchError(f"the {rule!r} rule needs a calibration batch of template/search crops")
        influence = block_influence(teacher, *calibration)
    blocks = choose_blocks(teacher.depth, depth, rule, influence)
    name = rule if isinstance(rule, str) else "list"
    return prune(teacher, StudentSpec(depth, ai_layers, blocks, name))
