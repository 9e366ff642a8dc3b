import json

import numpy as np
import pytest
import torch
from tests.support.exported_graphs import tiny_teacher_graphs
from tests.support.tiny_datasets import write_got10k, write_lasot

from prunesearch.data import open_dataset
from prunesearch.errors import PrunesearchError
from prunesearch.evaluation import (
    NeuralTracker,
    OnnxBackend,
    TorchBackend,
    available_baselines,
    evaluate,
    evaluate_baseline,
    run_sequence,
)
from prunesearch.evaluation.tracking_loop import clip_box, hann_window


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_model():
    return tiny_teacher_graphs()[0]


@pytest.fixture(scope="module")
def onnx_dir():
    return tiny_teacher_graphs()[1]


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_got10k(root / "got", "val", sequences=2, frames=4)
    write_lasot(root / "lasot", categories=("cat",), per_category=1, frames=4)
    return open_dataset(root / "got") + open_dataset(root / "lasot")


class PeakBackend:
    """A stand-in network with chosen maps, to check the loop's geometry exactly."""

    name = "peak"

    def __init__(self, score: np.ndarray, size=(0.25, 0.125), offset=(0.5, 0.25)) -> None:
        f = score.shape[0]
        self.template_size, self.search_size = 8 * f, 16 * f
        self.score = torch.tensor(score, dtype=torch.float32)[None, None]
        self.size = torch.tensor(size, dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, f, f)
        self.offset = torch.tensor(offset, dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, f, f)
        self.crops: list[tuple[int, ...]] = []

    def template(self, z):
        self.crops.append(tuple(z.shape))
        return None

    def frame(self, z_feat, x):
        self.crops.append(tuple(x.shape))
        return self.score, self.size, self.offset


def test_hann_window_is_symmetric_peaked_and_never_zero():
    w = hann_window(5)[0, 0]
    assert w.shape == (5, 5)
    assert torch.allclose(w, w.T) and torch.allclose(w, w.flip(0))
    assert w[2, 2] == w.max() == 1.0 and w.min() > 0


def test_box_maps_back_from_the_search_crop():
    score = np.full((4, 4), 0.1)
    score[1, 3] = 0.9
    backend = PeakBackend(score)
    tracker = NeuralTracker(backend)
    image = np.zeros((100, 200, 3), np.uint8)
    tracker.init(image, np.array([50.0, 30, 20, 20]))
    box = tracker.update(image)
    # Search window: side sqrt(20*20)*4 = 80 around (60, 40) -> x0 20, y0 0. Cell (3, 1) + offset
    # (0.5, 0.25) of 4 -> centre (0.875, 0.3125) * 80 = (70, 25); size (0.25, 0.125) * 80 = (20, 10).
    assert box == pytest.approx([20 + 70 - 10, 0 + 25 - 5, 20, 10])
    assert backend.crops == [(1, 3, 32, 32), (1, 3, 64, 64)]


def test_hann_window_prefers_the_centre_over_an_equal_peak():
    score = np.full((5, 5), 0.1)
    score[0, 0] = score[2, 2] = 0.9
    tracker = NeuralTracker(PeakBackend(score, offset=(0.5, 0.5)))
    image = np.zeros((200, 200, 3), np.uint8)
    tracker.init(image, np.array([90.0, 90, 20, 20]))
    box = tracker.update(image)
    assert box[0] + box[2] / 2 == pytest.approx(100.0)


def test_clip_box_cuts_to_the_image_and_keeps_a_minimum_size():
    assert clip_box(np.array([-5.0, 10, 20, 20]), 100, 50, 4).tolist() == [0, 10, 15, 20]
    assert clip_box(np.array([90.0, 40, 30, 30]), 100, 50, 4).tolist() == [90, 40, 10, 10]
    assert clip_box(np.array([150.0, 60, 5, 5]), 100, 50, 4).tolist() == [96, 46, 4, 4]
    assert clip_box(np.array([10.0, 10, 1, 0]), 100, 50, 4).tolist() == [8.5, 8, 4, 4]


