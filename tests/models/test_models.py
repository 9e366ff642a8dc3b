import pytest
import torch

from prunesearch import PrunesearchError, StudentSpec, choose_blocks, student_from_teacher
from prunesearch.models import decode_box


def test_teacher_shapes(small_teacher, small_cfg, crops):
    out = small_teacher(*crops)
    fs = small_cfg.feat_size
    assert out.score_map.shape == (2, 1, fs, fs)
    assert out.size_map.shape == (2, 2, fs, fs)
    assert out.offset_map.shape == (2, 2, fs, fs)
    assert out.box.shape == (2, 4)


def test_full_depth_first_student_has_teacher_blocks(small_teacher):
    student = student_from_teacher(small_teacher, small_teacher.depth, 3, "first")
    t, s = small_teacher.state_dict(), student.state_dict()
    assert t.keys() == s.keys()
    assert all(torch.equal(t[k], s[k]) for k in t)


def test_student_template_cache_matches_single_call(small_teacher, crops):
    student = student_from_teacher(small_teacher, 6, 2).eval()
    z, x = crops
    with torch.no_grad():
        cached = student.template(z)
        a = student.frame(cached, x)
        b = student(z, x)
    assert torch.equal(a.box, b.box)


def _reference_interaction(blk, x, z, heads):
    """Direct re-implementation: search queries over [template; search] keys/values."""
    c = x.shape[-1]
    hx, hz = blk.norm1(x), blk.norm1(z)
    w, bias = blk.attn.qkv.weight, blk.attn.qkv.bias
    q = hx @ w[:c].T + bias[:c]
    kv = torch.cat([hz, hx], 1)
    k = kv @ w[c : 2 * c].T + bias[c : 2 * c]
    v = kv @ w[2 * c :].T + bias[2 * c :]
    split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, c // heads).transpose(1, 2)
    att = (split(q) @ split(k).transpose(-1, -2) / (c // heads) ** 0.5).softmax(-1)
    o = (att @ split(v)).transpose(1, 2).reshape(x.shape)
    x = x + blk.attn.proj(o)
    return x + blk.mlp(blk.norm2(x))


def test_student_blocks_follow_async_schedule(small_teacher, small_cfg, crops):
    student = student_from_teacher(small_teacher, 5, 2).eval()
    z, x = crops
    with torch.no_grad():
        zt = student.embed_template(z)
        for blk in student.blocks:
            zt = blk(zt)
        assert torch.allclose(student.template(z), zt)
        xs = student.embed_search(x)
        for i, blk in enumerate(student.blocks):
            xs = blk(xs) if i < 3 else _reference_interaction(blk, xs, zt, small_cfg.num_heads)
        expected = student.box_head(student.norm(xs))
        got = student.frame(zt, x)
    assert torch.allclose(got.score_map, expected.score_map, atol=1e-5)


def test_choose_blocks_rules():
    assert choose_blocks(12, 4, "first") == (0, 1, 2, 3)
    assert choose_blocks(12, 4, "uniform") == (0, 4, 7, 11)
    infl = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.0, 0.6, 0.05, 0.5, 0.01, 0.4]
    assert choose_blocks(12, 3, "influence", infl) == (1, 3, 5)
    assert choose_blocks(12, 2, [2, 7]) == (2, 7)
    with pytest.raises(PrunesearchError):
        choose_blocks(12, 2, [7, 2])
    with pytest.raises(PrunesearchError):
        choose_blocks(12, 13, "first")


def test_influence_rule_measures_teacher(small_teacher, crops):
    student = student_from_teacher(small_teacher, 4, 2, "influence", calibration=crops)
    assert student.spec.rule == "influence"
    assert len(student.spec.blocks) == 4


def test_spec_validation():
    with pytest.raises(PrunesearchError):
        StudentSpec(4, 5)
    assert StudentSpec(9, 3).name == "B9-3"


def test_decode_box_argmax_plus_offset():
    score = torch.zeros(1, 1, 4, 4)
    score[0, 0, 2, 1] = 1.0
    size = torch.full((1, 2, 4, 4), 0.25)
    offset = torch.full((1, 2, 4, 4), 0.5)
    box = decode_box(score, size, offset)
    assert torch.allclose(box, torch.tensor([[1.5 / 4, 2.5 / 4, 0.25, 0.25]]))
