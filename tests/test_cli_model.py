import json

import onnx
import pytest

from prunesearch.checkpoints import save_checkpoint
from prunesearch.cli.main import main
from prunesearch.flops import model_macs
from prunesearch.pruning import student_from_teacher


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
    from prunesearch.data.synthetic import SynthParams, generate

    generate(tmp_path / "data", 3, seed=1, split="train", params=SynthParams(min_frames=8, max_frames=10))
    argv = ["inspect", "--preset", "small", "--depth", "4", "--ai-layers", "2", "--rule", "influence", "--json"]
    code, out, err = _run(capsys, *argv, "--data", str(tmp_path / "data"))
    assert code == 0, err
    blocks = json.loads(out)["blocks"]
    assert len(blocks) == 4 and blocks == sorted(set(blocks)) and max(blocks) < 12
    code, _, err = _run(capsys, "inspect", "--preset", "small", "--data", str(tmp_path / "data"))
    assert code == 2 and "--data gives --rule influence its calibration crops" in err


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
