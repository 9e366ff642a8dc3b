"""Tracking losses: CenterNet focal on a Gaussian heat map, GIoU and L1 on the box, distillation.

The paper's weights (OSTrack, LiteTrack): total = 1 * focal + 2 * GIoU + 5 * L1. The box is
decoded at the ground-truth centre cell (CenterNet's choice) rather than at the predicted peak,
so size and offset branches get a useful gradient from the first step, when the peak is random.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from prunesearch.models.vit_tracker import TrackerOutput


@dataclass(frozen=True)
class LossWeights:
    focal: float = 1.0
    giou: float = 2.0
    l1: float = 5.0
    distill: float = 0.0


def gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius: the largest centre shift keeping IoU >= ``min_overlap`` (three cases)."""
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3, c3 = -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def centre_cells(boxes: torch.Tensor, feat: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer cell (ix, iy) holding each normalised box centre, clamped to the map: where the box
    is decoded, so the sigmoid offset (0..1) can reach the true centre."""
    ix = (boxes[:, 0] * feat).floor().clamp(0, feat - 1).long()
    iy = (boxes[:, 1] * feat).floor().clamp(0, feat - 1).long()
    return ix, iy


def peak_cells(boxes: torch.Tensor, feat: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The heat map's peak cell: ``round(c * feat)`` as OSTrack's ``generate_heatmap`` puts it
    (torch's round, half to even), clamped to the map where upstream would draw nothing."""
    ix = (boxes[:, 0] * feat).round().clamp(0, feat - 1).long()
    iy = (boxes[:, 1] * feat).round().clamp(0, feat - 1).long()
    return ix, iy


# Heat-map target conventions: a student learns the one its teacher was trained on, so the
# distilled maps and the focal target agree on the peak cell (docs/design.md, "Training").
HEATMAP_CONVENTIONS = ("prunesearch", "ostrack")


def gaussian_heatmap(boxes: torch.Tensor, feat: int, convention: str = "prunesearch") -> torch.Tensor:
    """[B, 1, feat, feat] target: 1 at the peak cell, a Gaussian of sigma ``(2r + 1) / 6`` around it.

    ``ostrack`` (lib/utils/heapmap_utils.py, after CenterNet's ``draw_umich_gaussian``): the peak
    at ``round(c * feat)``, CenterNet's radius truncated to whole cells, drawn only within ``r``
    cells; what real OSTrack and LiteTrack teachers were trained on. ``prunesearch``: the peak at
    the cell holding the centre (where the box is decoded), the radius unrounded, over the whole
    map; what the shipped small teacher and ``prunesearch teacher train`` use.
    """
    if convention not in HEATMAP_CONVENTIONS:
        raise ValueError(f"heat-map convention {convention!r}: use {', '.join(HEATMAP_CONVENTIONS)}")
    ostrack = convention == "ostrack"
    ix, iy = peak_cells(boxes, feat) if ostrack else centre_cells(boxes, feat)
    sizes = boxes[:, 2:].detach().cpu().tolist()
    grid = torch.arange(feat, dtype=torch.float32, device=boxes.device)
    maps = []
    for k in range(len(boxes)):
        w, h = sizes[k]
        r = max(0.0, gaussian_radius(h * feat, w * feat))
        r = int(r) if ostrack else r
        sigma = (2 * r + 1) / 6
        dy, dx = grid - iy[k], grid - ix[k]
        gy = torch.exp(-(dy**2) / (2 * sigma**2))
        gx = torch.exp(-(dx**2) / (2 * sigma**2))
        if ostrack:
            gy, gx = gy * (dy.abs() <= r), gx * (dx.abs() <= r)
        maps.append(gy[:, None] * gx[None, :])
    return torch.stack(maps)[:, None]


def focal_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet focal loss (alpha 2, beta 4) on probabilities, normalised by the number of peaks."""
    pos = target.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(pred) * (1 - pred) ** 2 * pos
    neg_loss = torch.log(1 - pred) * pred**2 * (1 - target) ** 4 * neg
    return -(pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    return torch.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)


def iou_giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and generalised IoU of xyxy boxes, per row."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-7)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(1)
    return iou, iou - (hull - union) / hull.clamp(min=1e-7)


def box_at_cells(out: TrackerOutput, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
    """Normalised cx, cy, w, h decoded at the given cells (the size and offset maps read there)."""
    feat = out.score_map.shape[-1]
    rows = torch.arange(len(ix), device=ix.device)
    size = out.size_map[rows, :, iy, ix]
    off = out.offset_map[rows, :, iy, ix]
    return torch.stack([(ix + off[:, 0]) / feat, (iy + off[:, 1]) / feat, size[:, 0], size[:, 1]], 1)


def distill_loss(student: TrackerOutput, teacher: TrackerOutput) -> torch.Tensor:
    """Match the teacher's maps: MSE on the score map, L1 on size and offset where the teacher looks."""
    b = student.score_map.shape[0]
    score = F.mse_loss(student.score_map, teacher.score_map, reduction="sum") / b
    w = teacher.score_map / teacher.score_map.sum(dim=(2, 3), keepdim=True)
    reg = ((student.size_map - teacher.size_map).abs() + (student.offset_map - teacher.offset_map).abs()) * w
    return score + reg.sum() / b


def tracking_loss(
    out: TrackerOutput, boxes: torch.Tensor, weights: LossWeights, teacher: TrackerOutput | None = None,
    heatmap: str = "prunesearch",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted total and its parts (as floats, for logging); ``iou`` is the predicted-peak box's IoU.
    ``heatmap`` is the target convention (see :func:`gaussian_heatmap`)."""
    feat = out.score_map.shape[-1]
    focal = focal_loss(out.score_map, gaussian_heatmap(boxes, feat, heatmap))
    ix, iy = centre_cells(boxes, feat)
    pred = cxcywh_to_xyxy(box_at_cells(out, ix, iy))
    gt = cxcywh_to_xyxy(boxes)
    _, giou = iou_giou(pred, gt)
    giou_loss = (1 - giou).mean()
    l1 = F.l1_loss(pred, gt)
    total = weights.focal * focal + weights.giou * giou_loss + weights.l1 * l1
    named = {"focal": focal, "giou": giou_loss, "l1": l1}
    if teacher is not None and weights.distill > 0:
        d = distill_loss(out, teacher)
        total = total + weights.distill * d
        named["distill"] = d
    with torch.no_grad():
        iou, _ = iou_giou(cxcywh_to_xyxy(out.box), gt)
    named.update(iou=iou.mean(), loss=total)
    # One device-to-host copy for all of them, not one synchronisation per number.
    values = torch.stack([v.detach().float() for v in named.values()]).tolist()
    return total, dict(zip(named, values))
