"""Classical trackers from OpenCV that need no model file, scored beside ours on the same sequences.

MIL ships with opencv-python-headless; KCF and CSRT come with the contrib build and are offered
only where the installed OpenCV has them. They see the same RGB frames and first box as our
trackers; where OpenCV reports a lost target the previous box is kept.
"""

from __future__ import annotations

import numpy as np

from prunesearch.errors import PrunesearchError

# name -> OpenCV class name; looked up on ``cv2`` and then ``cv2.legacy``.
_OPENCV_CLASSES = {"mil": "TrackerMIL", "kcf": "TrackerKCF", "csrt": "TrackerCSRT"}


def _factory(name: str):
    import cv2

    cls_name = _OPENCV_CLASSES[name]
    for namespace in (cv2, getattr(cv2, "legacy", None)):
        cls = getattr(namespace, cls_name, None) if namespace is not None else None
        if cls is not None and hasattr(cls, "create"):
            return cls.create
    return None


def available_baselines() -> list[str]:
    """Baseline names the installed OpenCV can run."""
    return [name for name in _OPENCV_CLASSES if _factory(name) is not None]


class OpenCVTracker:
    """An OpenCV tracker behind the :class:`SequenceTracker` interface."""

    def __init__(self, name: str) -> None:
        if name not in _OPENCV_CLASSES:
            raise PrunesearchError(f"unknown baseline {name!r}; known: {', '.join(_OPENCV_CLASSES)}")
        create = _factory(name)
        if create is None:
            raise PrunesearchError(
                f"baseline {name!r} needs OpenCV's {_OPENCV_CLASSES[name]}, which the installed OpenCV "
                f"lacks (it has: {', '.join(available_baselines()) or 'none'}); install opencv-contrib-python-headless"
            )
        self._create = create
        self.name = f"opencv-{name}"

    def init(self, image: np.ndarray, box: np.ndarray) -> None:
        import cv2

        self._tracker = self._create()
        self._box = np.asarray(box, dtype=np.float64)
        x, y, w, h = (int(round(v)) for v in self._box)
        self._tracker.init(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), (x, y, max(w, 1), max(h, 1)))

    def update(self, image: np.ndarray) -> np.ndarray:
        import cv2

        found, rect = self._tracker.update(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if found:
            self._box = np.asarray(rect, dtype=np.float64)
        return self._box.copy()
