"""What runs the network inside the tracking loop: a PyTorch tracker or its two exported ONNX graphs.

Both adapters expose the same two-phase API as the models (``template`` once, ``frame`` every
frame) on ImageNet-normalised float crops, so one loop (:mod:`prunesearch.evaluation.tracking_loop`)
drives either. The ONNX pair is what ``prunesearch.export`` writes: ``template.onnx`` (input ``z``
-> ``z_feat``) and ``frame.onnx`` (inputs ``z_feat``, ``x`` -> ``score_map``, ``size_map``,
``offset_map``, ``box``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from prunesearch.devices import autocast, resolve_device, resolve_precision
from prunesearch.export import FRAME_FILE, TEMPLATE_FILE, OnnxTracker
from prunesearch.models.vit_tracker import TrackerBase

class InferenceBackend(Protocol):
    """A network behind the tracking loop."""

    name: str
    template_size: int
    search_size: int

    def template(self, z: torch.Tensor) -> object:
        """Template crop [1, 3, S, S] -> whatever :meth:`frame` needs, computed once."""

    def frame(self, z_feat: object, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Search crop [1, 3, S, S] -> (score map, size map, offset map)."""


class TorchBackend:
    """A :class:`TrackerBase` in eval mode under ``torch.inference_mode``, on ``device`` (moved
    there), in ``precision``; the maps come back as fp32 on the CPU for the loop's decoding."""

    def __init__(self, model: TrackerBase, name: str = "", device: str | None = None, precision: str = "auto") -> None:
        self.device = resolve_device(device if device is not None else _device_of(model), "evaluation.device")
        self.precision = resolve_precision(precision, self.device, "evaluation precision")
        self.model = model.to(self.device).eval()
        self.name = name or getattr(getattr(model, "spec", None), "name", "teacher")
        self.template_size = model.cfg.template_size
        self.search_size = model.cfg.search_size

    def template(self, z: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast(self.device, self.precision):
            return self.model.template(z.to(self.device, non_blocking=True))

    def frame(self, z_feat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.inference_mode(), autocast(self.device, self.precision):
            out = self.model.frame(z_feat, x.to(self.device, non_blocking=True))
        return tuple(t.float().cpu() for t in (out.score_map, out.size_map, out.offset_map))  # type: ignore[return-value]


def _device_of(model: TrackerBase) -> str:
    """Where the model already is (a model never moves unless a device is asked for)."""
    return str(next(model.parameters()).device)


class OnnxBackend:
    """The exported template and frame graphs (:class:`prunesearch.export.OnnxTracker`) on the CPU."""

    def __init__(self, template_path: str | Path, frame_path: str | Path, name: str = "") -> None:
        self.graphs = OnnxTracker(template_path, frame_path)
        self.name = name or self.graphs.name
        self.template_size = self.graphs.template_size
        self.search_size = self.graphs.search_size

    def template(self, z: torch.Tensor) -> torch.Tensor:
        return self.graphs.template(z)

    def frame(self, z_feat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.graphs.frame(z_feat, x)
        return out.score_map, out.size_map, out.offset_map


def backend_for(model: object, name: str = "", device: str | None = None, precision: str = "auto") -> InferenceBackend:
    """A backend for a :class:`TrackerBase` (on ``device``, default where it is, in ``precision``),
    a folder holding the two graphs, or a ``(template.onnx, frame.onnx)`` pair of paths; an
    existing backend is returned as is."""
    if isinstance(model, TrackerBase):
        return TorchBackend(model, name, device, precision)
    if isinstance(model, (str, Path)):
        folder = Path(model)
        return OnnxBackend(folder / TEMPLATE_FILE, folder / FRAME_FILE, name or folder.name)
    if isinstance(model, (tuple, list)) and len(model) == 2:
        return OnnxBackend(model[0], model[1], name)
    if all(hasattr(model, a) for a in ("template", "frame", "template_size", "search_size", "name")):
        return model  # type: ignore[return-value]
    raise TypeError(f"cannot track with a {type(model).__name__}: pass a TrackerBase or ONNX graph paths")
