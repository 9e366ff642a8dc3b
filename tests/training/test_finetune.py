import math

import pytest
import torch

from prunesearch.checkpoints import load_checkpoint
from prunesearch.data.got10k import read_got10k
from prunesearch.data.synthetic import SynthParams, generate
from prunesearch.models.vit_tracker import StudentSpec, TrackerConfig, build_teacher
from prunesearch.pruning import prune
from prunesearch.training import FinetuneConfig, finetune
from prunesearch.training.finetune import lr_factor, param_groups

TINY_CFG = TrackerConfig(embed_dim=32, num_heads=2, template_size=32, search_size=64, depth=3, head_channels=(16, 8))
TINY_DATA = SynthParams(width=96, height=72, min_frames=10, max_frames=12, min_size=12, max_size=20)


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    return read_got10k(generate(tmp_path_factory.mktemp("ft"), 2, seed=1, split="train", params=TINY_DATA))


def tiny_teacher(seed: int = 0):
    torch.manual_seed(seed)
    return build_teacher(TINY_CFG)


def config(**kw) -> FinetuneConfig:
    base = dict(steps=4, batch_size=4, log_every=2, warmup_steps=1, threads=1)
    base.update(kw)
    return FinetuneConfig(**base)


def test_runs_reports_and_saves(sequences, tmp_path):
    seen = []
    model = tiny_teacher()
    result = finetune(model, sequences, config(), callback=lambda s, m: seen.append((s, m)) and False,
                      checkpoint=tmp_path / "m.pt")
    assert result.status == "ok" and result.steps == 4 and result.seconds > 0
    assert [s for s, _ in seen] == [2, 4]
    assert {"loss", "focal", "giou", "l1", "iou", "lr", "step"} <= set(seen[0][1])
    assert result.losses == [m for _, m in seen] and math.isfinite(result.final_loss)
    assert not model.training
    reloaded = load_checkpoint(tmp_path / "m.pt")
    torch.testing.assert_close(reloaded.state_dict(), model.state_dict())


def test_deterministic_by_seed(sequences):
    a = finetune(tiny_teacher(), sequences, config(seed=3))
    b = finetune(tiny_teacher(), sequences, config(seed=3))
    assert [m["loss"] for m in a.losses] == [m["loss"] for m in b.losses]


def test_callback_stops_early(sequences):
    result = finetune(tiny_teacher(), sequences, config(steps=6), callback=lambda step, m: step >= 2)
    assert result.status == "stopped" and result.steps == 2 and len(result.losses) == 1


def test_diverged_run_writes_no_checkpoint(sequences, tmp_path):
    model = tiny_teacher()
    with torch.no_grad():
        model.box_head.conv3_size.weight.fill_(float("nan"))
    result = finetune(model, sequences, config(), checkpoint=tmp_path / "bad.pt")
    assert result.status == "diverged" and result.steps == 0 and "nan" in result.message
    assert not (tmp_path / "bad.pt").exists()


def test_student_with_distillation(sequences):
    teacher = tiny_teacher().eval()
    student = prune(teacher, StudentSpec(2, 1))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    result = finetune(student, sequences, config(distill_weight=1.0), teacher=teacher)
    assert result.status == "ok" and "distill" in result.losses[-1]
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in tiny_teacher().state_dict().items())


def test_backbone_learning_rate_multiplier():
    model = tiny_teacher()
    groups = param_groups(model, FinetuneConfig(lr=1e-3, backbone_lr_mult=0.1))
    head_ids = {id(p) for p in model.box_head.parameters()}
    assert {id(p) for p in groups[0]["params"]} == head_ids
    assert groups[0]["lr"] == 1e-3 and groups[1]["lr"] == pytest.approx(1e-4)
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))


def test_schedule_warms_up_then_decays():
    cfg = FinetuneConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(100, cfg) == pytest.approx(0.1)
    assert lr_factor(40, cfg) > lr_factor(70, cfg)


@pytest.mark.parametrize("change, message", [
    ({"steps": 0}, r"^finetune\.steps: expected a whole number >= 1, got 0$"),
    ({"lr": float("nan")}, r"^finetune\.lr: expected a finite number > 0, got nan$"),
    ({"batch_size": 2.5}, r"^finetune\.batch_size: expected a whole number from 1 to 4096, got 2\.5$"),
    ({"max_gap": True}, r"^finetune\.max_gap: expected a whole number >= 1, got True$"),
    ({"loader_workers": -1}, r"^finetune\.loader_workers: expected a whole number >= 0, got -1$"),
    ({"sampling": "random"}, r"^finetune\.sampling: expected one of auto, causal, nearby, got 'random'$"),
    ({"precision": "fp8"}, r"^finetune\.precision: expected one of auto, fp32, bf16, fp16, got 'fp8'$"),
])
def test_settings_built_in_code_are_checked_by_their_declared_rules(change, message):
    """One validation path: the rules declared with each field, in the words a settings file gets."""
    from prunesearch.errors import InputError

    with pytest.raises(InputError, match=message):
        FinetuneConfig(**change)
    assert FinetuneConfig(max_gap=None, loader_workers=0, threads=None).max_gap is None


def test_settings_are_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        FinetuneConfig().steps = 3  # type: ignore[misc]
    assert dataclasses.replace(FinetuneConfig(), steps=3).steps == 3
