import pytest
import torch

from prunesearch.flops import fvcore_count, fvcore_macs, model_macs, part_macs, phase_params, sdpa_macs
from prunesearch.models import StudentSpec, build_student, count_params, get_preset
from prunesearch.models.vit_tracker import Block, CenterHead, PatchEmbed
from prunesearch.pruning import student_from_teacher


def _close(a: int, b: int, rel: float = 0.01) -> bool:
    return abs(a - b) <= rel * b


def test_sdpa_handle_counts_both_attention_products():
    q, k, v = torch.randn(3, 2, 5, 8), torch.randn(3, 2, 7, 8), torch.randn(3, 2, 7, 4)

    class Sdpa(torch.nn.Module):
        def forward(self, q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    assert fvcore_count(Sdpa(), (q, k, v)) == 3 * 2 * 5 * 7 * (8 + 4)


def test_each_part_agrees_with_fvcore(small_cfg):
    """The analytic part counts that latency tables and the search use, against fvcore."""
    cfg = small_cfg
    c, nz, nx = cfg.embed_dim, cfg.template_tokens, cfg.search_tokens
    block = Block(cfg)
    z_tok, x_tok = torch.randn(1, nz, c), torch.randn(1, nx, c)
    counted = {
        "search_embed": fvcore_count(PatchEmbed(cfg), (torch.randn(1, 3, cfg.search_size, cfg.search_size),)),
        "template_embed": fvcore_count(PatchEmbed(cfg), (torch.randn(1, 3, cfg.template_size, cfg.template_size),)),
        "search_block": fvcore_count(block, (x_tok,)),
        "interaction_block": fvcore_count(block, (x_tok, z_tok)),
        "template_block": fvcore_count(block, (z_tok,)),
        "joint_block": fvcore_count(block, (torch.cat([z_tok, x_tok], 1),)),
        "head": fvcore_count(CenterHead(cfg), (x_tok,)),
    }
    analytic = part_macs(cfg)
    assert counted.keys() == analytic.keys()
    for kind, macs in analytic.items():
        assert _close(counted[kind], macs), (kind, counted[kind], macs)


def test_whole_models_agree_with_fvcore_per_phase(small_teacher):
    cfg = small_teacher.cfg
    student = student_from_teacher(small_teacher, 6, 2)
    for model, (depth, ai) in ((small_teacher, (None, None)), (student, (6, 2))):
        counted, analytic = fvcore_macs(model), model_macs(cfg, depth, ai)
        assert _close(counted.per_frame, analytic.per_frame)
        assert _close(counted.template, analytic.template)


def test_vit_b_figures():
    """The issue's reference figures: B9-3 about 19.5 GMACs per frame, the teacher about 31."""
    cfg = get_preset("vit-b")
    b93, teacher = model_macs(cfg, 9, 3), model_macs(cfg)
    assert abs(b93.per_frame_gmacs / 19.5 - 1) < 0.02
    assert abs(teacher.per_frame_gmacs / 31 - 1) < 0.02
    assert teacher.template_gmacs < 0.05 < b93.template_gmacs


def test_vit_b_student_agrees_with_fvcore():
    cfg = get_preset("vit-b")
    counted = fvcore_macs(build_student(cfg, StudentSpec(9, 3)))
    analytic = model_macs(cfg, 9, 3)
    assert _close(counted.per_frame, analytic.per_frame) and _close(counted.template, analytic.template)


@pytest.mark.parametrize("depth", [None, 4])
def test_phase_params_split(small_teacher, depth):
    model = small_teacher if depth is None else student_from_teacher(small_teacher, depth, 2)
    p = phase_params(model)
    assert p.total == count_params(model)
    # Only the template position table is never read per frame.
    assert p.total - p.per_frame == model.pos_embed_z.numel()
    blocks = count_params(model.blocks)
    assert p.template == count_params(model.patch_embed) + model.pos_embed_z.numel() + (blocks if depth else 0)
