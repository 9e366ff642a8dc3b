"""ONNX export of trackers as two graphs, and running them with onnxruntime.

One exporter setting for the whole project: the dynamo-based ``torch.onnx.export`` with all
weights inside the ``.onnx`` file (``external_data=False``), so one file is one graph.

A tracker exports as the pair it runs: ``template.onnx`` (template crop ``z`` -> cached features
``z_feat``), run once per template, and ``frame.onnx`` (``z_feat`` and search crop ``x`` ->
``score_map``, ``size_map``, ``offset_map``, ``box``), run every frame. Each file carries the
model's config, student spec and weight origin as ONNX metadata (``prunesearch.*`` keys), so a
graph found on disk says what it is. :class:`OnnxTracker` runs the pair with the same two-phase
API as the PyTorch models; :func:`check_export` compares the two.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from prunesearch._version import __version__
from prunesearch.errors import PrunesearchError
from prunesearch.models.phases import (
    FRAME_INPUTS,
    FRAME_OUTPUTS,
    TEMPLATE_INPUTS,
    TEMPLATE_OUTPUTS,
    FramePhase,
    TemplatePhase,
    example_crops,
)
from prunesearch.models.vit_tracker import AsyncTracker, TrackerBase, TrackerOutput
from prunesearch.outputs import output_folder

OPSET = 18
TEMPLATE_FILE = "template.onnx"
FRAME_FILE = "frame.onnx"
# onnxruntime must match PyTorch this closely on random inputs (absolute, every output).
ATOL = 1e-4


def export_module(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Export ``module(*args)`` to a single self-contained ONNX file at fixed (batch-1) shapes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            args,
            input_names=list(input_names),
            output_names=list(output_names),
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
    program.model.metadata_props.update(metadata or {})
    program.save(str(path), external_data=False)
    return path


def describe(model: TrackerBase, weights: str) -> dict[str, str]:
    """The metadata every exported graph of ``model`` carries."""
    return {
        "prunesearch.version": __version__,
        "prunesearch.model": model.spec.name if isinstance(model, AsyncTracker) else "teacher",
        "prunesearch.kind": model.kind,
        "prunesearch.config": json.dumps(model.cfg.to_dict()),
        "prunesearch.spec": json.dumps(model.spec.to_dict()) if isinstance(model, AsyncTracker) else "",
        "prunesearch.weights": weights,
        "prunesearch.inputs": "ImageNet-normalised RGB crops, float32, batch 1",
    }


def export_template_graph(model: TrackerBase, path: str | Path, weights: str = "random") -> Path:
    """``template.onnx``: z [1, 3, Hz, Wz] -> z_feat."""
    z, _ = example_crops(model.cfg)
    meta = {**describe(model, weights), "prunesearch.graph": "template"}
    return export_module(TemplatePhase(model), (z,), path, TEMPLATE_INPUTS, TEMPLATE_OUTPUTS, meta)


def export_frame_graph(model: TrackerBase, path: str | Path, weights: str = "random") -> Path:
    """``frame.onnx``: (z_feat, x [1, 3, Hx, Wx]) -> score_map, size_map, offset_map, box."""
    z, x = example_crops(model.cfg)
    with torch.no_grad():
        z_feat = model.eval().template(z)
    meta = {**describe(model, weights), "prunesearch.graph": "frame"}
    return export_module(FramePhase(model), (z_feat, x), path, FRAME_INPUTS, FRAME_OUTPUTS, meta)


def export_tracker(model: TrackerBase, out_dir: str | Path, weights: str = "random") -> tuple[Path, Path]:
    """Write ``template.onnx`` and ``frame.onnx`` of ``model`` into ``out_dir``.

    ``weights`` says where the weights came from (a checkpoint path, or ``random``) and is
    stored in both files.
    """
    out_dir = Path(out_dir)
    # Both graphs or neither: a pair from two different models, or half a graph, must not be found on disk.
    weights_bytes = 4 * sum(p.numel() for p in model.parameters())
    with output_folder(out_dir, "--out", estimate=2 * weights_bytes) as tmp:
        export_template_graph(model, tmp / TEMPLATE_FILE, weights)
        export_frame_graph(model, tmp / FRAME_FILE, weights)
    return out_dir / TEMPLATE_FILE, out_dir / FRAME_FILE


def onnxruntime():  # noqa: ANN201 - the onnxruntime module
    """onnxruntime, which comes with the ``cpu`` or the ``gpu`` extra (never both: they install into
    one package); one line, not a traceback, where neither was installed."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as err:
        if err.name != "onnxruntime":
            raise
        raise PrunesearchError(
            "onnxruntime is not installed: install prunesearch with the cpu or the gpu extra "
            "(pip install -e '.[cpu]', or '.[gpu]' for onnxruntime-gpu)"
        ) from None
    return ort


