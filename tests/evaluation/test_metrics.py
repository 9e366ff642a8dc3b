"""Metrics against values worked out by hand from the toolkits' rules (see metrics.py docstring)."""

import numpy as np
import pytest

from prunesearch.evaluation.metrics import (
    center_error,
    iou_got10k,
    iou_otb,
    repair_predictions,
    score_sequence,
    summarize,
)

# Sequence A: 4 frames, all visible; the last prediction has zero size.
GT_A = np.tile([10.0, 10, 10, 10], (4, 1))
PRED_A = np.array([[0.0, 0, 1, 1], [10, 10, 10, 10], [15, 10, 10, 10], [10, 10, 0, 0]])
# Sequence B: 3 frames, the middle one absent (its prediction must not matter).
GT_B = np.tile([20.0, 20, 20, 20], (3, 1))
PRED_B = np.array([[20.0, 20, 20, 20], [0, 0, 5, 5], [24, 20, 20, 20]])
VIS_B = np.array([True, False, True])


def test_iou_got10k_hand_values():
    gt = np.array([[0.0, 0, 10, 10]] * 3)
    pred = np.array([[5.0, 0, 10, 10], [0, 0, 10, 10], [3, 3, 0, 0]])
    assert iou_got10k(pred, gt) == pytest.approx([50 / 150, 1.0, 0.0])


def test_iou_got10k_clips_both_boxes_to_the_image():
    pred = np.array([[90.0, 0, 10, 10]])
    gt = np.array([[90.0, 0, 20, 10]])
    assert iou_got10k(pred, gt)[0] == pytest.approx(0.5)
    assert iou_got10k(pred, gt, bound=(100, 50))[0] == pytest.approx(1.0)


def test_iou_otb_pixel_inclusive_hand_values():
    pred = np.array([[1.0, 1, 10, 10], [0, 0, 2, 2], [0, 0, 3, 3]])
    gt = np.array([[6.0, 1, 10, 10], [1, 1, 2, 2], [5, 5, 3, 3]])
    assert iou_otb(pred, gt) == pytest.approx([50 / 150, 1 / 7, 0.0])


def test_center_error_plain_and_normalised():
    pred = np.array([[13.0, 14, 10, 20]])
    gt = np.array([[10.0, 10, 10, 20]])
    assert center_error(pred, gt)[0] == pytest.approx(5.0)
    assert center_error(pred, gt, normalized=True)[0] == pytest.approx(np.hypot(0.3, 0.2))


def test_invalid_predictions_take_the_previous_box_and_frame_one_the_ground_truth():
    pred = np.array([[1.0, 1, 1, 1], [5, 5, 4, 4], [np.nan, 0, 3, 3], [7, 7, -1, 2]])
    gt = np.tile([2.0, 2, 8, 8], (4, 1))
    out = repair_predictions(pred, gt)
    assert out.tolist() == [[2, 2, 8, 8], [5, 5, 4, 4], [5, 5, 4, 4], [5, 5, 4, 4]]


def test_got10k_protocol_skips_first_and_absent_frames():
    a = score_sequence(PRED_A, GT_A, np.ones(4, bool), "got10k")
    b = score_sequence(PRED_B, GT_B, VIS_B, "got10k")
    # A: frames 2..4 -> IoU 1, 1/3, 0 (zero-size prediction); B: only frame 3 -> 320 / 480.
    assert a.ious == pytest.approx([1.0, 1 / 3, 0.0])
    assert b.ious == pytest.approx([2 / 3])
    assert a.ao == pytest.approx(4 / 9)
    assert a.sr50 == pytest.approx(1 / 3)
    s = summarize([a, b])
    # Pooled over the four counted frames, not averaged per sequence ((4/9 + 2/3) / 2 would differ).
    assert s.ao == pytest.approx((1 + 1 / 3 + 0 + 2 / 3) / 4)
    assert s.sr50 == pytest.approx(2 / 4)
    assert s.sr75 == pytest.approx(1 / 4)


def test_sr_thresholds_are_strict():
    gt = np.tile([10.0, 10, 20, 10], (2, 1))
    pred = np.array([[10.0, 10, 20, 10], [10, 10, 10, 10]])  # IoU exactly 0.5
    assert score_sequence(pred, gt, np.ones(2, bool)).sr50 == 0.0


def test_otb_protocol_on_sequence_a():
    a = score_sequence(PRED_A, GT_A, np.ones(4, bool), "got10k")
    # Frame 1 becomes the ground truth, frame 4 (zero size) repeats frame 3: IoUs 1, 1, 1/3, 1/3.
    expected = np.array([1.0] * 7 + [0.5] * 13 + [0.0])
    assert a.success_curve == pytest.approx(expected)
    assert a.auc == pytest.approx(13.5 / 21)
    assert a.precision == pytest.approx(1.0)  # centre errors 0, 0, 5, 5 px
    assert a.norm_precision == pytest.approx(0.5)  # normalised 0, 0, 0.5, 0.5


def test_absent_frames_left_out_except_on_lasot_where_they_fail():
    got = score_sequence(PRED_B, GT_B, VIS_B, "got10k")
    lasot = score_sequence(PRED_B, GT_B, VIS_B, "lasot")
    # Counted frames: 1 (IoU 1, gt copy) and 3 (IoU 2/3, 4 px, 0.2 normalised).
    # Thresholds 0..0.65 pass both frames, 0.7..0.95 only frame 1, 1.0 none (strict).
    assert got.auc == pytest.approx((14 * 1 + 6 * 0.5) / 21)
    assert got.precision == pytest.approx(1.0)
    assert got.norm_precision == pytest.approx(1.0)
    assert lasot.auc == pytest.approx((14 * 2 / 3 + 6 * 1 / 3) / 21)
    assert lasot.precision == pytest.approx(2 / 3)
    assert lasot.norm_precision == pytest.approx(2 / 3)
    # GOT-10k figures ignore the dataset.
    assert lasot.ious == pytest.approx(got.ious)


def test_prediction_on_an_absent_frame_does_not_count():
    moved = PRED_B.copy()
    moved[1] = [20, 20, 20, 20]
    for dataset in ("got10k", "lasot"):
        x = score_sequence(PRED_B, GT_B, VIS_B, dataset)
        y = score_sequence(moved, GT_B, VIS_B, dataset)
        assert (x.auc, x.precision, x.norm_precision, x.ao) == (y.auc, y.precision, y.norm_precision, y.ao)


def test_dataset_figures_average_sequences_for_otb_metrics():
    a = score_sequence(PRED_A, GT_A, np.ones(4, bool), "got10k")
    b = score_sequence(PRED_B, GT_B, VIS_B, "got10k")
    s = summarize([a, b])
    assert s.auc == pytest.approx((13.5 / 21 + 17 / 21) / 2)
    assert s.precision == pytest.approx(1.0)
    assert s.norm_precision == pytest.approx(0.75)


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError):
        score_sequence(PRED_A[:3], GT_A, np.ones(4, bool))