def test_run_sequence_starts_from_the_first_box(tiny_model, sequences):
    seq = sequences[0]
    tracked = run_sequence(NeuralTracker(TorchBackend(tiny_model)), seq)
    assert tracked.boxes.shape == (len(seq), 4)
    assert tracked.boxes[0].tolist() == seq.boxes[0].tolist()
    assert (tracked.times > 0).all()
    assert tracked.image_size == (96, 72)
    x, y, w, h = tracked.boxes[1:].T
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= 96 + 1e-9).all() and (y + h <= 72 + 1e-9).all()


def test_onnx_graphs_track_like_the_pytorch_model(tiny_model, onnx_dir, sequences):
    torch_backend, onnx_backend = TorchBackend(tiny_model), OnnxBackend(onnx_dir / "template.onnx", onnx_dir / "frame.onnx")
    assert (onnx_backend.template_size, onnx_backend.search_size) == (32, 64)
    z = torch.randn(1, 3, 32, 32)
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(torch_backend.frame(torch_backend.template(z), x), onnx_backend.frame(onnx_backend.template(z), x)):
        assert torch.allclose(a, b, atol=1e-4)
    boxes_torch = run_sequence(NeuralTracker(torch_backend), sequences[0]).boxes
    boxes_onnx = run_sequence(NeuralTracker(onnx_backend), sequences[0]).boxes
    assert np.allclose(boxes_torch, boxes_onnx, atol=1e-2)


def test_onnx_graph_with_wrong_inputs_is_refused(onnx_dir):
    with pytest.raises(PrunesearchError, match="needs inputs"):
        OnnxBackend(onnx_dir / "frame.onnx", onnx_dir / "frame.onnx")
    with pytest.raises(PrunesearchError, match="does not exist"):
        OnnxBackend(onnx_dir / "nothing.onnx", onnx_dir / "frame.onnx")


def test_evaluate_scores_writes_got10k_layout_and_serialises(tiny_model, onnx_dir, sequences, tmp_path):
    result = evaluate(tiny_model, sequences, out_dir=tmp_path, name="tiny")
    assert result.name == "tiny" and result.scored == len(sequences) == 3
    for metric in ("ao", "sr50", "sr75", "auc", "precision", "norm_precision"):
        assert 0.0 <= getattr(result, metric) <= 1.0
    assert result.fps > 0 and result.frames == 12
    json.dumps(result.to_dict())
    seq = sequences[0]
    boxes = np.loadtxt(tmp_path / seq.name / f"{seq.name}_001.txt", delimiter=",")
    times = np.loadtxt(tmp_path / seq.name / f"{seq.name}_time.txt")
    assert boxes.shape == (len(seq), 4) and times.shape == (len(seq),)
    assert np.allclose(boxes, result.sequences[0].boxes, atol=5e-4)
    from_onnx = evaluate(onnx_dir, sequences)
    assert from_onnx.ao == pytest.approx(result.ao, abs=1e-3)


def test_mil_baseline_follows_the_moving_box(sequences):
    result = evaluate_baseline("mil", sequences)
    assert result.name == "opencv-mil"
    assert result.precision > 0.5


def test_unknown_baseline(sequences):
    with pytest.raises(PrunesearchError, match="unknown baseline 'foo'"):
        evaluate_baseline("foo", sequences)


def test_baseline_missing_from_this_opencv_says_what_to_install(sequences):
    if "kcf" in available_baselines():
        pytest.skip("this OpenCV has KCF")
    with pytest.raises(PrunesearchError, match="lacks .* opencv-contrib"):
        evaluate_baseline("kcf", sequences)


def test_model_in_training_mode_is_evaluated_in_eval_mode_and_handed_back(tiny_model, sequences):
    expected = evaluate(tiny_model, sequences[:1])
    tiny_model.train()
    try:
        result = evaluate(tiny_model, sequences[:1])
        assert tiny_model.training
    finally:
        tiny_model.eval()
    assert result.sequences[0].boxes.tolist() == expected.sequences[0].boxes.tolist()
