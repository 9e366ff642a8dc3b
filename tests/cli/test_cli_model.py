import json

import onnx
import pytest

from tests.support.tiny_models import OSTRACK_384_CROP, TINY_CFG

from prunesearch.checkpoints import save_checkpoint
from prunesearch.cli.main import main
from prunesearch.data import open_dataset
from prunesearch.data.processing import CropGeometry
from prunesearch.data.synthetic import SynthParams, generate
from prunesearch.flops import model_macs
from prunesearch.models import build_teacher
from prunesearch.pruning import (
    CALIBRATION_PAIRS,
    BlockRule,
    block_influence,
    block_rule,
    calibration_batch,
    register_rule,
    student_from_teacher,
    unregister_rule,
)


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["inspect", "export"])
def test_help(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "--depth" in capsys.readouterr().out


def test_inspect_influence_measures_on_calibration_crops(capsys, tmp_path):
    """The search's calibration crops, from a dataset folder (--data) or the built-in sequences."""
    generate(tmp_path / "data", 3, seed=1, split="train", params=SynthParams(min_frames=8, max_frames=10))
    argv = ["inspect", "--preset", "small", "--depth", "4", "--ai-layers", "2", "--rule", "influence", "--json"]
    code, out, err = _run(capsys, *argv, "--data", str(tmp_path / "data"))
    assert code == 0, err
    blocks = json.loads(out)["blocks"]
    assert len(blocks) == 4 and blocks == sorted(set(blocks)) and max(blocks) < 12
    code, _, err = _run(capsys, "inspect", "--preset", "small", "--data", str(tmp_path / "data"))
    assert code == 2 and "--data gives --rule influence its calibration crops" in err


class _Recording(BlockRule):
    """A measuring rule that keeps the influence it is handed (and the first blocks)."""

    name = "recording"
    needs_calibration = True

    def __init__(self):
        self.seen = []

    def choose(self, teacher_depth, depth, influence):
        self.seen.append(list(influence))
        return tuple(range(depth))


@pytest.fixture
def recording():
    register_rule(_Recording)
    yield block_rule("recording")
    unregister_rule("recording")


def test_inspect_a_checkpoint_calibrates_with_the_checkpoints_crop_geometry(capsys, tmp_path, recording):
    """OSTrack-384 tracks with search factor 5; influence measured at the default 4 would rank other crops."""
    teacher = build_teacher(TINY_CFG).eval()
    ckpt = save_checkpoint(teacher, tmp_path / "t.pt", crop=OSTRACK_384_CROP)
    params = SynthParams(width=96, height=72, min_frames=8, max_frames=10, min_size=12, max_size=20)
    generate(tmp_path / "data", 3, seed=1, split="train", params=params)
    argv = ["inspect", "--checkpoint", str(ckpt), "--depth", "2", "--ai-layers", "1", "--rule", "recording", "--json"]
    code, out, err = _run(capsys, *argv, "--no-fvcore", "--data", str(tmp_path / "data"))
    assert code == 0, err
    assert json.loads(out)["blocks"] == [0, 1]
    train = open_dataset(tmp_path / "data", split="train")

    def influence(crop):
        return block_influence(teacher, *calibration_batch(teacher, train, CALIBRATION_PAIRS, crop))

    assert recording.seen == [pytest.approx(influence(OSTRACK_384_CROP), rel=1e-6)]
    assert influence(CropGeometry()) != pytest.approx(influence(OSTRACK_384_CROP), rel=1e-3)


def test_rule_choices_and_errors_come_from_the_registry(capsys, recording):
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    assert "first, uniform, influence, recording" in " ".join(capsys.readouterr().out.split())
    code, _, err = _run(capsys, "inspect", "--depth", "4", "--ai-layers", "2", "--rule", "best")
    assert code == 2 and err.count("\n") == 1
    assert "--rule 'best': use one of first, uniform, influence, recording, or a comma list" in err


def test_inspect_json_reports_costs_tokens_and_blocks(capsys, small_cfg):
    code, out, _ = _run(capsys, "inspect", "--preset", "small", "--depth", "4", "--ai-layers", "2", "--rule", "uniform", "--json")
    assert code == 0
    info = json.loads(out)
    analytic = model_macs(small_cfg, 4, 2)
    assert info["model"] == "B4-2" and info["architecture"] == "small"
    assert info["blocks"] == [0, 4, 7, 11]
    assert info["per_frame_gmacs"] == analytic.per_frame_gmacs
    assert info["template_gmacs"] == analytic.template_gmacs
    assert abs(info["per_frame_gmacs_fvcore"] / info["per_frame_gmacs"] - 1) < 0.01
    assert (info["template_tokens"], info["search_tokens"], info["interaction_kv_tokens"]) == (16, 64, 80)
    assert info["params_m"] > info["per_frame_params_m"] > info["template_params_m"]


def test_inspect_table(capsys, small_cfg):
    code, out, _ = _run(capsys, "inspect", "--preset", "small", "--no-fvcore")
    assert code == 0
    assert "teacher (small, weights: random)" in out
    assert f"{model_macs(small_cfg).per_frame_gmacs:.3f}" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["inspect", "--depth", "9"], "needs --ai-layers"),
        (["inspect", "--ai-layers", "3"], "needs --depth"),
        (["inspect", "--preset", "small", "--depth", "13", "--ai-layers", "3"], "between 1 and the teacher's 12"),
        (["inspect", "--depth", "4", "--ai-layers", "2", "--rule", "0,x"], "--rule"),
        (["inspect", "--preset", "small", "--depth", "2", "--ai-layers", "1", "--rule", "3,1"], "increasing indices"),
        (["inspect", "--checkpoint", "absent.pt"], "does not exist"),
        (["inspect", "--checkpoint", "absent.pt", "--preset", "small"], "not both"),
        (["inspect", "--heads", "4"], "--heads only applies"),
    ],
)
def test_bad_input_is_one_line(capsys, argv, message):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("prunesearch: error:") and message in err


def test_inspect_a_checkpoint(capsys, tmp_path, small_teacher):
    ckpt = save_checkpoint(student_from_teacher(small_teacher, 3, 1, [1, 5, 9]), tmp_path / "b3-1.pt")
    code, out, _ = _run(capsys, "inspect", "--checkpoint", str(ckpt), "--json", "--no-fvcore")
    assert code == 0
    info = json.loads(out)
    assert (info["model"], info["weights"], info["blocks"]) == ("B3-1", str(ckpt), [1, 5, 9])


def test_export_with_random_weights_says_so_and_checks(capsys, tmp_path):
    argv = ["export", "--preset", "small", "--depth", "2", "--ai-layers", "1", "--out", str(tmp_path), "--check"]
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    assert "weights are random" in out and "max abs diff" in out and "check passed: every output within 0.0001" in out
    meta = {p.key: p.value for p in onnx.load(tmp_path / "frame.onnx").metadata_props}
    assert (meta["prunesearch.model"], meta["prunesearch.weights"]) == ("B2-1", "random")
    assert (tmp_path / "template.onnx").is_file()
