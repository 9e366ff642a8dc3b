import math

import pytest
import torch

from prunesearch.models.vit_tracker import TrackerOutput, decode_box
from prunesearch.training.losses import (
    LossWeights,
    box_at_cells,
    centre_cells,
    cxcywh_to_xyxy,
    distill_loss,
    focal_loss,
    gaussian_heatmap,
    iou_giou,
    tracking_loss,
)

BOXES = torch.tensor([[0.5625, 0.3125, 0.25, 0.25], [0.1, 0.9, 0.1, 0.3]])


def perfect_output(boxes: torch.Tensor, feat: int = 8) -> TrackerOutput:
    """Maps that encode ``boxes`` exactly: peak at the centre cell, true size and offset everywhere."""
    b = len(boxes)
    score = torch.full((b, 1, feat, feat), 1e-4)
    ix, iy = centre_cells(boxes, feat)
    score[torch.arange(b), 0, iy, ix] = 1 - 1e-4
    size = boxes[:, 2:].view(b, 2, 1, 1).expand(b, 2, feat, feat).clone()
    offset = torch.stack([boxes[:, 0] * feat - ix, boxes[:, 1] * feat - iy], 1).view(b, 2, 1, 1).expand(b, 2, feat, feat)
    offset = offset.clone()
    return TrackerOutput(score, size, offset, decode_box(score, size, offset))


def test_heatmap_peaks_once_at_the_cell_of_each_convention():
    hm = gaussian_heatmap(BOXES, 8, "ostrack")
    assert hm.shape == (2, 1, 8, 8)
    assert int((hm == 1).sum()) == 2
    # OSTrack: peak at round(c * feat); 4.5 rounds half to even, 0.8 rounds up
    assert hm[0, 0, 2, 4] == 1 and hm[1, 0, 7, 1] == 1
    # prunesearch (the shipped teacher's): the cell holding the centre, the Gaussian over the whole map
    own = gaussian_heatmap(BOXES, 8)
    cx, cy = (BOXES[:, 0] * 8).floor().long(), (BOXES[:, 1] * 8).floor().long()
    assert int((own == 1).sum()) == 2 and own[0, 0, cy[0], cx[0]] == 1 and own[1, 0, cy[1], cx[1]] == 1


def test_heatmap_follows_ostrack_by_hand():
    # cx*16 = 8.8 -> column 9, cy*16 = 4.8 -> row 5 (flooring would give 8 and 4).
    # w = h = 12 cells: CenterNet's radius min(22.9, 44.1, 3.28) = 3.28, truncated to 3;
    # sigma = (2*3 + 1)/6 = 7/6, drawn only within 3 cells of the peak.
    hm = gaussian_heatmap(torch.tensor([[0.55, 0.3, 0.75, 0.75]]), 16, "ostrack")[0, 0]
    assert hm[5, 9] == 1 and int((hm == 1).sum()) == 1
    assert float(hm[5, 12]) == pytest.approx(math.exp(-9 / (2 * (7 / 6) ** 2)), rel=1e-5)  # 0.0367
    assert float(hm[5, 13]) == 0 and float(hm[1, 9]) == 0 and float(hm[9, 9]) == 0
    assert float(hm[8, 12]) == pytest.approx(math.exp(-18 / (2 * (7 / 6) ** 2)), rel=1e-4)
    assert int((hm > 0).sum()) == 49  # the (2r + 1)^2 window


def test_focal_loss_small_for_the_target_and_large_for_its_opposite():
    hm = gaussian_heatmap(BOXES, 8)
    good = focal_loss(hm.clamp(1e-4, 1 - 1e-4), hm)
    bad = focal_loss((1 - hm).clamp(1e-4, 1 - 1e-4), hm)
    assert good < 0.05 < bad


def test_giou_of_identical_and_disjoint_boxes():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0]])
    iou, giou = iou_giou(a, b)
    assert iou.tolist() == pytest.approx([1.0, 0.0])
    assert giou.tolist() == pytest.approx([1.0, -1 / 3])


def test_box_decoded_at_gt_cell_matches_and_loss_is_minimal():
    out = perfect_output(BOXES)
    ix, iy = centre_cells(BOXES, 8)
    torch.testing.assert_close(box_at_cells(out, ix, iy), BOXES)
    total, parts = tracking_loss(out, BOXES, LossWeights())
    assert parts["giou"] == pytest.approx(0.0, abs=1e-5) and parts["l1"] == pytest.approx(0.0, abs=1e-6)
    assert parts["iou"] == pytest.approx(1.0, abs=1e-5)
    assert float(total) == pytest.approx(parts["focal"], abs=1e-4)


def test_weights_scale_the_parts():
    out = perfect_output(BOXES + torch.tensor([0.05, 0.0, 0.0, 0.0]))
    _, p = tracking_loss(out, BOXES, LossWeights())
    total, _ = tracking_loss(out, BOXES, LossWeights(focal=0.0, giou=1.0, l1=0.0))
    assert float(total) == pytest.approx(p["giou"], rel=1e-5)
    assert p["loss"] == pytest.approx(p["focal"] + 2 * p["giou"] + 5 * p["l1"], rel=1e-5)


def test_distillation_is_zero_against_itself_and_added_with_weight():
    out = perfect_output(BOXES)
    assert float(distill_loss(out, out)) == pytest.approx(0.0)
    other = perfect_output(BOXES.flip(0))
    _, without = tracking_loss(out, BOXES, LossWeights())
    _, with_d = tracking_loss(out, BOXES, LossWeights(distill=0.5), teacher=other)
    assert with_d["distill"] > 0
    assert with_d["loss"] == pytest.approx(without["loss"] + 0.5 * with_d["distill"], rel=1e-5)


def test_losses_have_gradients_into_all_maps():
    out = perfect_output(BOXES)
    maps = [m.clone().requires_grad_(True) for m in out[:3]]
    shifted = TrackerOutput(*maps, out.box)
    total, _ = tracking_loss(shifted, BOXES + torch.tensor([0.04, 0.0, 0.02, 0.0]), LossWeights())
    total.backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in maps)
    assert cxcywh_to_xyxy(BOXES).shape == (2, 4)
