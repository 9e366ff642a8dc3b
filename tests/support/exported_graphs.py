"""The two ONNX graphs of a tracker, in the layout the ONNX backend reads (template.onnx, frame.onnx).

Written by ``prunesearch.export.export_tracker``, as ``prunesearch export`` writes them.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch

from prunesearch.export import export_tracker
from prunesearch.models.vit_tracker import JointTracker, TrackerConfig, build_teacher

# Temporary folders of the cached exports, removed when the test process ends.
_KEEP: list[tempfile.TemporaryDirectory] = []

# A tracker small enough to export and run in a second or two; crops 32/64 px, a 4x4 score map.
TINY = TrackerConfig(embed_dim=32, num_heads=2, template_size=32, search_size=64, depth=2, head_channels=(16, 8))


@functools.cache
def tiny_teacher_graphs() -> tuple[JointTracker, Path]:
    """A seeded TINY teacher and its exported graphs, made once per test session (exports are slow)."""
    torch.manual_seed(0)
    model = build_teacher(TINY).eval()
    folder = tempfile.TemporaryDirectory(prefix="prunesearch-onnx-")
    _KEEP.append(folder)
    return model, export_tracker(model, folder.name)[1].parent
