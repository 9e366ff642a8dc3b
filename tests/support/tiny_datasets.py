"""Tiny GOT-10k and LaSOT folders on disk, in the exact distributed layouts, for reader and CLI tests.

Each sequence is a bright textured rectangle drifting over a dark noisy background (small JPEGs),
so a tracker has something to follow. Helpers return the ground-truth boxes they wrote so tests
can corrupt single files afterwards.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 96, 72


def moving_boxes(frames: int, seed: int = 0) -> np.ndarray:
    """``x, y, w, h`` per frame: a 20x16 box drifting a few pixels per frame."""
    rng = np.random.default_rng(seed)
    start = np.array([20.0 + 10 * rng.random(), 18.0 + 8 * rng.random()])
    step = np.array([3.0, 2.0])
    xy = start + np.arange(frames)[:, None] * step
    return np.column_stack([xy, np.full(frames, 20.0), np.full(frames, 16.0)])


def write_frames(folder: Path, boxes: np.ndarray, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    texture = rng.integers(120, 255, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    for i, (x, y, w, h) in enumerate(boxes, start=1):
        img = rng.integers(0, 50, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
        if np.isfinite([x, y, w, h]).all() and w > 0 and h > 0:
            # The part of the box inside the image (boxes may run off the border).
            x0, y0 = max(int(round(x)), 0), max(int(round(y)), 0)
            x1, y1 = min(int(round(x + w)), WIDTH), min(int(round(y + h)), HEIGHT)
            if x1 > x0 and y1 > y0:
                img[y0:y1, x0:x1] = texture[: y1 - y0, : x1 - x0]
        cv2.imwrite(str(folder / f"{i:08d}.jpg"), img)


def _write_lines(path: Path, rows) -> None:
    path.write_text("".join(f"{r}\n" for r in rows))


def box_lines(boxes: np.ndarray) -> list[str]:
    return [",".join(f"{v:.4f}" for v in b) for b in boxes]


def write_got10k_sequence(seq_dir: Path, boxes: np.ndarray, cover=None, seed: int = 0, test: bool = False) -> None:
    """One sequence folder; ``test`` writes only the first box and no labels, as in the test split."""
    write_frames(seq_dir, boxes, seed)
    if test:
        _write_lines(seq_dir / "groundtruth.txt", box_lines(boxes[:1]))
        return
    _write_lines(seq_dir / "groundtruth.txt", box_lines(boxes))
    cover = np.full(len(boxes), 8) if cover is None else np.asarray(cover)
    _write_lines(seq_dir / "cover.label", cover)
    _write_lines(seq_dir / "absence.label", (cover == 0).astype(int))
    _write_lines(seq_dir / "cut_by_image.label", np.zeros(len(boxes), dtype=int))
    (seq_dir / "meta_info.ini").write_text(
        "[METAINFO]\nurl: https://example.com/v?id=1%20x\nobject_class: box\n"
        f"motion_class: drifting\nresolution: ({WIDTH}, {HEIGHT})\n"
    )


def write_got10k(root: Path, split: str = "val", sequences: int = 2, frames: int = 5) -> dict[str, np.ndarray]:
    """``root/split/list.txt`` and its sequences; returns name -> boxes."""
    folder = root / split
    names = [f"GOT-10k_{split.capitalize()}_{i:06d}" for i in range(1, sequences + 1)]
    written = {}
    for i, name in enumerate(names):
        boxes = moving_boxes(frames, seed=i)
        write_got10k_sequence(folder / name, boxes, seed=i, test=split == "test")
        written[name] = boxes
    _write_lines(folder / "list.txt", names)
    return written


def write_lasot_sequence(seq_dir: Path, boxes: np.ndarray, occlusion=None, out_of_view=None, seed: int = 0) -> None:
    write_frames(seq_dir / "img", boxes, seed)
    _write_lines(seq_dir / "groundtruth.txt", box_lines(boxes))
    for name, flags in (("full_occlusion", occlusion), ("out_of_view", out_of_view)):
        flags = np.zeros(len(boxes), dtype=int) if flags is None else np.asarray(flags)
        (seq_dir / f"{name}.txt").write_text(",".join(str(int(f)) for f in flags) + "\n")
    (seq_dir / "nlp.txt").write_text("a bright box drifting to the right\n")


def write_lasot(root: Path, categories=("airplane", "cat"), per_category: int = 2, frames: int = 5) -> dict[str, np.ndarray]:
    written = {}
    for c, category in enumerate(categories):
        for n in range(1, per_category + 1):
            name = f"{category}-{n}"
            boxes = moving_boxes(frames, seed=10 * c + n)
            write_lasot_sequence(root / category / name, boxes, seed=10 * c + n)
            written[name] = boxes
    return written
