"""The Pareto plot cannot mislead: one accuracy scale per axis, every point labelled, budget and
teacher drawn, tied candidates drawn apart."""

import matplotlib.pyplot as plt
import pytest

from prunesearch.search.plot import ReferencePoint, pareto_figure, pareto_plot
from prunesearch.search.results import CandidateResult

PUBLISHED = [ReferencePoint("LiteTrack-B4-2", 0.652, 9.8), ReferencePoint("LiteTrack-B9-3", 0.725, 17.0)]


def _result(key, ao, ms, scale="small"):
    return CandidateResult(key, 4, 2, "first", {"ao": ao}, {"orin-nx": ms}, {"orin-nx": 1.0}, 10.0, 1.0, 1.0, scale)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _labels(ax):
    return {t.get_text() for t in ax.texts}


def test_stand_in_accuracy_never_shares_an_axis_with_published_figures():
    results = [_result("B4-1/first", 0.675, 9.2), _result("B4-2/first", 0.66, 9.75), _result("B4-2/uniform", 0.60, 9.75)]
    fig = pareto_figure(results, "orin-nx", budget_ms=10.0, reference=PUBLISHED, teacher_ms=18.5)
    search, published = fig.axes
    assert _labels(search) == {"B4-1/first", "B4-2/first", "B4-2/uniform"}  # dominated points labelled too
    assert _labels(published) == {"LiteTrack-B4-2", "LiteTrack-B9-3"}
    assert "own AO scale" in published.get_title() and "accuracy scale small" in search.get_title()
    legend = [t.get_text() for t in search.get_legend().get_texts()]
    assert "budget 10 ms" in legend and "teacher 18.50 ms" in legend and "dominated" in legend


def test_full_scale_accuracy_shares_the_axis_with_published_figures():
    results = [_result("B4-2/first", 0.64, 9.75, "full"), _result("B9-3/first", 0.70, 17.2, "full")]
    fig = pareto_figure(results, "orin-nx", reference=PUBLISHED)
    (ax,) = fig.axes
    assert {"LiteTrack-B4-2", "B9-3/first"} <= _labels(ax)
    assert "GOT-10k scale" in ax.get_ylabel()


def test_tied_candidates_are_drawn_apart_and_close_latencies_stay_apart():
    results = [_result("a", 0.60, 9.70), _result("b", 0.595, 9.72), _result("c", 0.40, 9.74)]
    fig = pareto_figure(results, "orin-nx", tied={"b"})
    (ax,) = fig.axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "tied with the front" in legend and "dominated" in legend
    low, high = ax.get_xlim()
    assert 9.0 < low < 9.70 and 9.74 < high < 10.5  # zoomed on the points, not on 0 .. 10


def test_plot_writes_a_png_into_an_existing_folder(tmp_path):
    path = pareto_plot([_result("a", 0.6, 9.7)], "orin-nx", tmp_path / "front.png", budget_ms=10.0)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
