"""LaSOT reader, for the dataset exactly as distributed.

Layout: ``{root}/{category}/{category}-{n}/`` with ``img/00000001.jpg`` .. , ``groundtruth.txt``
(``x,y,w,h`` per frame), ``full_occlusion.txt`` and ``out_of_view.txt`` (each one comma-separated
line of 0/1 per frame) and ``nlp.txt``. ``root`` may also be a single category folder.

LaSOT has no split folders: the 280-sequence test set is a list of names shipped with the
evaluation toolkit (``testing_set.txt``). ``split="test"`` reads ``{root}/testing_set.txt`` (or
``test.txt``); without a split every sequence is read.

Which frames count: the target is absent where it is fully occluded or out of view
(``visible = ~(full_occlusion | out_of_view)``, as in pytracking); boxes of absent frames are not
checked. LaSOT's toolkit scores absent frames as failures (``READER.scoring``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from prunesearch.data.annotation_files import (
    check_boxes,
    check_length,
    numbered_frames,
    read_boxes,
    read_label_row,
)
from prunesearch.data.reader import DatasetReader, Scoring
from prunesearch.data.sequence import Sequence
from prunesearch.errors import InputError

DATASET = "lasot"
_SEQ_NAME = re.compile(r"^(?P<category>.+)-(?P<number>\d+)$")


def _sequence_dirs(category_dir: Path) -> list[Path]:
    """``{category}-{n}`` folders with a groundtruth.txt, by number."""
    found = []
    for d in category_dir.iterdir():
        m = _SEQ_NAME.match(d.name)
        if m and m["category"] == category_dir.name and (d / "groundtruth.txt").is_file():
            found.append((int(m["number"]), d))
    return [d for _, d in sorted(found)]


def _is_category(path: Path) -> bool:
    return path.is_dir() and bool(_sequence_dirs(path))


def is_lasot(path: Path) -> bool:
    """True where ``path`` is a LaSOT root (category folders) or one category folder."""
    path = Path(path)
    return _is_category(path) or any(_is_category(d) for d in path.iterdir() if d.is_dir())


def _all_sequence_dirs(root: Path) -> list[Path]:
    if _is_category(root):
        return _sequence_dirs(root)
    return [s for d in sorted(root.iterdir()) if d.is_dir() for s in _sequence_dirs(d)]


def _split_names(root: Path, split: str) -> list[str]:
    candidates = [root / f"{split}ing_set.txt", root / f"{split}_set.txt", root / f"{split}.txt"]
    for list_file in candidates:
        if list_file.is_file():
            names = [n.strip() for n in list_file.read_text(encoding="utf-8").splitlines() if n.strip()]
            if not names:
                raise InputError(f"{list_file} lists no sequences")
            return names
    raise InputError(
        f"LaSOT has no split folders: put the toolkit's list of {split!r} sequences in "
        f"{candidates[0]} (one name per line), or omit the split to read all sequences"
    )


def read_lasot(root: str | Path, split: str | None = None) -> list[Sequence]:
    """All sequences under ``root`` (category by category), or those of a split's name list."""
    root = Path(root)
    if not root.is_dir() or not is_lasot(root):
        raise InputError(
            f"{root} is not a LaSOT folder: expected {root}/<category>/<category>-<n>/groundtruth.txt"
        )
    dirs = {d.name: d for d in _all_sequence_dirs(root)}
    if split is None:
        return [read_sequence(d) for d in dirs.values()]
    names = _split_names(root, split)
    missing = [n for n in names if n not in dirs]
    if missing:
        raise InputError(
            f"{len(missing)} sequence(s) of the {split!r} list are not under {root}, first {missing[0]!r}"
        )
    return [read_sequence(dirs[n]) for n in names]


def read_sequence(seq_dir: str | Path) -> Sequence:
    """One LaSOT sequence folder."""
    seq_dir = Path(seq_dir)
    gt_file = seq_dir / "groundtruth.txt"
    boxes = read_boxes(gt_file)
    frames = numbered_frames(seq_dir / "img", len(boxes))
    attributes: dict[str, np.ndarray] = {}
    for name in ("full_occlusion", "out_of_view"):
        flag_file = seq_dir / f"{name}.txt"
        flags = read_label_row(flag_file, (0, 1))
        check_length(flags, flag_file, len(boxes))
        attributes[name] = flags
    visible = (attributes["full_occlusion"] == 0) & (attributes["out_of_view"] == 0)
    check_boxes(boxes, visible, gt_file)
    if not visible[0]:
        raise InputError(f"{seq_dir}: the target is absent in the first frame, so tracking cannot start")
    return Sequence(seq_dir.name, frames, boxes, visible, DATASET, attributes)


READER = DatasetReader(
    DATASET, "LaSOT data (<root>/<category>/<category>-<n>/img/ and groundtruth.txt)",
    is_lasot, read_lasot, Scoring(absent_frames_fail=True),
)
