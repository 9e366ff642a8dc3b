"""Writing tracking results in the GOT-10k layout, which the official toolkit and server read.

Per sequence: ``{seq}/{seq}_001.txt`` (one ``x,y,w,h`` line per frame, ``%.3f``, comma-separated;
``_001`` is the first and, for a deterministic tracker, only repetition) and ``{seq}/{seq}_time.txt``
(seconds per frame, ``%.8f``). Zip a tracker's folder to submit GOT-10k test results.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_sequence_results(out_dir: str | Path, sequence: str, boxes: np.ndarray, times: np.ndarray) -> Path:
    """Write one sequence's boxes and times under ``out_dir``; returns the box file."""
    folder = Path(out_dir) / sequence
    folder.mkdir(parents=True, exist_ok=True)
    box_file = folder / f"{sequence}_001.txt"
    np.savetxt(box_file, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), fmt="%.3f", delimiter=",")
    np.savetxt(folder / f"{sequence}_time.txt", np.asarray(times, dtype=np.float64).reshape(-1, 1), fmt="%.8f")
    return box_file


def write_report(path: str | Path, report: dict) -> Path:
    """A JSON summary next to the result folders (kept out of them so a zipped folder stays valid)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path
