"""A front member logged as an MLflow model: loadable, runs its graphs, registered with an honest name."""

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from tests.support.exported_graphs import TINY, tiny_teacher_graphs
from prunesearch.checkpoints import save_checkpoint
from prunesearch.export import OnnxTracker
from prunesearch.mlflow_log.tracker_model import STAND_IN_NOTE, TrackerModel, log_tracker_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")


def test_front_member_is_a_loadable_registered_model(tmp_path):
    import mlflow

    teacher, graphs = tiny_teacher_graphs()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("tiny", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(exp, run_name="B2-1 first")
    model = TrackerModel(
        experiment="tiny", candidate="B2-1/first", checkpoint=save_checkpoint(teacher, tmp_path / "model.pt"),
        template_onnx=graphs / "template.onnx", frame_onnx=graphs / "frame.onnx",
        template_size=TINY.template_size, search_size=TINY.search_size, stand_in=True, config={"embed_dim": 32},
    )
    before = mlflow.get_tracking_uri()
    model_uri = log_tracker_model(uri, run.info.run_id, model)
    assert mlflow.get_tracking_uri() == before  # MLFLOW_TRACKING_URI still decides for the rest of the process

    registered = client.get_registered_model("tiny.B2-1-first.stand-in")
    assert STAND_IN_NOTE in registered.description and registered.tags["stand_in"] == "true"
    (version,) = client.search_model_versions("name = 'tiny.B2-1-first.stand-in'")
    assert version.run_id == run.info.run_id

    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(uri):  # not left set: it would outrank MLFLOW_TRACKING_URI in later tests
        loaded = mlflow.pyfunc.load_model(model_uri)
    z = np.random.default_rng(0).standard_normal((1, 3, TINY.template_size, TINY.template_size)).astype(np.float32)
    x = np.random.default_rng(1).standard_normal((1, 3, TINY.search_size, TINY.search_size)).astype(np.float32)
    box = loaded.predict({"z": z, "x": x})["box"]
    expected = OnnxTracker.from_dir(graphs)(torch.from_numpy(z), torch.from_numpy(x)).box.numpy()
    assert box.shape == (1, 4) and np.allclose(box, expected, atol=1e-6)
    assert loaded.metadata.metadata["config"] == {"embed_dim": 32}


def test_a_full_scale_model_has_a_plain_name():
    model = TrackerModel("b4-b9", "B4-2/influence", *(None,) * 3, 128, 256, stand_in=False, config={})
    assert model.registered_name == "b4-b9.B4-2-influence" and "stand-in" not in model.description()
