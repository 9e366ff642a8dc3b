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

import numpy as np
import torch

from prunesearch.errors import PrunesearchError
from prunesearch.models.vit_tracker import TrackerBase

TEMPLATE_GRAPH = "template.onnx"
FRAME_GRAPH = "frame.onnx"
MAP_OUTPUTS = ("score_map", "size_map", "offset_map")


class Backend(Protocol):
    """A network behind the tracking loop."""

    name: str
    template_size: int
    search_size: int

    def template(self, z: torch.Tensor) -> object:
        """Template crop [1, 3, S, S] -> whatever :meth:`frame` needs, computed once."""

    def frame(self, z_feat: object, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Search crop [1, 3, S, S] -> (score map, size map, offset map)."""


class TorchBackend:
    """A :class:`TrackerBase` in eval mode, without autograd."""

    def __init__(self, model: TrackerBase, name: str = "") -> None:
        self.model = model.eval()
        self.name = name or getattr(getattr(model, "spec", None), "name", "teacher")
        self.template_size = model.cfg.template_size
        self.search_size = model.cfg.search_size

    def template(self, z: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.template(z)

    def frame(self, z_feat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            out = self.model.frame(z_feat, x)
        return out.score_map, out.size_map, out.offset_map


class OnnxBackend:
    """The exported template and frame graphs, run by onnxruntime on the CPU."""

    def __init__(self, template_path: str | Path, frame_path: str | Path, name: str = "") -> None:
        self.template_session = _session(Path(template_path), ("z",), ("z_feat",))
        self.frame_session = _session(Path(frame_path), ("z_feat", "x"), MAP_OUTPUTS)
        self.name = name or Path(frame_path).parent.name or "onnx"
        self.template_size = _square_side(self.template_session, "z", template_path)
        self.search_size = _square_side(self.frame_session, "x", frame_path)

    def template(self, z: torch.Tensor) -> np.ndarray:
        return self.template_session.run(["z_feat"], {"z": z.numpy()})[0]

    def frame(self, z_feat: np.ndarray, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        maps = self.frame_session.run(list(MAP_OUTPUTS), {"z_feat": z_feat, "x": x.numpy()})
        return tuple(torch.from_numpy(m) for m in maps)  # type: ignore[return-value]


def _session(path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...]):
    import onnxruntime as ort

    if not path.is_file():
        raise PrunesearchError(f"ONNX graph {path} does not exist")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises several types for a bad file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrunesearchError(f"onnxruntime cannot load {path}: {first}") from None
    have_in = [i.name for i in session.get_inputs()]
    have_out = [o.name for o in session.get_outputs()]
    if set(have_in) != set(inputs) or not set(outputs) <= set(have_out):
        raise PrunesearchError(
            f"{path} has inputs {have_in} and outputs {have_out}; the tracking loop needs inputs "
            f"{list(inputs)} and outputs {list(outputs)} (export with prunesearch export)"
        )
    return session


def _square_side(session, input_name: str, path: str | Path) -> int:
    shape = next(i.shape for i in session.get_inputs() if i.name == input_name)
    if len(shape) != 4 or not all(isinstance(s, int) for s in shape[2:]) or shape[2] != shape[3]:
        raise PrunesearchError(f"{path}: input {input_name!r} has shape {shape}, expected fixed [1, 3, S, S]")
    return int(shape[2])


def backend_for(model: object, name: str = "") -> Backend:
    """A backend for a :class:`TrackerBase`, a folder holding the two graphs, or a
    ``(template.onnx, frame.onnx)`` pair of paths; an existing backend is returned as is."""
    if isinstance(model, TrackerBase):
        return TorchBackend(model, name)
    if isinstance(model, (str, Path)):
        folder = Path(model)
        return OnnxBackend(folder / TEMPLATE_GRAPH, folder / FRAME_GRAPH, name or folder.name)
    if isinstance(model, (tuple, list)) and len(model) == 2:
        return OnnxBackend(model[0], model[1], name)
    if all(hasattr(model, a) for a in ("template", "frame", "template_size", "search_size", "name")):
        return model  # type: ignore[return-value]
    raise TypeError(f"cannot track with a {type(model).__name__}: pass a TrackerBase or ONNX graph paths")
