import json
import re
import sys

import pytest
import torch
from tests.support.exported_graphs import TINY, tiny_teacher_graphs
from tests.support.tiny_datasets import write_got10k

import prunesearch.teacher
from prunesearch.checkpoints import save_checkpoint
from prunesearch.cli import main
from prunesearch.models import build_teacher, get_preset
from prunesearch.pruning import student_from_teacher


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_got10k(root / "got", "val", sequences=2, frames=3)
    write_got10k(root / "got", "test", sequences=1, frames=3)
    torch.manual_seed(0)
    save_checkpoint(build_teacher(get_preset("small")), root / "small_teacher.pt")
    save_checkpoint(student_from_teacher(build_teacher(TINY), 2, 1), root / "b2-1.pt")
    return root


def run_json(capsys, *argv):
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_checkpoint_json_and_got10k_results(files, capsys, tmp_path):
    report = run_json(capsys, "--checkpoint", str(files / "b2-1.pt"), "--data", str(files / "got"), "--out", str(tmp_path))
    assert report["model"] == {"source": str(files / "b2-1.pt"), "runtime": "pytorch", "kind": "async", "preset": "custom",
                               "crop": {"template_factor": 2.0, "search_factor": 4.0}}
    (result,) = report["results"]
    assert result["name"] == "B2-1" and result["sequences_scored"] == 2 and result["frames"] == 6
    assert 0 <= result["ao"] <= 1 and len(result["per_sequence"]) == 2
    ci = result["ci"]["ao"]
    assert ci["low"] <= result["ao"] <= ci["high"] and ci["level"] == 0.95 and ci["value"] == result["ao"]
    assert set(result["ci"]) == {"ao", "sr50", "sr75", "auc"} and report["bootstrap"]["unit"] == "sequence"
    seq = "GOT-10k_Val_000001"
    assert (tmp_path / "B2-1" / seq / f"{seq}_001.txt").read_text().count("\n") == 3
    assert (tmp_path / "B2-1" / seq / f"{seq}_time.txt").is_file()
    assert json.loads((tmp_path / "B2-1.json").read_text())["results"][0]["name"] == "B2-1"


def test_eval_table_with_mil_baseline(files, capsys):
    assert main(["eval", "--checkpoint", str(files / "b2-1.pt"), "--data", str(files / "got"), "--baselines", "mil"]) == 0
    out = capsys.readouterr().out
    assert "B2-1" in out and "opencv-mil" in out and "AO" in out and "results written" not in out
    assert "95% bootstrap interval over sequences" in out and re.search(r"\d+\.\d-\d+\.\d", out)


def test_eval_test_split_is_tracked_not_scored(files, capsys):
    report = run_json(capsys, "--checkpoint", str(files / "b2-1.pt"), "--data", str(files / "got"), "--split", "test")
    (result,) = report["results"]
    assert result["sequences_scored"] == 0 and result["ao"] is None and result["frames"] == 3
    assert result["ci"] == {}


def test_eval_defaults_to_the_shipped_teacher(files, capsys, monkeypatch):
    monkeypatch.setattr(prunesearch.teacher, "SHIPPED_TEACHER", files / "small_teacher.pt")
    report = run_json(capsys, "--data", str(files / "got"), "--sequences", "1")
    assert report["results"][0]["name"] == "teacher" and report["sequences"] == 1
    assert report["model"]["source"] == "shipped teacher small_teacher.pt"
    assert report["model"]["preset"] == "small" and report["small_stand_in"] is True


def test_eval_onnx_graphs(files, capsys):
    report = run_json(capsys, "--onnx", str(tiny_teacher_graphs()[1]), "--data", str(files / "got"))
    assert report["model"]["runtime"] == "onnxruntime" and report["results"][0]["sequences_scored"] == 2
    assert report["small_stand_in"] is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "{root}/nowhere"], "does not exist"),
        (["--data", "{root}"], "neither GOT-10k"),
        (["--data", "{root}/got", "--split", "train"], "split 'train' not found"),
        (["--data", "{root}/got", "--baselines", "nope"], "unknown baseline 'nope'"),
        (["--data", "{root}/got", "--level", "95"], "--level must lie strictly between 0 and 1"),
        (["--data", "{root}/got", "--resamples", "0"], "--resamples must be at least 1"),
        (["--checkpoint", "{root}/missing.pt", "--data", "{root}/got"], "does not exist"),
    ],
)
def test_eval_user_errors_are_one_line(files, capsys, argv, message):
    argv = [a.format(root=files) for a in argv]
    if "--checkpoint" not in argv:
        argv = ["--checkpoint", str(files / "b2-1.pt"), *argv]
    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_eval_without_data_needs_the_builtin_sequences(files, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "prunesearch.data.synthetic", None)
    assert main(["eval", "--checkpoint", str(files / "b2-1.pt")]) == 2
    assert "pass --data DIR" in capsys.readouterr().err


def test_eval_help():
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--help"])
    assert exit_info.value.code == 0
