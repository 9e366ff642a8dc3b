"""Latency table format, estimates and lookup: pure arithmetic on hand-made tables."""

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from prunesearch.errors import PrunesearchError
from prunesearch.flops import model_macs, part_macs
from prunesearch.latency import known_targets, load_table
from prunesearch.latency.derive import derive_measured, read_measured
from prunesearch.latency.parts import part_shapes
from prunesearch.latency.table import Entry, build_table, read_table
from prunesearch.models import get_preset
from prunesearch.models.names import student_name

SHIPPED = ("2080ti", "orin-nx", "orin-nx-torch", "xavier-nx", "xavier-nx-torch")
COSTS = {
    "fixed": 0.5,
    "search_embed": 1.0,
    "template_embed": 0.25,
    "search_block": 10.0,
    "interaction_block": 12.0,
    "template_block": 3.0,
    "joint_block": 15.0,
    "head": 4.0,
}
META = {
    "device": "test device",
    "runtime": "onnxruntime",
    "runtime_version": "0",
    "provider": "CPUExecutionProvider",
    "precision": "fp32",
    "method": "measured",
    "date": "2025-01-01",
}


def make_table(cfg, costs=COSTS, name="hand"):
    entries = [Entry(kind, shape, costs[kind]) for kind, shape in part_shapes(cfg).items()]
    return build_table(name, dict(META), cfg, entries, {})


@pytest.fixture
def table(small_cfg):
    return make_table(small_cfg)


def test_student_estimate_is_the_sum_of_its_parts(table):
    est = table.estimate(6, 2)
    assert est.name == "B6-2"
    assert est.per_frame_ms == pytest.approx(0.5 + 1.0 + 4 * 10.0 + 2 * 12.0 + 4.0)
    assert est.template_ms == pytest.approx(0.5 + 0.25 + 6 * 3.0)
    assert est.fps == pytest.approx(1000 / est.per_frame_ms)
    assert sum(est.parts.values()) == pytest.approx(est.per_frame_ms)


def test_teacher_and_speedup(table, small_cfg):
    teacher = table.estimate_teacher()
    assert teacher.per_frame_ms == pytest.approx(0.5 + 1.0 + small_cfg.depth * 15.0 + 4.0)
    assert teacher.template_ms == pytest.approx(0.5 + 0.25)
    assert teacher.speedup == pytest.approx(1.0)
    est = table.estimate(4, 2)
    assert est.speedup == pytest.approx(teacher.per_frame_ms / est.per_frame_ms)


def test_template_update_amortises_the_template_branch(table):
    every_10 = table.estimate(6, 2, template_update=10)
    plain = table.estimate(6, 2)
    assert every_10.per_frame_ms == plain.per_frame_ms
    assert every_10.amortised_ms == pytest.approx(plain.per_frame_ms + plain.template_ms / 10)
    assert every_10.fps == pytest.approx(1000 / every_10.amortised_ms)
    teacher = table.estimate_teacher(template_update=10)
    assert every_10.speedup == pytest.approx(teacher.amortised_ms / every_10.amortised_ms)


def test_macs_tables_and_fits_count_the_same_parts_for_every_student_of_a_12_block_teacher(tmp_path):
    """MAC counts, a table's estimates and the fit to whole-model figures all price models.phases.phase_parts."""
    cfg = get_preset("vit-b")
    assert cfg.depth == 12
    students = [(n, m) for n in range(1, 13) for m in range(1, n + 1)]
    in_macs = make_table(cfg, {"fixed": 0.0, **part_macs(cfg)})  # each entry: its part's MACs, so sums are exact
    teacher, counted = in_macs.estimate_teacher(), model_macs(cfg)
    assert (teacher.per_frame_ms, teacher.template_ms) == (counted.per_frame, counted.template)
    for n, m in students:
        est, counted = in_macs.estimate(n, m), model_macs(cfg, n, m)
        assert (est.per_frame_ms, est.template_ms) == (counted.per_frame, counted.template), student_name(n, m)

    # Figures exactly linear in the per-frame MACs: a fit tied to MACs finds every one, and its table prices them back.
    figures = {student_name(n, m): round(0.5 + 0.3 * model_macs(cfg, n, m).per_frame_gmacs, 6) for n, m in students}
    path = tmp_path / "linear.yaml"
    path.write_text(yaml.safe_dump({"device": "d", "runtime": "r", "precision": "fp32", "statistic": "mean", "models": figures}))
    fitted = derive_measured(read_measured(path), "linear")
    assert fitted.provenance["fit"]["fixed_ms"] == pytest.approx(0.5, abs=1e-5)
    assert fitted.provenance["fit"]["scale"] == pytest.approx(0.3, abs=1e-5)
    assert len(fitted.provenance["variants"]) == len(students)
    assert all(abs(r["residual_pct"]) < 0.01 and abs(r["loo_error_pct"]) < 0.01 for r in fitted.provenance["variants"])
    for n, m in students:
        assert fitted.estimate(n, m).per_frame_ms == pytest.approx(figures[student_name(n, m)], rel=1e-5)


