"""The tracking loop of docs/design.md, and running any tracker over a sequence with per-frame timing.

Initialise: a square crop of side ``sqrt(w*h) * template_factor`` around the first box, resized
to the network's template size, gives the template (encoded once). Every later frame: a crop of
side ``sqrt(w*h) * search_factor`` around the previous box, resized to the search size, zero
padding outside the image, ImageNet mean/std; the score map is multiplied by a 2-D Hann window
(OSTrack's, which never reaches zero at the border), the arg-max cell with its offset and size
gives the box in the crop, which is mapped back to the image, clipped to it, and kept at least
``min_box_size`` pixels wide and high so the next crop stays defined. The factors are the
network's :class:`~prunesearch.data.processing.CropGeometry`.

Frames are read one ahead in a background thread (OpenCV decodes without the GIL), so the network
does not wait for the disk; reading stays out of the timing, as before.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from prunesearch.data.processing import CropGeometry, box_window, extract, normalize
from prunesearch.data.sequence import Sequence
from prunesearch.evaluation.backends import InferenceBackend
from prunesearch.models.vit_tracker import decode_box


@dataclass(frozen=True)
class TrackingParams:
    """The network's crop geometry (its crop sizes come from the network too) and the smallest box kept."""

    crop: CropGeometry = field(default_factory=CropGeometry)
    min_box_size: float = 4.0


class SequenceTracker(Protocol):
    """Anything that tracks one target: our networks and the classical baselines alike."""

    name: str

    def init(self, image: np.ndarray, box: np.ndarray) -> None:
        """Start on an RGB uint8 image with the target's ``x, y, w, h`` box."""

    def update(self, image: np.ndarray) -> np.ndarray:
        """The target's ``x, y, w, h`` box in the next image."""


def hann_window(size: int) -> torch.Tensor:
    """[1, 1, size, size] outer product of ``0.5 * (1 - cos(2 pi k / (size + 1)))``, k = 1..size."""
    k = torch.arange(1, size + 1, dtype=torch.float32)
    w = 0.5 * (1 - torch.cos(2 * torch.pi * k / (size + 1)))
    return (w[:, None] * w[None, :])[None, None]


def clip_box(box: np.ndarray, width: float, height: float, min_size: float) -> np.ndarray:
    """``box`` cut to the image, then grown about its centre (and shifted inside) to ``min_size``."""
    x, y, w, h = np.asarray(box, dtype=np.float64)
    x0, x1 = np.clip([x, x + w], 0, width)
    y0, y1 = np.clip([y, y + h], 0, height)
    out = []
    for lo, hi, limit in ((x0, x1, width), (y0, y1, height)):
        side = max(hi - lo, min(min_size, limit))
        start = min(max((lo + hi) / 2 - side / 2, 0.0), limit - side)
        out.append((start, side))
    (x, w), (y, h) = out
    return np.array([x, y, w, h])


class NeuralTracker:
    """The docs/design.md loop around one :class:`InferenceBackend` (PyTorch or ONNX: same code either way)."""

    def __init__(self, backend: InferenceBackend, params: TrackingParams | None = None) -> None:
        self.backend = backend
        self.params = params or TrackingParams()
        self.name = backend.name
        self._window: torch.Tensor | None = None

    def init(self, image: np.ndarray, box: np.ndarray) -> None:
        window = box_window(np.asarray(box, dtype=np.float64), self.params.crop.template_factor, self.backend.template_size)
        self._z_feat = self.backend.template(normalize(extract(image, window)))
        self._box = np.asarray(box, dtype=np.float64)

    def update(self, image: np.ndarray) -> np.ndarray:
        window = box_window(self._box, self.params.crop.search_factor, self.backend.search_size)
        score, size, offset = self.backend.frame(self._z_feat, normalize(extract(image, window)))
        if self._window is None or self._window.shape[-2:] != score.shape[-2:]:
            self._window = hann_window(score.shape[-1])
        crop_box = decode_box(score * self._window, size, offset)[0].numpy()
        height, width = image.shape[:2]
        self._box = clip_box(window.box_from_crop(crop_box), width, height, self.params.min_box_size)
        return self._box.copy()


@dataclass
class TrackedSequence:
    """Boxes (``x, y, w, h`` per frame, the first being the given one) and seconds per frame."""

    boxes: np.ndarray
    times: np.ndarray
    image_size: tuple[int, int]


def run_sequence(tracker: SequenceTracker, sequence: Sequence) -> TrackedSequence:
    """Track ``sequence`` from its first box; image reading is not timed (as in the GOT-10k toolkit)."""
    boxes = np.zeros((len(sequence), 4))
    times = np.zeros(len(sequence))
    image_size = (0, 0)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as reader:
        ahead = reader.submit(sequence.image, 0) if len(sequence) else None
        for i in range(len(sequence)):
            image = ahead.result()
            if i + 1 < len(sequence):
                ahead = reader.submit(sequence.image, i + 1)
            start = time.perf_counter()
            if i == 0:
                image_size = (image.shape[1], image.shape[0])
                boxes[0] = sequence.boxes[0]
                tracker.init(image, sequence.boxes[0])
            else:
                boxes[i] = tracker.update(image)
            times[i] = time.perf_counter() - start
    return TrackedSequence(boxes, times, image_size)
