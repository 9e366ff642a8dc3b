"""The two graphs a tracker runs, as modules: the template step and the per-frame step.

Tracing tools (fvcore's FLOP counter, the ONNX exporter, latency benchmarks) take a module and
positional tensors; these wrappers give them exactly one phase of a tracker each, so every tool
measures the same split between once-per-template and every-frame work.
"""

from __future__ import annotations

import torch
from torch import nn

from prunesearch.models.vit_tracker import TrackerBase, TrackerConfig

TEMPLATE_INPUTS = ("z",)
TEMPLATE_OUTPUTS = ("z_feat",)
FRAME_INPUTS = ("z_feat", "x")
FRAME_OUTPUTS = ("score_map", "size_map", "offset_map", "box")


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
