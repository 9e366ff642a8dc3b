import torch

from prunesearch.checkpoints import read_file
from prunesearch.cli.main import main
from prunesearch.data.synthetic import SynthParams, generate, read_split
from prunesearch.models.vit_tracker import JointTracker
from prunesearch.teacher import SHIPPED_TEACHER, load_shipped_teacher, train_teacher

TINY_DATA = SynthParams(width=96, height=72, min_frames=10, max_frames=10, min_size=12, max_size=20)


def test_train_teacher_writes_fp16_small_preset(tmp_path):
    seqs = read_split(generate(tmp_path / "d", 1, seed=2, params=TINY_DATA))
    seen = []
    result = train_teacher(tmp_path / "t.pt", steps=2, sequences=seqs, save_every=1,
                           progress=lambda step, m: seen.append(step))
    assert result.status == "ok" and result.steps == 2
    payload = read_file(tmp_path / "t.pt")
    assert payload["kind"] == "joint" and payload["config"]["embed_dim"] == 128
    assert payload["extra"]["steps"] == 2 and payload["extra"]["recipe"]["batch_size"] == 16
    assert all(v.dtype == torch.float16 for v in payload["state_dict"].values() if v.is_floating_point())


def test_shipped_teacher_loads_and_is_small():
    assert SHIPPED_TEACHER.stat().st_size < 10 * 1024 * 1024
    teacher = load_shipped_teacher()
    assert isinstance(teacher, JointTracker) and not teacher.training
    assert all(p.dtype == torch.float32 for p in teacher.parameters())
    z = torch.zeros(1, 3, teacher.cfg.template_size, teacher.cfg.template_size)
    x = torch.zeros(1, 3, teacher.cfg.search_size, teacher.cfg.search_size)
    with torch.no_grad():
        assert torch.isfinite(teacher(z, x).box).all()


def test_cli_data_synth(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), "--sequences", "1", "--split", "val", "--seed", "3"]) == 0
    assert (tmp_path / "val" / "list.txt").read_text().split() == ["Synthetic_Val_000001"]
    assert "wrote 1 sequences" in capsys.readouterr().out
    assert main(["data", "synth", "--out", str(tmp_path), "--sequences", "1", "--split", "val"]) == 2
    assert "not empty" in capsys.readouterr().err
