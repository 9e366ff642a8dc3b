"""ONNX export of tracker graphs and of single parts, checked against onnxruntime.

One exporter setting for the whole project: the dynamo-based ``torch.onnx.export`` with all
weights inside the ``.onnx`` file (``external_data=False``), so one file is one graph.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

OPSET = 18


def export_module(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
) -> Path:
    """Export ``module(*args)`` to a single self-contained ONNX file at fixed (batch-1) shapes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    return path
