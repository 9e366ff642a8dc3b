"""A front member as an MLflow model: its two ONNX graphs and PyTorch checkpoint, loadable with
``mlflow.pyfunc.load_model`` and registered under a name that says what it is.

The model runs the exported pair with onnxruntime: input ``z`` (template crop) and ``x`` (search
crop), normalised float32 [1, 3, S, S]; output ``box`` (normalised cx, cy, w, h). The checkpoint
travels beside the graphs for fine-tuning further or exporting again.

When the accuracy came from the small CPU stand-in, the weights are the stand-in's (small preset)
while the latency beside them is the deployment architecture's price. Such a model is registered
with ``stand-in`` in its name and says so in its tags and description: it checks the pipeline and
is not a model to deploy.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np

from prunesearch.mlflow_log.store import answered, client as store_client

STAND_IN_NOTE = (
    "stand-in weights, small preset: for checking the pipeline, not for deployment; train this "
    "candidate at ViT-B with --teacher/--data to deploy"
)


class TrackerPyfunc(mlflow.pyfunc.PythonModel):
    """Runs a template/frame ONNX pair; holds no session while pickled."""

    # Inputs are a dict of tensors, which MLflow's type-hint validation cannot express; the
    # signature comes from the input example instead.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:  # noqa: ANN001 - mlflow.pyfunc.PythonModelContext
        from prunesearch.export import OnnxTracker

        self.tracker = OnnxTracker(context.artifacts["template"], context.artifacts["frame"])

    def __getstate__(self) -> dict:
        return {}

    # Untyped on purpose: MLflow would read hints on predict as the model's signature.
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201, ARG002
        import torch

        out = self.tracker(torch.from_numpy(np.asarray(model_input["z"])), torch.from_numpy(np.asarray(model_input["x"])))
        return {"box": out.box.numpy()}


@dataclass(frozen=True)
class TrackerModel:
    """What to log of one front member."""

    experiment: str
    candidate: str  # the candidate key, e.g. B4-2/first
    checkpoint: Path
    template_onnx: Path
    frame_onnx: Path
    template_size: int
    search_size: int
    stand_in: bool
    config: dict

    @property
    def registered_name(self) -> str:
        """``<experiment>.<candidate>`` (``/`` becomes ``-``), with ``.stand-in`` for stand-in weights."""
        name = f"{self.experiment}.{self.candidate.replace('/', '-')}"
        return f"{name}.stand-in" if self.stand_in else name

    def description(self) -> str:
        what = f"{self.candidate} of search {self.experiment!r}: template.onnx, frame.onnx and model.pt."
        return f"{what} {STAND_IN_NOTE}." if self.stand_in else what


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's chatter while logging a model (progress bars, "Successfully registered", pickling
    warnings) kept off the search's terminal; errors still raise."""
    log = logging.getLogger("mlflow")
    level, bar = log.level, os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    log.setLevel(logging.ERROR)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)
        if bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = bar


def log_tracker_model(uri: str, run_id: str, model: TrackerModel) -> str:
    """Log ``model`` under ``run_id`` as an MLflow model and register it; returns the model URI.

    MLflow's fluent API logs models; its tracking URI is set for this call only (left set, it
    would outrank ``MLFLOW_TRACKING_URI`` for everything after in the process).
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with answered(uri), _quiet(), _use_tracking_uri(uri):
        return _log(uri, run_id, model)


def _log(uri: str, run_id: str, model: TrackerModel) -> str:
    example = {
        "z": np.zeros((1, 3, model.template_size, model.template_size), np.float32),
        "x": np.zeros((1, 3, model.search_size, model.search_size), np.float32),
    }
    tags = {"candidate": model.candidate, "stand_in": str(model.stand_in).lower()}
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name=model.candidate.replace("/", "-"),
            python_model=TrackerPyfunc(),
            artifacts={
                "template": str(model.template_onnx),
                "frame": str(model.frame_onnx),
                "checkpoint": str(model.checkpoint),
            },
            input_example=example,
            # Listed, not inferred: inference imports and scans the environment (slow, and not the point).
            pip_requirements=["prunesearch", "onnxruntime", "numpy"],
            registered_model_name=model.registered_name,
            tags=tags,
            metadata={"config": model.config, "note": STAND_IN_NOTE if model.stand_in else ""},
        )
    client = store_client(uri)
    client.update_registered_model(model.registered_name, description=model.description())
    for key, value in tags.items():
        client.set_registered_model_tag(model.registered_name, key, value)
    return info.model_uri
