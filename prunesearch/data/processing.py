"""Crops and normalisation shared by training, tracking and calibration.

A crop is a square window of side ``sqrt(w*h) * factor`` centred on a box, resized to ``size``
pixels, zero-padded outside the image (docs/design.md). :class:`CropWindow` remembers where the
window was so a box predicted in crop coordinates maps back to the image. :class:`CropGeometry` is
the one home of the two factors; training, tracking and calibration all take it from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from prunesearch.errors import InputError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Crop side over box side: below 0.5 the crop misses half the target, above 20 the target is a pixel or two
# of the crop (trackers use 2 to 5). Checked wherever a geometry is made: flags, files and checkpoints.
CROP_FACTOR_RANGE = (0.5, 20.0)


@dataclass(frozen=True)
class CropGeometry:
    """How much context a crop holds: side = ``sqrt(w*h) * factor`` of the target box.

    A property of the network, like its crop sizes: OSTrack-256 and LiteTrack train with 2 and 4,
    OSTrack-384 with 2 and 5. A checkpoint that records its factors (OSTrack's training settings,
    prunesearch's own files) brings them along (:func:`prunesearch.checkpoints.load_tracker`).
    """

    template_factor: float = 2.0
    search_factor: float = 4.0

    def __post_init__(self) -> None:
        for name in ("template_factor", "search_factor"):
            value = getattr(self, name)
            low, high = CROP_FACTOR_RANGE
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
                raise InputError(f"crop {name} must be a number from {low:g} to {high:g} (CROP_FACTOR_RANGE), got {value!r}")
            object.__setattr__(self, name, float(value))

    def to_dict(self) -> dict[str, float]:
        return {"template_factor": self.template_factor, "search_factor": self.search_factor}

    def override(self, template_factor: float | None = None, search_factor: float | None = None) -> "CropGeometry":
        """This geometry with the factors given (``--template-factor``/``--search-factor``) replaced."""
        return CropGeometry(
            self.template_factor if template_factor is None else template_factor,
            self.search_factor if search_factor is None else search_factor,
        )


@dataclass(frozen=True)
class CropWindow:
    """Square window in image pixels (top-left x0, y0 and side) resized to ``size`` pixels."""

    x0: float
    y0: float
    side: float
    size: int

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return self.size / self.side

    def box_to_crop(self, box: np.ndarray) -> np.ndarray:
        """Image box (x, y, w, h) -> crop box (x, y, w, h) in crop pixels."""
        x, y, w, h = np.asarray(box, dtype=np.float64)
        s = self.scale
        return np.array([(x - self.x0) * s, (y - self.y0) * s, w * s, h * s])

    def box_from_crop(self, cxcywh_norm: np.ndarray) -> np.ndarray:
        """Normalised crop box (cx, cy, w, h in [0, 1]) -> image box (x, y, w, h)."""
        cx, cy, w, h = np.asarray(cxcywh_norm, dtype=np.float64) * self.side
        return np.array([self.x0 + cx - w / 2, self.y0 + cy - h / 2, w, h])


def crop_window(center: tuple[float, float], target_wh: tuple[float, float], factor: float, size: int) -> CropWindow:
    """Window of side ``sqrt(w*h) * factor`` around ``center``."""
    side = max(math.sqrt(max(target_wh[0], 1e-3) * max(target_wh[1], 1e-3)) * factor, 1.0)
    return CropWindow(center[0] - side / 2, center[1] - side / 2, side, size)


def box_window(box: np.ndarray, factor: float, size: int) -> CropWindow:
    """Window centred on an (x, y, w, h) box."""
    x, y, w, h = box
    return crop_window((x + w / 2, y + h / 2), (w, h), factor, size)


def extract(image: np.ndarray, window: CropWindow) -> np.ndarray:
    """The window's pixels as an RGB uint8 [size, size, 3] array, zero outside the image."""
    import cv2

    s = window.scale
    # Continuous coordinates (pixel i spans [i, i+1)) map as X = x0 + U / s; in pixel-centre
    # indices that is u = s * x + s * (0.5 - x0) - 0.5. Outside the image warpAffine pads zeros.
    tx, ty = s * (0.5 - window.x0) - 0.5, s * (0.5 - window.y0) - 0.5
    m = np.array([[s, 0.0, tx], [0.0, s, ty]], dtype=np.float64)
    return cv2.warpAffine(
        image, m, (window.size, window.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def normalize(crops: np.ndarray) -> torch.Tensor:
    """RGB uint8 crops ([H, W, 3] or [B, H, W, 3]) -> ImageNet-normalised float tensor [B, 3, H, W]."""
    arr = np.asarray(crops, dtype=np.float32) / 255.0
    if arr.ndim == 3:
        arr = arr[None]
    arr = (arr - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