def ort_session(path: str | Path, threads: int | None = None, profile_prefix: str | None = None):
    """An onnxruntime CPU session; ``threads`` fixes the intra-op pool (None: onnxruntime's default)."""
    ort = onnxruntime()

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for unreadable graphs
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrunesearchError(f"onnxruntime cannot open {path}: {first}") from None


class OnnxTracker:
    """An exported template/frame pair run by onnxruntime, with the PyTorch models' two-phase API.

    Opening checks that the graphs have the inputs and outputs :func:`export_tracker` writes and
    fixed square crop sizes, so a wrong file fails here in one line rather than mid-sequence.
    """

    def __init__(self, template_path: str | Path, frame_path: str | Path, threads: int | None = None) -> None:
        self.template_session = _tracker_session(template_path, TEMPLATE_INPUTS, TEMPLATE_OUTPUTS, threads)
        self.frame_session = _tracker_session(frame_path, FRAME_INPUTS, FRAME_OUTPUTS, threads)
        self.metadata = dict(self.frame_session.get_modelmeta().custom_metadata_map)
        self.template_size = _square_side(self.template_session, "z", template_path)
        self.search_size = _square_side(self.frame_session, "x", frame_path)
        self.name = self.metadata.get("prunesearch.model") or Path(frame_path).parent.name or "onnx"

    @classmethod
    def from_dir(cls, out_dir: str | Path, threads: int | None = None) -> "OnnxTracker":
        out_dir = Path(out_dir)
        return cls(out_dir / TEMPLATE_FILE, out_dir / FRAME_FILE, threads)

    def template(self, z: torch.Tensor) -> torch.Tensor:
        (z_feat,) = self.template_session.run(None, {"z": _numpy(z)})
        return torch.from_numpy(z_feat)

    def frame(self, z_feat: torch.Tensor, x: torch.Tensor) -> TrackerOutput:
        outs = self.frame_session.run(list(FRAME_OUTPUTS), {"z_feat": _numpy(z_feat), "x": _numpy(x)})
        return TrackerOutput(*(torch.from_numpy(o) for o in outs))

    def __call__(self, z: torch.Tensor, x: torch.Tensor) -> TrackerOutput:
        return self.frame(self.template(z), x)


def _tracker_session(path: str | Path, inputs: Sequence[str], outputs: Sequence[str], threads: int | None):
    if not Path(path).is_file():
        raise PrunesearchError(f"ONNX graph {path} does not exist; write it with `prunesearch export`")
    session = ort_session(path, threads)
    have_in = [i.name for i in session.get_inputs()]
    have_out = [o.name for o in session.get_outputs()]
    if set(have_in) != set(inputs) or not set(outputs) <= set(have_out):
        raise PrunesearchError(
            f"{path} has inputs {have_in} and outputs {have_out}; a tracker graph needs inputs "
            f"{list(inputs)} and outputs {list(outputs)} (write it with `prunesearch export`)"
        )
    return session


def _square_side(session, input_name: str, path: str | Path) -> int:
    shape = next(i.shape for i in session.get_inputs() if i.name == input_name)
    if len(shape) != 4 or not all(isinstance(s, int) for s in shape[2:]) or shape[2] != shape[3]:
        raise PrunesearchError(f"{path}: input {input_name!r} has shape {shape}, expected fixed [1, 3, S, S]")
    return int(shape[2])


def _numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


def check_export(model: TrackerBase, onnx_model: OnnxTracker, seed: int = 0) -> dict[str, float]:
    """Max absolute difference between onnxruntime and PyTorch per output, on random crops.

    The frame graph gets PyTorch's own ``z_feat``, so each graph is compared on its own.
    """
    z, x = example_crops(model.cfg, seed=seed)
    with torch.no_grad():
        z_feat = model.eval().template(z)
        expected = model.frame(z_feat, x)
    diffs = {"z_feat": float((onnx_model.template(z) - z_feat).abs().max())}
    got = onnx_model.frame(z_feat, x)
    for name, a, b in zip(FRAME_OUTPUTS, got, expected):
        diffs[name] = float((a - b).abs().max())
    return diffs
