"""Tables derived from published end-to-end figures: the fit, leave-one-out, and the shipped files."""

import math

import pytest
import yaml

from prunesearch.errors import PrunesearchError
from prunesearch.flops import part_macs
from prunesearch.latency import load_table
from prunesearch.latency.derive import TARGETS, Variant, derive, read_published, recorded_figures, teacher_joint_blocks
from prunesearch.latency.parts import part_shapes
from prunesearch.latency.table import Entry, build_table
from prunesearch.models import get_preset

from latency_support import ARCH, shipped_figures, write_published


def test_shipped_tables_are_reproduced_from_their_recorded_figures():
    published = recorded_figures([load_table(t) for t in TARGETS])
    for target in TARGETS:
        shipped, again = load_table(target), derive(published, target)
        assert again.costs() == pytest.approx(shipped.costs(), rel=1e-5)
        assert again.provenance == shipped.provenance
        assert again.meta | {"date": None} == shipped.meta | {"date": None}


def test_a_published_file_gives_the_same_fit(tmp_path):
    published = read_published(write_published(tmp_path / "p.yaml", shipped_figures()))
    assert published.source == "Source: a test"
    for target in TARGETS:
        assert derive(published, target).provenance["variants"] == load_table(target).provenance["variants"]


def test_b4_2_on_orin_nx_matches_the_headline_figure():
    assert load_table("orin-nx").estimate(4, 2).fps == pytest.approx(101.98, rel=0.01)


def test_shipped_tables_record_fit_and_leave_one_out():
    for target in TARGETS:
        prov = load_table(target).provenance
        assert prov["tie"].startswith("FLOPs")
        assert prov["source"]["column"] == TARGETS[target].column
        names = [r["name"] for r in prov["variants"]]
        assert "LiteTrack-B4-2" in names and "OSTrack-256-CE" in names
        for row in prov["variants"]:
            assert {"residual_pct", "loo_error_pct", "published_fps"} <= set(row)
        assert prov["max_abs_loo_error_pct"] == max(abs(r["loo_error_pct"]) for r in prov["variants"])
        assert prov["students_max_abs_loo_error_pct"] <= 10


def test_fit_recovers_an_exact_linear_device(tmp_path):
    """Figures made by a known fixed cost and ms-per-GMAC are fitted back exactly, leave-one-out too."""
    cfg = get_preset("vit-b")
    g = {k: v / 1e9 for k, v in part_macs(cfg).items()}
    fixed, scale = 2.0, 0.5

    def fps(n, m):
        gmacs = g["search_embed"] + (n - m) * g["search_block"] + m * g["interaction_block"] + g["head"]
        return 1000 / (fixed + scale * gmacs)

    variants = {f"B{n}-{m}": {"depth": n, "ai_layers": m, "fps": {"2080ti": fps(n, m)}} for n, m in [(9, 3), (8, 3), (6, 3), (4, 2)]}
    table = derive(read_published(write_published(tmp_path / "p.yaml", variants)), "2080ti")
    assert table.provenance["fit"]["fixed_ms"] == pytest.approx(fixed, rel=1e-6)
    assert table.provenance["fit"]["scale"] == pytest.approx(scale, rel=1e-6)
    for row in table.provenance["variants"]:
        assert abs(row["loo_error_pct"]) < 1e-3
    assert table.costs()["template_block"] == pytest.approx(scale * g["template_block"])
    assert table.estimate(7, 2).per_frame_ms == pytest.approx(1000 / fps(7, 2))
    # no teacher row: joint blocks fall back to the students' scale
    assert table.costs()["joint_block"] == pytest.approx(scale * g["joint_block"])


def test_candidate_elimination_token_schedule():
    cfg = get_preset("vit-b")
    c, d = cfg.embed_dim, cfg.mlp_dim
    # 256 search tokens, cut to ceil(0.7 n) after the attention of blocks 3, 6 and 9
    attn_tokens = [256, 256, 256, 256, 180, 180, 180, 126, 126, 126, 89, 89]
    mlp_tokens = [256, 256, 256, 180, 180, 180, 126, 126, 126, 89, 89, 89]
    macs = sum((64 + a) * c * c * 4 + 2 * (64 + a) ** 2 * c + (64 + m) * c * d * 2 for a, m in zip(attn_tokens, mlp_tokens))
    ce = Variant("OSTrack-256-CE", 12, None, {})
    assert teacher_joint_blocks(cfg, ce) == pytest.approx(macs / part_macs(cfg)["joint_block"])
    assert teacher_joint_blocks(cfg, Variant("OSTrack-256", 12, None, {})) == 12
    assert math.ceil(0.7 * 256) == 180


def test_teacher_row_sets_the_joint_scale_and_its_leave_one_out_uses_the_tie():
    table = load_table("orin-nx")
    fit = table.provenance["fit"]
    teacher = next(r for r in table.provenance["variants"] if r["role"] == "teacher")
    assert teacher["fitted_ms"] == pytest.approx(teacher["published_ms"], rel=1e-4)
    cfg = table.architecture
    g = {k: v / 1e9 for k, v in part_macs(cfg).items()}
    ce_blocks = teacher_joint_blocks(cfg, Variant("OSTrack-256-CE", 12, None, {}))
    tied = fit["fixed_ms"] + fit["scale"] * (g["search_embed"] + g["head"] + ce_blocks * g["joint_block"])
    assert teacher["loo_ms"] == pytest.approx(tied, rel=1e-4)
    # the tool's teacher is the plain 12-block model
    plain = table.estimate_teacher().per_frame_ms
    assert plain == pytest.approx(sum(table.costs()[k] for k in ("fixed", "search_embed", "head")) + 12 * table.costs()["joint_block"])


def test_tie_to_a_measured_table_copies_its_ratios(tmp_path):
    cfg = get_preset("vit-b")
    costs = {"fixed": 1.0, "search_embed": 2.0, "template_embed": 1.0, "search_block": 50.0,
             "interaction_block": 60.0, "template_block": 20.0, "joint_block": 70.0, "head": 40.0}
    meta = {"device": "cpu", "runtime": "onnxruntime", "runtime_version": "0", "provider": "CPUExecutionProvider",
            "precision": "fp32", "method": "measured", "date": "2025-01-01"}
    tie = build_table("cpu", meta, cfg, [Entry(k, s, costs[k]) for k, s in part_shapes(cfg).items()], {})
    published = read_published(write_published(tmp_path / "p.yaml", shipped_figures()))
    table = derive(published, "orin-nx", tie)
    got = table.costs()
    assert got["interaction_block"] / got["search_block"] == pytest.approx(60 / 50)
    assert got["template_block"] / got["search_block"] == pytest.approx(20 / 50)
    assert "measured table 'cpu'" in table.provenance["tie"]


def test_bad_published_files(tmp_path):
    with pytest.raises(PrunesearchError, match="cannot read"):
        read_published(tmp_path / "none.yaml")
    bad = tmp_path / "arch.yaml"
    bad.write_text(yaml.safe_dump({"architecture": {**ARCH, "embed_dim": 384}, "variants": {}}))
    with pytest.raises(PrunesearchError, match="embed_dim"):
        read_published(bad)
    few = write_published(tmp_path / "few.yaml", {"B4-2": {"depth": 4, "ai_layers": 2, "fps": {"2080ti": 300}}})
    with pytest.raises(PrunesearchError, match="at least 3"):
        derive(read_published(few), "2080ti")
    with pytest.raises(PrunesearchError, match="unknown derived target"):
        derive(read_published(few), "pixel-7")
