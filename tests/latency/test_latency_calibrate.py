"""Calibration of the sum of parts: the fit on synthetic timings with a known answer, and how a
calibrated table prices, stores and warns."""

import pytest

from prunesearch.errors import PrunesearchError
from prunesearch.latency.calibrate import Calibration, WholeGraph, fit_calibration
from prunesearch.latency.parts import part_shapes
from prunesearch.latency.table import Entry, build_table, read_table

from test_latency_table import COSTS, META

TRUE = (0.3, 1.1, 0.9)  # graph_ms, block_scale, other_scale


def synthetic(noise=None):
    """Whole graphs that obey the model exactly (or with the given relative error per graph)."""
    shapes = [("teacher", 12.0, 2.0), ("B1-1", 1.0, 2.0), ("B4-2", 4.5, 2.1), ("B6-3", 6.0, 1.5), ("B9-3", 9.5, 2.5), ("B3-1", 3.0, 3.0)]
    out = []
    for i, (name, blocks, other) in enumerate(shapes):
        ms = TRUE[0] + TRUE[1] * blocks + TRUE[2] * other
        out.append(WholeGraph(name, blocks, other, ms * (1 + (noise[i] if noise else 0))))
    return out


def test_fit_recovers_a_known_correction_with_zero_leave_one_out_error():
    cal = fit_calibration(synthetic())
    assert (cal.graph_ms, cal.block_scale, cal.other_scale) == pytest.approx(TRUE, abs=1e-9)
    assert all(abs(g["loo_error_pct"]) < 1e-6 for g in cal.graphs)
    assert cal.loo_within_10pct == 1.0 and cal.trusted and cal.warning("t") is None
    teacher = cal.graphs[0]
    assert teacher["raw_error_pct"] == pytest.approx(100 * (14.0 - (0.3 + 13.2 + 1.8)) / 15.3, abs=1e-3)


def test_scales_stay_non_negative_and_noisy_graphs_warn():
    cal = fit_calibration(synthetic([0.3, -0.25, 0.2, -0.3, 0.25, -0.2]))
    assert min(cal.graph_ms, cal.block_scale, cal.other_scale) >= 0
    assert cal.loo_within_10pct < 0.9 and not cal.trusted
    line = cal.warning("eager")
    assert "'eager'" in line and "CUDA graphs" in line and "\n" not in line


def test_too_few_graphs_are_refused():
    with pytest.raises(PrunesearchError, match="at least 4 whole graphs"):
        fit_calibration(synthetic()[:3])


def test_calibrated_table_prices_the_corrected_sum_and_round_trips(small_cfg, tmp_path):
    entries = [Entry(k, s, COSTS[k]) for k, s in part_shapes(small_cfg).items()]
    cal = Calibration(0.3, 1.1, 0.9, ({"name": "x", "loo_error_pct": 1.0},))
    table = build_table("cal", dict(META), small_cfg, entries, {}, cal)
    est = table.estimate(6, 2)
    blocks, other = 4 * 10.0 + 2 * 12.0, 0.5 + 1.0 + 4.0
    assert est.raw_ms == pytest.approx(blocks + other)
    assert est.per_frame_ms == pytest.approx(0.3 + 1.1 * blocks + 0.9 * other)
    assert est.template_ms == pytest.approx(0.3 + 1.1 * 6 * 3.0 + 0.9 * (0.5 + 0.25))
    assert table.uncalibrated().estimate(6, 2).per_frame_ms == pytest.approx(blocks + other)
    again = read_table(table.save(tmp_path / "cal.yaml"))
    assert again.calibration.block_scale == pytest.approx(1.1)
    assert again.estimate(6, 2) == est


def test_show_and_the_search_pricer_warn_about_a_calibration_that_does_not_hold(small_cfg, tmp_path, capsys, monkeypatch):
    from prunesearch.cli.main import main
    from prunesearch.search.pricing import LatencyTablePricer

    entries = [Entry(k, s, COSTS[k]) for k, s in part_shapes(small_cfg).items()]
    cal = fit_calibration(synthetic([0.3, -0.25, 0.2, -0.3, 0.25, -0.2]))
    monkeypatch.chdir(tmp_path)
    build_table("eager", dict(META), small_cfg, entries, {}, cal).save(tmp_path / "latency_models" / "eager.yaml")
    capsys.readouterr()
    assert main(["latency", "show", "--target", "eager"]) == 0
    out, err = capsys.readouterr()
    assert "calibration:" in out and "leave-one-out" in out
    assert "warning: latency table 'eager' predicts only" in err and "CUDA graphs" in err
    assert LatencyTablePricer(("eager",), small_cfg).warnings() == [cal.warning("eager")]
