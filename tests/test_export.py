import json

import onnx
import pytest
import torch

from prunesearch import PrunesearchError
from prunesearch.export import ATOL, OnnxTracker, check_export, export_tracker, ort_session
from prunesearch.pruning import student_from_teacher


@pytest.fixture(scope="module")
def exported(small_teacher, tmp_path_factory):
    student = student_from_teacher(small_teacher, 4, 2, "uniform").eval()
    paths = export_tracker(student, tmp_path_factory.mktemp("onnx"), weights="test weights")
    return student, paths


def test_export_writes_the_two_graphs_with_fixed_names(exported):
    _, (template_path, frame_path) = exported
    assert (template_path.name, frame_path.name) == ("template.onnx", "frame.onnx")
    template, frame = onnx.load(template_path), onnx.load(frame_path)
    assert [i.name for i in template.graph.input] == ["z"]
    assert [o.name for o in template.graph.output] == ["z_feat"]
    assert [i.name for i in frame.graph.input] == ["z_feat", "x"]
    assert [o.name for o in frame.graph.output] == ["score_map", "size_map", "offset_map", "box"]


def test_graphs_say_what_they_are(exported):
    student, (template_path, frame_path) = exported
    for path, graph in ((template_path, "template"), (frame_path, "frame")):
        meta = {p.key: p.value for p in onnx.load(path).metadata_props}
        assert meta["prunesearch.graph"] == graph
        assert meta["prunesearch.model"] == "B4-2"
        assert meta["prunesearch.weights"] == "test weights"
        assert json.loads(meta["prunesearch.spec"])["blocks"] == list(student.spec.blocks)
        assert json.loads(meta["prunesearch.config"]) == student.cfg.to_dict()


def test_onnxruntime_agrees_with_pytorch(exported):
    student, paths = exported
    runner = OnnxTracker(*paths, threads=1)
    assert runner.metadata["prunesearch.model"] == "B4-2"
    for seed in (0, 1):
        diffs = check_export(student, runner, seed=seed)
        assert set(diffs) == {"z_feat", "score_map", "size_map", "offset_map", "box"}
        assert max(diffs.values()) <= ATOL, diffs


def test_onnx_pair_runs_the_two_phase_api(exported, crops):
    student, (template_path, _) = exported
    runner = OnnxTracker.from_dir(template_path.parent)
    z, x = crops[0][:1], crops[1][:1]
    with torch.no_grad():
        expected = student(z, x)
    got = runner(z, x)
    assert got.box.shape == (1, 4)
    assert torch.allclose(got.score_map, expected.score_map, atol=ATOL)


def test_unreadable_graph_is_a_user_error(tmp_path):
    (tmp_path / "frame.onnx").write_bytes(b"not onnx")
    with pytest.raises(PrunesearchError, match="onnxruntime cannot open"):
        ort_session(tmp_path / "frame.onnx")


def test_missing_onnxruntime_is_one_line(monkeypatch):
    import sys

    from prunesearch.errors import PrunesearchError
    from prunesearch.export import onnxruntime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(PrunesearchError, match=r"onnxruntime is not installed: install prunesearch with the cpu or the gpu extra"):
        onnxruntime()
