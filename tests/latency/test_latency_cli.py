"""The latency commands as a user runs them: show, list, derive, help and errors."""

import json
from pathlib import Path

import pytest

from prunesearch.cli.main import main
from prunesearch.latency import load_table
from prunesearch.latency.derive import TARGETS

from tests.support.latency_support import shipped_figures, write_published


def run_json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_show_prices_the_default_space_and_the_teacher(capsys):
    out = run_json(capsys, ["latency", "show", "--target", "orin-nx", "--json"])
    names = [c["name"] for c in out["candidates"]]
    assert len(names) == 78 and names[0] == "B1-1" and names[-1] == "B12-12"
    b42 = next(c for c in out["candidates"] if c["name"] == "B4-2")
    assert b42["fps"] == pytest.approx(101.98, rel=0.01)
    assert b42["speedup"] == pytest.approx(out["teacher"]["per_frame_ms"] / b42["per_frame_ms"])
    assert out["sha256"] == load_table("orin-nx").sha256
    assert out["meta"]["method"] == "derived"


def test_show_amortises_the_template_update(capsys):
    out = run_json(capsys, ["latency", "show", "--target", "2080ti", "--template-update", "5", "--json"])
    c = out["candidates"][10]
    assert c["template_update"] == 5
    assert c["amortised_ms"] == pytest.approx(c["per_frame_ms"] + c["template_ms"] / 5)
    assert c["fps"] == pytest.approx(1000 / c["amortised_ms"])


def test_show_table_output_mentions_fit(capsys):
    capsys.readouterr()
    assert main(["latency", "show", "--target", "xavier-nx"]) == 0
    text = capsys.readouterr().out
    assert "B4-2" in text and "teacher" in text and "leave-one-out" in text


def test_show_with_a_space_file(capsys, tmp_path):
    pytest.importorskip("prunesearch.search.space")
    space = tmp_path / "space.yaml"
    space.write_text("depth: {min: 4, max: 6}\nai_layers: {min: 1, max: 2}\nrules: [first]\n")
    out = run_json(capsys, ["latency", "show", "--target", "orin-nx", "--space", str(space), "--json"])
    assert [c["name"] for c in out["candidates"]] == ["B4-1", "B4-2", "B5-1", "B5-2", "B6-1", "B6-2"]


def test_list_shows_shipped_targets(capsys):
    rows = run_json(capsys, ["latency", "list", "--json"])
    assert set(TARGETS) <= {r["target"] for r in rows}


def test_derive_writes_one_table_per_target(capsys, tmp_path):
    published = write_published(tmp_path / "published.yaml", shipped_figures())
    out = run_json(capsys, ["latency", "derive", "--published", str(published), "--out-dir", str(tmp_path / "t"), "--json"])
    assert set(out) == set(TARGETS)
    for target in TARGETS:
        assert load_table(Path(out[target]["path"])).costs() == pytest.approx(load_table(target).costs(), rel=1e-5)
    one = run_json(capsys, ["latency", "derive", "--published", str(published), "--target", "orin-nx",
                            "--out-dir", str(tmp_path / "u"), "--json"])
    assert list(one) == ["orin-nx"]
    recorded = run_json(capsys, ["latency", "derive", "--target", "xavier-nx", "--out-dir", str(tmp_path / "v"), "--json"])
    assert recorded["xavier-nx"]["variants"] == load_table("xavier-nx").provenance["variants"]


def test_user_errors_are_one_line_with_exit_2(capsys):
    capsys.readouterr()
    assert main(["latency", "show", "--target", "jetson-nano"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prunesearch: error: unknown latency target") and "\n" not in err
    assert main(["profile", "--name", "x", "--provider", "CUDAExecutionProvider", "--out", "/nonexistent/x.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert "CUDAExecutionProvider is not available" in err and "\n" not in err


@pytest.mark.parametrize(
    "argv", [["latency"], ["latency", "list"], ["latency", "show"], ["latency", "validate"], ["latency", "derive"], ["profile"]]
)
def test_help_works(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    assert "usage: prunesearch" in capsys.readouterr().out
