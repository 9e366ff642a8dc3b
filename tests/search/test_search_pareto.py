"""Pareto fronts and the Pareto-aware successive-halving rule."""

from prunesearch.search.early_stop import RungTracker, rung_steps, should_stop, stop_reason
from prunesearch.search.experiment import EarlyStop
from prunesearch.search.pareto import pareto_front
from prunesearch.search.results import CandidateResult, front_for


def _front(points):
    return pareto_front(points, accuracy=lambda p: p[1], latency=lambda p: p[0])


def test_front_keeps_only_undominated_points_fastest_first():
    points = [(10, 0.60), (5, 0.50), (7, 0.50), (8, 0.70), (12, 0.65), (3, 0.40)]
    assert _front(points) == [(3, 0.40), (5, 0.50), (8, 0.70)]


def test_front_keeps_exact_ties_and_drops_equal_latency_losers():
    assert _front([(5, 0.5), (5, 0.5), (5, 0.4), (6, 0.5)]) == [(5, 0.5), (5, 0.5)]
    assert _front([]) == []


def _result(key, ao, ms):
    return CandidateResult(key, 4, 2, "first", {"ao": ao}, {"t": ms}, {"t": 1.0}, 10.0, 1.0, 1.0, "small")


def test_front_for_a_target_respects_an_optional_budget():
    results = [_result("a", 0.5, 4.0), _result("b", 0.6, 8.0), _result("c", 0.7, 12.0)]
    assert [r.key for r in front_for(results, "t")] == ["a", "b", "c"]
    assert [r.key for r in front_for(results, "t", budget_ms=10.0)] == ["a", "b"]
    assert front_for(results, "other") == []


def test_rungs_are_geometric_and_not_shorter_than_the_window():
    assert rung_steps(EarlyStop(reduction=3, rungs=2, window=10), 120) == [13, 40]
    assert rung_steps(EarlyStop(reduction=3, rungs=2, window=20), 120) == [40]
    assert rung_steps(EarlyStop(reduction=2, rungs=3, window=1), 8) == [1, 2, 4]


def test_stop_only_when_faster_peers_do_better():
    rule = EarlyStop(reduction=3)
    # Alone, or only slower peers: never stopped, however bad the loss.
    assert not should_stop(rule, 5.0, 9.0, [])
    assert not should_stop(rule, 5.0, 9.0, [(6.0, 0.1), (7.0, 0.2)])
    # One faster peer with a lower loss dominates it at the rung.
    assert should_stop(rule, 5.0, 0.5, [(4.0, 0.4)])
    assert stop_reason(rule, 5.0, 0.91, [(4.0, 0.62)], 70, 200) == "stopped at rung 70/200: loss 0.91 vs 0.62 of a no-slower peer"
    assert not should_stop(rule, 5.0, 0.3, [(4.0, 0.4)])
    # Among 5 (itself + 4 no-slower peers) the best ceil(5/3) = 2 go on.
    peers = [(4.0, 0.1), (5.0, 0.2), (3.0, 0.5), (2.0, 0.6)]
    assert not should_stop(rule, 5.0, 0.15, peers)
    assert should_stop(rule, 5.0, 0.25, peers)


def test_a_peer_within_the_margin_does_not_count_as_better():
    assert not should_stop(EarlyStop(margin=0.1), 5.0, 0.42, [(4.0, 0.4)])
    assert should_stop(EarlyStop(margin=0.0), 5.0, 0.42, [(4.0, 0.4)])


def test_rungs_are_reached_at_the_first_report_past_them_and_scored_over_the_window():
    tracker = RungTracker(EarlyStop(reduction=3, rungs=2, window=20), 120)
    assert tracker.pending == [40]
    assert tracker.add(10, 5.0) == [] and tracker.add(20, 4.0) == [] and tracker.add(30, 3.0) == []
    assert tracker.add(45, 1.0) == [40]
    assert tracker.score() == 2.0  # reports at steps 30 and 45 cover the last 20 steps
    assert tracker.add(50, 1.0) == []