@pytest.mark.parametrize("depth, ai", [(0, 1), (4, 0), (4, 5)])
def test_impossible_students_are_refused(table, depth, ai):
    with pytest.raises(PrunesearchError, match="no student"):
        table.estimate(depth, ai)


def test_template_update_must_be_positive(table):
    with pytest.raises(PrunesearchError, match="template-update"):
        table.estimate(4, 2, template_update=0)


def test_other_architecture_is_an_error_naming_missing_entries(table):
    vitb = get_preset("vit-b")
    assert table.missing(table.architecture) == []
    with pytest.raises(PrunesearchError) as err:
        table.check_covers(vitb)
    msg = str(err.value)
    assert "\n" not in msg
    assert "search_block(" in msg and "keys=256" in msg and "width=768" in msg
    assert "prunesearch profile" in msg
    with pytest.raises(PrunesearchError, match="missing"):
        table.estimate(4, 2, cfg=vitb)


def test_a_table_lacking_an_entry_of_its_own_architecture_is_refused(small_cfg):
    entries = [Entry(k, s, COSTS[k]) for k, s in part_shapes(small_cfg).items() if k != "head"]
    with pytest.raises(PrunesearchError, match=r"missing head\("):
        build_table("partial", dict(META), small_cfg, entries, {})


def test_save_and_read_round_trip(table, tmp_path):
    path = table.save(tmp_path / "t.yaml")
    again = read_table(path)
    assert again.costs() == table.costs()
    assert again.meta == table.meta
    assert again.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == table.sha256
    assert again.estimate(5, 3) == table.estimate(5, 3)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(format="other"), "not a prunesearch latency table"),
        (lambda d: d["meta"].pop("device"), "meta lacks device"),
        (lambda d: d["meta"].update(method="guessed"), "meta.method"),
        (lambda d: d["entries"][1].update(ms=-1), "non-negative"),
        (lambda d: d["entries"][1].update(kind="warp_block"), "needs a kind"),
        (lambda d: d["architecture"].update(colour="red"), "unknown tracker config keys"),
        (lambda d: d["entries"][1].update(ms=float("nan")), r"entry 1 \(search_embed\) needs a finite"),
        (lambda d: d["entries"][2].update(ms=float("inf")), r"entry 2 \(template_embed\) needs a finite"),
        (lambda d: d["entries"][3].update(ms="fast"), "needs a finite"),
        (lambda d: d["entries"][3].update(stats={"p50": float("nan")}), "'stats' must map"),
        (lambda d: d["entries"].append({**d["entries"][3], "ms": 0.1}), "entry 8 .* repeats entry 3"),
        (lambda d: d["architecture"].update(embed_dim="big"), "architecture.embed_dim must be a positive integer, got 'big'"),
        (lambda d: d["architecture"].update(head_channels=5), "architecture.head_channels must be a list of positive integers, got 5"),
        (lambda d: d["architecture"].update(mlp_ratio=True), "architecture.mlp_ratio must be a positive number"),
        (lambda d: d["architecture"].update(num_heads=5), "architecture: embed_dim 128 is not divisible"),
        (lambda d: d.update(calibration={"graph_ms": -1, "block_scale": 1, "other_scale": 1}), "calibration.graph_ms"),
    ],
)
def test_malformed_tables_give_one_line_errors(table, tmp_path, mutate, message):
    data = table.to_dict()
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PrunesearchError, match=message) as err:
        read_table(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_hand_edited_bad_table_is_one_line_from_the_cli(table, tmp_path, capsys):
    """As a user meets it: a nan entry ends the command with one line naming file and entry, not nan prices."""
    from prunesearch.cli.main import main

    data = table.to_dict()
    data["entries"][4]["ms"] = float("nan")
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["latency", "show", "--target", str(path)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "entry 4 (interaction_block)" in err and "nan" in err


def test_unreadable_files(tmp_path):
    with pytest.raises(PrunesearchError, match="does not exist"):
        load_table(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("entries: [unclosed\n")
    with pytest.raises(PrunesearchError, match="not valid YAML"):
        read_table(bad)


def test_shipped_targets_are_known_and_load():
    assert set(SHIPPED) <= set(known_targets())
    for name in SHIPPED:
        t = load_table(name)
        assert t.meta["method"] == "derived"
        t.check_covers(get_preset("vit-b"))


def test_local_tables_are_found_and_take_precedence(table, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table.save(Path("latency_models") / "mine.yaml")
    local = make_table(table.architecture, {**COSTS, "head": 99.0}, name="orin-nx")
    local.save(Path("latency_models") / "orin-nx.yaml")
    assert "mine" in known_targets() and set(SHIPPED) <= set(known_targets())
    assert load_table("mine").costs() == table.costs()
    assert load_table("orin-nx").costs()["head"] == 99.0
    assert load_table(os.path.join("latency_models", "mine.yaml")).name == "hand"


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(PrunesearchError) as err:
        load_table("jetson-nano")
    assert "orin-nx" in str(err.value) and "prunesearch profile --name jetson-nano" in str(err.value)
