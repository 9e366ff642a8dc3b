"""Tables derived from published end-to-end figures: the fit, leave-one-out, and the shipped files."""

import math
import re

import pytest
import yaml

from prunesearch.errors import PrunesearchError
from prunesearch.flops import part_macs
from prunesearch.latency import load_table
from prunesearch.latency.derive import TARGETS, Variant, derive, read_published, recorded_figures, teacher_joint_blocks
from prunesearch.latency.parts import part_shapes
from prunesearch.latency.table import Entry, build_table
from prunesearch.models import get_preset

from tests.support.latency_support import ARCH, shipped_figures, write_published


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
    lacking = tmp_path / "lacking.yaml"
    lacking.write_text("architecture: {}\n")
    with pytest.raises(PrunesearchError) as err:
        read_published(lacking)
    assert "'variants' (NAME: {depth, ai_layers" in str(err.value) and "orin-nx-onnx" in str(err.value) and "\n" not in str(err.value)
    few = write_published(tmp_path / "few.yaml", {"B4-2": {"depth": 4, "ai_layers": 2, "fps": {"2080ti": 300}}})
    with pytest.raises(PrunesearchError, match="at least 3"):
        derive(read_published(few), "2080ti")
    with pytest.raises(PrunesearchError, match="unknown derived target"):
        derive(read_published(few), "pixel-7")


MEASURED = {
    "device": "my Jetson", "runtime": "onnxruntime", "provider": "TensorrtExecutionProvider", "precision": "fp16",
    "statistic": "p50", "unit": "ms",
}


def _tie_table(cfg):
    """A measured ViT-B table (as 'prunesearch profile' on another GPU would write) with known part costs."""
    costs = {"fixed": 0.2, "search_embed": 0.05, "template_embed": 0.02, "search_block": 0.06,
             "interaction_block": 0.08, "template_block": 0.02, "joint_block": 0.1, "head": 0.3}
    meta = {"device": "other GPU", "runtime": "onnxruntime", "runtime_version": "1", "provider": "CUDAExecutionProvider",
            "precision": "fp16", "method": "measured", "date": "2026-01-01"}
    return build_table("tie", meta, cfg, [Entry(k, s, costs[k]) for k, s in part_shapes(cfg).items()], {}), costs


def _write(tmp_path, data):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_derive_from_my_measurements_with_a_measured_tie_predicts_the_teacher(tmp_path, capsys):
    """Figures made on a device 3x slower than the tie plus 1 ms per run: four students give the teacher exactly."""
    from prunesearch.cli.main import main

    cfg = get_preset("vit-b")
    tie, c = _tie_table(cfg)
    tie_path = tie.save(tmp_path / "tie.yaml")

    def ms(n, m):
        units = c["search_embed"] + c["head"] + (12 if m is None else 0) * c["joint_block"]
        units += 0 if m is None else (n - m) * c["search_block"] + m * c["interaction_block"]
        return round(1.0 + 3.0 * units, 6)

    models = {"B4-2": ms(4, 2), "B6-3": ms(6, 3), "B9-3": ms(9, 3), "B8-1": ms(8, 1), "teacher": ms(12, None)}
    path = _write(tmp_path, {**MEASURED, "models": models})
    out = tmp_path / "tables"
    assert main(["latency", "derive", "--measured", str(path), "--name", "my-jetson", "--tie", str(tie_path),
                 "--out-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "my-jetson: tie: measured table 'tie'" in text and "leave-one-out" in text
    table = load_table(out / "my-jetson.yaml")
    assert table.meta["device"] == "my Jetson" and table.meta["statistic"] == "p50" and table.meta["method"] == "derived"
    teacher = next(r for r in table.provenance["variants"] if r["role"] == "teacher")
    assert abs(teacher["loo_error_pct"]) < 5  # the goal: the teacher from four students within 5%
    assert abs(teacher["loo_error_pct"]) < 1e-3  # exact here: the figures obey the tie
    assert table.estimate(4, 2).per_frame_ms == pytest.approx(models["B4-2"], rel=1e-5)
    assert "same runtime family" in table.provenance["tie_runtime"]
    assert all(abs(r["loo_error_pct"]) < 1e-3 for r in table.provenance["variants"])


def test_derive_from_fps_figures_without_a_tie_uses_macs(tmp_path):
    from prunesearch.latency.derive import derive_measured, read_measured

    path = _write(tmp_path, {**MEASURED, "unit": "fps", "models": {"B4-2": 100, "B6-3": 80, "B9-3": 60}})
    table = derive_measured(read_measured(path), "fps-dev")
    assert table.provenance["tie"].startswith("FLOPs")
    assert [r["published_ms"] for r in table.provenance["variants"]] == [10.0, 12.5, pytest.approx(16.6667, abs=1e-3)]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"models": {"B4-2": 8.0, "B6_3": 9.0, "B9-3": 11.0}}, r"models.B6_3 is not a model name: use B\{N\}-\{M\}"),
        ({"models": {"B4-2": 8.0, "B13-3": 9.0, "B9-3": 11.0}}, "models.B13-3 is not a model name"),
        ({"models": {"B4-2": 8.0, "B6-3": -9.0, "B9-3": 11.0}}, "models.B6-3 must be a positive number of ms per frame, got -9.0"),
        ({"statistic": None}, "missing 'statistic'; say which statistic"),
        ({"statistic": "median-ish"}, "statistic 'median-ish' is not one of them"),
        ({"unit": "s"}, "unit must be ms or fps"),
        ({"device": None}, "missing 'device'"),
        ({"models": {"B4-2": 8.0, "teacher": 12.0}}, "at least 3 are needed"),
    ],
)
def test_bad_measured_files_are_one_line(tmp_path, capsys, change, message):
    from prunesearch.cli.main import main

    data = {**MEASURED, "models": {"B4-2": 8.0, "B6-3": 9.0, "B9-3": 11.0}, **change}
    path = _write(tmp_path, {k: v for k, v in data.items() if v is not None})
    assert main(["latency", "derive", "--measured", str(path), "--name", "x", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    assert re.search(message, err), err


def test_measured_needs_a_name_and_a_measured_tie(tmp_path):
    from prunesearch.latency.derive import derive_measured, read_measured

    path = _write(tmp_path, {**MEASURED, "models": {"B4-2": 8.0, "B6-3": 9.0, "B9-3": 11.0}})
    with pytest.raises(PrunesearchError, match="must be a measured table"):
        derive_measured(read_measured(path), "x", load_table("orin-nx"))
