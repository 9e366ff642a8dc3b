"""The two ONNX graphs of a tracker, in the layout the ONNX backend reads (template.onnx, frame.onnx).

Uses the project's one export setting (``prunesearch.export.export_module``) on thin wrappers
around the model's two-phase API.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch

from prunesearch.export import export_module
from prunesearch.models.vit_tracker import JointTracker, TrackerBase, TrackerConfig, build_teacher

# Temporary folders of the cached exports, removed when the test process ends.
_KEEP: list[tempfile.TemporaryDirectory] = []

# A tracker small enough to export and run in a second or two; crops 32/64 px, a 4x4 score map.
TINY = TrackerConfig(embed_dim=32, num_heads=2, template_size=32, search_size=64, depth=2, head_channels=(16, 8))


class _Template(torch.nn.Module):
    def __init__(self, model: TrackerBase) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.template(z)


class _Frame(torch.nn.Module):
    def __init__(self, model: TrackerBase) -> None:
        super().__init__()
        self.model = model

    def forward(self, z_feat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.frame(z_feat, x))


def export_graphs(model: TrackerBase, folder: Path) -> Path:
    cfg = model.cfg
    z = torch.randn(1, 3, cfg.template_size, cfg.template_size)
    x = torch.randn(1, 3, cfg.search_size, cfg.search_size)
    with torch.no_grad():
        z_feat = model.eval().template(z)
    export_module(_Template(model), (z,), folder / "template.onnx", ["z"], ["z_feat"])
    export_module(
        _Frame(model), (z_feat, x), folder / "frame.onnx", ["z_feat", "x"], ["score_map", "size_map", "offset_map", "box"]
    )
    return folder


@functools.cache
def tiny_teacher_graphs() -> tuple[JointTracker, Path]:
    """A seeded TINY teacher and its exported graphs, made once per test session (exports are slow)."""
    torch.manual_seed(0)
    model = build_teacher(TINY).eval()
    folder = tempfile.TemporaryDirectory(prefix="prunesearch-onnx-")
    _KEEP.append(folder)
    return model, export_graphs(model, Path(folder.name))
