"""Bootstrap intervals and paired comparisons against cases with a known answer, and tie marking."""

import numpy as np
import pytest

from prunesearch.errors import PrunesearchError
from prunesearch.evaluation.metrics import score_sequence, summarize
from prunesearch.evaluation.uncertainty import SequenceStats, bootstrap_intervals, paired_difference
from prunesearch.search.pareto import pareto_front, tied_with_front


def _scores(ious_per_sequence):
    """SequenceScores whose counted IoUs are exactly the given ones (boxes built to match)."""
    out = []
    for ious in ious_per_sequence:
        gt = np.tile([0.0, 0.0, 10.0, 10.0], (len(ious) + 1, 1))
        pred = gt.copy()
        # A box of width 10*iou at the same place has IoU = iou with the 10x10 ground truth.
        pred[1:, 2] = 10.0 * np.asarray(ious)
        out.append(score_sequence(pred, gt, np.ones(len(gt), bool)))
    return out


def _stats(*per_seed):
    names = [f"s{i}" for i in range(len(per_seed[0]))]
    return SequenceStats.from_scores(names, [_scores(seqs) for seqs in per_seed])


def test_point_estimates_match_summarize():
    seqs = [[0.9, 0.8, 0.7], [0.2, 0.6], [0.55, 0.4, 0.8, 0.1]]
    summary = summarize(_scores(seqs))
    iv = bootstrap_intervals(_stats(seqs), resamples=200)
    assert iv["ao"].value == pytest.approx(summary.ao)
    assert iv["sr50"].value == pytest.approx(summary.sr50)
    assert iv["sr75"].value == pytest.approx(summary.sr75)
    assert iv["auc"].value == pytest.approx(summary.auc)


def test_identical_sequences_give_a_zero_width_interval():
    iv = bootstrap_intervals(_stats([[0.5, 0.7]] * 6), resamples=300)
    for metric in ("ao", "sr50", "auc"):
        assert iv[metric].low == pytest.approx(iv[metric].value)
        assert iv[metric].high == pytest.approx(iv[metric].value)


def test_interval_width_matches_the_standard_error_of_a_mean():
    # One frame per sequence: the pooled AO is a plain mean, whose bootstrap standard error is
    # sd / sqrt(n); a 95% percentile interval spans about 2 * 1.96 of it.
    rng = np.random.default_rng(3)
    values = rng.uniform(0.05, 0.95, size=400)
    iv = bootstrap_intervals(_stats([[v] for v in values]), resamples=4000, seed=1)["ao"]
    expected = 2 * 1.96 * values.std() / np.sqrt(len(values))
    assert iv.high - iv.low == pytest.approx(expected, rel=0.1)
    assert iv.low < values.mean() < iv.high


def test_intervals_are_seeded():
    stats = _stats([[v, 1 - v] if i % 2 else [v] for i, v in enumerate(np.linspace(0.05, 0.95, 15))])
    assert bootstrap_intervals(stats, seed=5) == bootstrap_intervals(stats, seed=5)
    assert bootstrap_intervals(stats, seed=5)["ao"] != bootstrap_intervals(stats, seed=6)["ao"]


def test_several_seeds_average_and_widen_the_interval():
    seqs = [[0.6]] * 20
    one = _stats(seqs)
    noisy = _stats(seqs, [[0.8]] * 20, [[0.4]] * 20)
    assert bootstrap_intervals(noisy)["ao"].value == pytest.approx(0.6)
    assert bootstrap_intervals(one)["ao"].high - bootstrap_intervals(one)["ao"].low == pytest.approx(0.0)
    assert bootstrap_intervals(noisy)["ao"].high - bootstrap_intervals(noisy)["ao"].low > 0.1


def test_stats_round_trip_through_plain_lists():
    stats = _stats([[0.9, 0.3], [0.5]], [[0.2, 0.1], [0.7]])
    again = SequenceStats.from_dict(stats.to_dict())
    assert again.names == stats.names
    assert np.array_equal(again.iou_sum, stats.iou_sum) and again.seeds == 2


def test_paired_difference_is_symmetric_and_finds_a_consistent_gain():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, size=30)
    a = _stats([[v + 0.05] for v in base])
    b = _stats([[v] for v in base])
    ab = paired_difference(a, b, ("A", "B"), resamples=500)
    ba = paired_difference(b, a, ("B", "A"), resamples=500)
    assert ab.difference.value == pytest.approx(0.05)
    assert (ab.difference.low, ab.difference.high) == pytest.approx((-ba.difference.high, -ba.difference.low))
    # Hard and easy sequences are shared, so the paired interval is tight around the gain.
    assert ab.significant and ab.difference.low == pytest.approx(0.05)
    assert ab.verdict().startswith("A is better than B")


def test_paired_difference_within_noise_is_not_significant():
    rng = np.random.default_rng(1)
    a = _stats([[v] for v in rng.uniform(0.2, 0.8, size=20)])
    b = _stats([[v] for v in rng.uniform(0.2, 0.8, size=20)])
    result = paired_difference(a, b, ("A", "B"))
    assert not result.significant
    assert "not told apart on 20 sequences" in result.verdict()


def test_paired_difference_uses_only_common_sequences_and_refuses_none():
    a = SequenceStats.from_scores(["x", "y"], [_scores([[0.9], [0.1]])])
    b = SequenceStats.from_scores(["y", "z"], [_scores([[0.1], [0.5]])])
    assert paired_difference(a, b).sequences == 1
    c = SequenceStats.from_scores(["q"], [_scores([[0.5]])])
    with pytest.raises(PrunesearchError, match="no common sequence"):
        paired_difference(a, c)


def test_ties_are_off_front_items_no_faster_member_significantly_beats():
    # (name, latency, ao): C is dominated by A by a hair (tied), D by a wide margin (not tied).
    items = [("A", 5.0, 0.70), ("B", 8.0, 0.80), ("C", 6.0, 0.69), ("D", 9.0, 0.40)]
    front = pareto_front(items, accuracy=lambda t: t[2], latency=lambda t: t[1])
    assert [t[0] for t in front] == ["A", "B"]
    tied = tied_with_front(items, front, latency=lambda t: t[1], significantly_better=lambda f, i: f[2] - i[2] > 0.05)
    assert [t[0] for t in tied] == ["C"]
