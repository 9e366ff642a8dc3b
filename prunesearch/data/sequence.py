"""The in-memory description of one tracking sequence, shared by every dataset reader.

Readers (GOT-10k, LaSOT, built-in synthetic) produce :class:`Sequence`; the pair sampler, the
tracking loop and the metrics consume it, and none of them knows which dataset it came from.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prunesearch.errors import InputError

# A frame file larger than this is not a video frame (an 8K PNG is about 100 MB).
MAX_FRAME_BYTES = 256 << 20


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a frame file (None if it can): missing or unreadable, not a regular file
    (a FIFO would hang the reader, a link to ``/dev/zero`` would fill memory), or over :data:`MAX_FRAME_BYTES`."""
    try:
        st = os.stat(path)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a folder, FIFO, device or socket)"
    if st.st_size > MAX_FRAME_BYTES:
        return f"is {st.st_size:,} bytes; allowed: at most {MAX_FRAME_BYTES:,} (MAX_FRAME_BYTES)"
    return None


@dataclass
class Sequence:
    """Frames on disk and their annotation.

    ``boxes`` is [T, 4] float (x, y, w, h, pixels, top-left origin); rows of absent frames may be
    NaN or zero. ``visible`` is [T] bool: False where the dataset marks the target absent (GOT-10k
    absence.label, LaSOT full occlusion or out of view); such frames never serve as training
    targets and are scored by the dataset's own rules.
    """

    name: str
    frames: list[Path]
    boxes: np.ndarray
    visible: np.ndarray
    dataset: str = ""
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.visible = np.asarray(self.visible, dtype=bool).reshape(-1)
        if len(self.visible) != len(self.boxes):
            raise InputError(
                f"sequence {self.name}: {len(self.boxes)} boxes but {len(self.visible)} visibility flags"
            )

    def __len__(self) -> int:
        return len(self.frames)

    def image(self, index: int) -> np.ndarray:
        """Frame ``index`` as an RGB uint8 array [H, W, 3]."""
        import cv2

        path = self.frames[index]
        problem = file_problem(path)
        if problem is not None:
            raise InputError(f"frame {path} {problem}")
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"cannot read image {path} (missing or not an image)")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
