"""The two graphs a tracker runs: the template step and the per-frame step, what each is made of, and their schedule.

Tracing tools (fvcore's FLOP counter, the ONNX exporter, latency benchmarks) take a module and
positional tensors; these wrappers give them exactly one phase of a tracker each, so every tool
measures the same split between once-per-template and every-frame work.

:func:`phase_parts` says which parts each phase runs and how many of each (the one place that
says it: MAC counts, latency tables and the fits to published figures all price these counts), and
:func:`amortised` how the template phase weighs on a frame when the template is re-encoded every
K frames (the one place for that too: a latency estimate and a search's price use it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prunesearch.errors import InputError
from prunesearch.models.vit_tracker import TrackerBase, TrackerConfig

TEMPLATE_INPUTS = ("z",)
TEMPLATE_OUTPUTS = ("z_feat",)
FRAME_INPUTS = ("z_feat", "x")
FRAME_OUTPUTS = ("score_map", "size_map", "offset_map", "box")

#: The part kinds a tracker is made of, each priced on its own (MACs, latency table entries).
PART_KINDS = (
    "search_embed",
    "template_embed",
    "search_block",
    "interaction_block",
    "template_block",
    "joint_block",
    "head",
)


@dataclass(frozen=True)
class PhaseParts:
    """How many of each part kind a model runs every frame and once per template (in the order they run)."""

    frame: dict[str, int]
    template: dict[str, int]


def phase_parts(depth: int, ai_layers: int | None) -> PhaseParts:
    """Student ``B{depth}-{ai_layers}``, or the joint teacher of ``depth`` blocks when ``ai_layers`` is None.

    A student runs ``depth - ai_layers`` search-only blocks and ``ai_layers`` interaction blocks per
    frame, and its ``depth`` template blocks once per template; the teacher runs all its blocks
    jointly on template and search tokens every frame, and only the template embedding once. A
    student's kinds are all listed, a zero count included, so its parts always have the same keys.
    """
    if ai_layers is None:
        return PhaseParts({"search_embed": 1, "joint_block": depth, "head": 1}, {"template_embed": 1})
    return PhaseParts(
        {"search_embed": 1, "search_block": depth - ai_layers, "interaction_block": ai_layers, "head": 1},
        {"template_embed": 1, "template_block": depth},
    )


# A template kept for a million frames (over nine hours at 30 fps) is as good as never re-encoded.
TEMPLATE_UPDATE_MAX = 1_000_000


def check_template_update(template_update: int | None) -> None:
    """``template_update`` is a number of frames (at least 1) or None (the template is encoded once per sequence)."""
    if template_update is not None and not 1 <= template_update <= TEMPLATE_UPDATE_MAX:
        raise InputError(f"--template-update must be from 1 to {TEMPLATE_UPDATE_MAX} frames (TEMPLATE_UPDATE_MAX), got {template_update}")


def amortised(per_frame: float, template: float, template_update: int | None) -> float:
    """The cost of one frame with the template re-encoded every ``template_update`` frames.

    None: the template is encoded once per sequence and left out of the per-frame cost (a long
    sequence spreads it over so many frames that it vanishes).
    """
    return per_frame + (template / template_update if template_update else 0.0)


class TemplatePhase(nn.Module):
    """``z`` (template crop) -> ``z_feat`` (what the frame step caches)."""

    def __init__(self, model: TrackerBase) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.template(z)


class FramePhase(nn.Module):
    """``(z_feat, x)`` -> ``(score_map, size_map, offset_map, box)`` as a plain tuple."""

    def __init__(self, model: TrackerBase) -> None:
        super().__init__()
        self.model = model

    def forward(self, z_feat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.frame(z_feat, x))


def example_crops(cfg: TrackerConfig, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random normalised template and search crops of the sizes ``cfg`` expects."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 3, cfg.template_size, cfg.template_size, generator=gen)
    x = torch.randn(batch, 3, cfg.search_size, cfg.search_size, generator=gen)
    return z, x
