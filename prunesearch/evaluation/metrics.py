"""Tracking accuracy metrics, computed the way the official toolkits compute them from the same boxes.

Boxes are ``x, y, w, h`` rows in pixels. Two protocols, each with its own IoU:

GOT-10k (official got10k toolkit, ``ExperimentGOT10k.report``): AO, SR0.5, SR0.75.
  * IoU of continuous boxes (``rect_iou``): both boxes are first clipped to the image
    (``x`` to [0, W], ``w`` to [0, W - x], same for y/h), IoU = inter / (union + eps), in [0, 1].
  * The first frame is left out; of the rest only frames where the target is visible count
    (the toolkit's ``cover > 0``; our ``Sequence.visible``).
  * AO = mean IoU, SR_t = share of IoUs strictly above t, over the counted frames of ALL sequences
    pooled (the toolkit concatenates every sequence's IoUs before averaging, so long sequences
    weigh more). Per-sequence AO/SR use that sequence's frames.
  * A predicted box of zero size has IoU 0.

OTB / LaSOT (the LaSOT evaluation toolkit and pytracking ``extract_results``): success AUC,
precision, normalised precision.
  * IoU of pixel-inclusive boxes (``calc_rect_int``): a box covers columns x .. x + w - 1, so the
    intersection side is ``min(x1 + w1 - 1, x2 + w2 - 1) - max(x1, x2) + 1`` (at least 0) and the
    union is ``w1 h1 + w2 h2 - inter``. Centre = ``(x + (w - 1) / 2, y + (h - 1) / 2)``.
  * Predictions that are NaN or have w <= 0 or h <= 0 are replaced by the previous frame's
    prediction (frame 2 on), then the first frame's prediction is replaced by the ground truth, so
    the first frame always counts as a success.
  * Success curve: share of frames with IoU strictly above each of 21 thresholds 0, 0.05, .., 1;
    AUC is its mean. Precision: share of frames with centre error <= 20 px (curve over 0..50 px).
    Normalised precision: centre error with x-errors divided by the ground-truth width and y-errors
    by its height, share <= 0.2 (curve over 0..0.5 in steps of 0.01).
  * Frames whose target is absent (or whose ground truth has w or h <= 0) score as failures.
    The denominator differs by dataset, and each dataset reader declares its own
    (:class:`prunesearch.data.reader.Scoring`): LaSOT divides by ALL frames of the sequence, so
    absent frames count against the tracker (LaSOT toolkit ``len_all``; pytracking for 'lasot');
    every other dataset (GOT-10k, synthetic) divides by the counted frames only, leaving absent
    frames out (pytracking's rule for the other datasets).
  * Dataset figures are the means over sequences of the per-sequence values.
  * Two corner cases of the LaSOT MATLAB toolkit are not copied, because our readers refuse the
    ground truth that triggers them (a visible frame with w or h <= 0): it scores such frames'
    centre error as -1 (a success) and also drops ground truth with x <= 0 or y <= 0; and its plots
    leave out sequences whose whole curve is zero. pytracking does neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prunesearch.data.datasets import scoring_of

SUCCESS_THRESHOLDS = np.arange(21) / 20.0
PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64)
NORM_PRECISION_THRESHOLDS = np.arange(51) / 100.0
PRECISION_PX = 20.0
NORM_PRECISION = 0.2
SR_THRESHOLDS = (0.5, 0.75)


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def iou_got10k(pred: np.ndarray, gt: np.ndarray, bound: tuple[float, float] | None = None) -> np.ndarray:
    """GOT-10k toolkit IoU of continuous boxes, both clipped to the image ``bound = (W, H)`` first."""
    pred, gt = _as_boxes(pred), _as_boxes(gt)
    if bound is not None:
        pred, gt = _clip_to_image(pred, bound), _clip_to_image(gt, bound)
    x1 = np.maximum(pred[:, 0], gt[:, 0])
    y1 = np.maximum(pred[:, 1], gt[:, 1])
    x2 = np.minimum(pred[:, 0] + pred[:, 2], gt[:, 0] + gt[:, 2])
    y2 = np.minimum(pred[:, 1] + pred[:, 3], gt[:, 1] + gt[:, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = pred[:, 2] * pred[:, 3] + gt[:, 2] * gt[:, 3] - inter
    return np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)


def _clip_to_image(boxes: np.ndarray, bound: tuple[float, float]) -> np.ndarray:
    width, height = bound
    out = boxes.copy()
    out[:, 0] = np.clip(out[:, 0], 0, width)
    out[:, 1] = np.clip(out[:, 1], 0, height)
    out[:, 2] = np.clip(out[:, 2], 0, width - out[:, 0])
    out[:, 3] = np.clip(out[:, 3], 0, height - out[:, 1])
    return out


def iou_otb(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """OTB/LaSOT IoU of pixel-inclusive boxes (x .. x + w - 1)."""
    pred, gt = _as_boxes(pred), _as_boxes(gt)
    left = np.maximum(pred[:, 0], gt[:, 0])
    top = np.maximum(pred[:, 1], gt[:, 1])
    right = np.minimum(pred[:, 0] + pred[:, 2] - 1, gt[:, 0] + gt[:, 2] - 1)
    bottom = np.minimum(pred[:, 1] + pred[:, 3] - 1, gt[:, 1] + gt[:, 3] - 1)
    inter = np.maximum(right - left + 1, 0) * np.maximum(bottom - top + 1, 0)
    return inter / (pred[:, 2] * pred[:, 3] + gt[:, 2] * gt[:, 3] - inter)


def center_error(pred: np.ndarray, gt: np.ndarray, normalized: bool = False) -> np.ndarray:
    """Distance between OTB centres ``x + (w - 1) / 2``; ``normalized`` divides by the gt w and h."""
    pred, gt = _as_boxes(pred), _as_boxes(gt)
    diff = (pred[:, :2] + (pred[:, 2:] - 1) / 2) - (gt[:, :2] + (gt[:, 2:] - 1) / 2)
    if normalized:
        diff = diff / gt[:, 2:]
    return np.sqrt((diff**2).sum(axis=1))


def repair_predictions(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """OTB/LaSOT handling of invalid predictions: NaN or non-positive size -> previous prediction
    (where the ground truth is not NaN); then the first frame takes the ground truth."""
    pred, gt = _as_boxes(pred).copy(), _as_boxes(gt)
    for i in range(1, len(pred)):
        bad = np.isnan(pred[i]).any() or pred[i, 2] <= 0 or pred[i, 3] <= 0
        if bad and not np.isnan(gt[i]).any():
            pred[i] = pred[i - 1]
    pred[0] = gt[0]
    return pred


@dataclass
class SequenceScores:
    """One sequence scored under both protocols.

    ``ious`` holds the GOT-10k IoUs of the counted frames (pooled across sequences for the dataset
    AO); the three curves follow the OTB/LaSOT protocol.
    """

    ious: np.ndarray
    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray

    @property
    def ao(self) -> float:
        return float(self.ious.mean()) if self.ious.size else float("nan")

    @property
    def sr50(self) -> float:
        return _success_rate(self.ious, 0.5)

    @property
    def sr75(self) -> float:
        return _success_rate(self.ious, 0.75)

    @property
    def auc(self) -> float:
        return float(self.success_curve.mean())

    @property
    def precision(self) -> float:
        return float(self.precision_curve[int(PRECISION_PX)])

    @property
    def norm_precision(self) -> float:
        return float(self.norm_precision_curve[int(round(NORM_PRECISION * 100))])


def _success_rate(ious: np.ndarray, threshold: float) -> float:
    return float((ious > threshold).mean()) if ious.size else float("nan")


def score_sequence(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    dataset: str = "",
    bound: tuple[float, float] | None = None,
) -> SequenceScores:
    """Score predicted boxes against ground truth of the same length (see the module docstring).

    ``dataset`` (a ``Sequence.dataset`` name) picks the denominator its reader declares (LaSOT: all
    frames); ``bound`` is the image ``(W, H)`` the GOT-10k IoU clips to.
    """
    pred, gt = _as_boxes(pred), _as_boxes(gt)
    visible = np.asarray(visible, dtype=bool).reshape(-1)
    if not len(pred) == len(gt) == len(visible):
        raise ValueError(f"{len(pred)} predictions, {len(gt)} ground-truth boxes, {len(visible)} flags")

    counted = visible[1:]
    ious = iou_got10k(pred[1:][counted], gt[1:][counted], bound)

    repaired = repair_predictions(pred, gt)
    valid = visible & np.isfinite(gt).all(axis=1) & (np.nan_to_num(gt[:, 2]) > 0) & (np.nan_to_num(gt[:, 3]) > 0)
    overlap = np.full(len(gt), -1.0)
    err = np.full(len(gt), np.inf)
    norm_err = np.full(len(gt), np.inf)
    overlap[valid] = iou_otb(repaired[valid], gt[valid])
    err[valid] = center_error(repaired[valid], gt[valid])
    norm_err[valid] = center_error(repaired[valid], gt[valid], normalized=True)
    frames = len(gt) if scoring_of(dataset).absent_frames_fail else int(valid.sum())
    return SequenceScores(
        ious=ious,
        success_curve=(overlap[:, None] > SUCCESS_THRESHOLDS[None]).sum(0) / frames,
        precision_curve=(err[:, None] <= PRECISION_THRESHOLDS[None]).sum(0) / frames,
        norm_precision_curve=(norm_err[:, None] <= NORM_PRECISION_THRESHOLDS[None]).sum(0) / frames,
    )


@dataclass(frozen=True)
class Summary:
    """Dataset-level figures, fractions in [0, 1]."""

    ao: float
    sr50: float
    sr75: float
    auc: float
    precision: float
    norm_precision: float


def summarize(scores: list[SequenceScores]) -> Summary:
    """GOT-10k figures over all counted frames pooled; OTB/LaSOT figures averaged over sequences."""
    if not scores:
        nan = float("nan")
        return Summary(nan, nan, nan, nan, nan, nan)
    pooled = np.concatenate([s.ious for s in scores])
    return Summary(
        ao=float(pooled.mean()) if pooled.size else float("nan"),
        sr50=_success_rate(pooled, 0.5),
        sr75=_success_rate(pooled, 0.75),
        auc=float(np.mean([s.auc for s in scores])),
        precision=float(np.mean([s.precision for s in scores])),
        norm_precision=float(np.mean([s.norm_precision for s in scores])),
    )
