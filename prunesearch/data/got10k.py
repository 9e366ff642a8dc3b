"""GOT-10k reader, for the dataset exactly as distributed.

Layout: ``{root}/{split}/list.txt`` names the sequence folders of a split (train, val, test). Each
sequence folder holds ``00000001.jpg`` .. , ``groundtruth.txt`` (``x,y,w,h`` per frame; the test
split has only the first frame's box), and, outside the test split, ``absence.label`` (1 = target
absent), ``cover.label`` (0..8, visible share of the target in eighths; 0 = not visible),
``cut_by_image.label`` (0/1) and ``meta_info.ini`` (``key: value`` lines, e.g. ``resolution: (W, H)``).

Which frames count: the official toolkit scores only frames with ``cover > 0``, so ``visible``
is ``cover > 0`` (``absence == 0`` where a sequence has no cover.label). Boxes of invisible frames
are not checked; every visible frame needs a valid box.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import numpy as np

from prunesearch.data.annotation_files import (
    check_boxes,
    check_length,
    numbered_frames,
    read_boxes,
    read_label_lines,
)
from prunesearch.data.reader import DatasetReader
from prunesearch.data.sequence import Sequence
from prunesearch.errors import InputError

DATASET = "got10k"
SPLITS = ("train", "val", "test")
LIST_FILE = "list.txt"
# ``resolution: (W, H)`` in meta_info.ini, read as two numbers (never evaluated: a file may hold any expression).
_RESOLUTION = re.compile(r"\(\s*(\d+(?:\.\d*)?)\s*,\s*(\d+(?:\.\d*)?)\s*\)")
MAX_RESOLUTION = 100_000


def is_got10k(path: Path) -> bool:
    """True where ``path`` is a GOT-10k root (split folders with list.txt) or one split folder."""
    path = Path(path)
    return (path / LIST_FILE).is_file() or any((path / s / LIST_FILE).is_file() for s in SPLITS)


def split_folder(root: Path, split: str | None) -> Path:
    """The folder holding ``list.txt`` for ``split``; a split folder given directly is taken as is."""
    root = Path(root)
    if (root / LIST_FILE).is_file():
        if split is not None and split != root.name:
            raise InputError(f"{root} is the GOT-10k split folder {root.name!r}, not {split!r}")
        return root
    present = [s for s in SPLITS if (root / s / LIST_FILE).is_file()]
    if not present:
        raise InputError(
            f"{root} is not a GOT-10k folder: expected {root}/<split>/list.txt for a split in {', '.join(SPLITS)}"
        )
    if split is None:
        split = "val" if "val" in present else present[0]
    if split not in present:
        raise InputError(
            f"GOT-10k split {split!r} not found in {root} ({root / split / LIST_FILE} missing); "
            f"present: {', '.join(present)}"
        )
    return root / split


def read_got10k(root: str | Path, split: str | None = None) -> list[Sequence]:
    """Every sequence listed in the split's ``list.txt``, in list order (default split: val)."""
    folder = split_folder(Path(root), split)
    list_file = folder / LIST_FILE
    try:
        text = list_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{list_file} is not UTF-8 text (byte {err.start}); it must list one sequence folder a line") from None
    names = [n.strip() for n in text.splitlines() if n.strip()]
    if not names:
        raise InputError(f"{list_file} lists no sequences")
    missing = [n for n in names if not (folder / n).is_dir()]
    if missing:
        raise InputError(
            f"{list_file} lists {len(missing)} sequence(s) with no folder, first {folder / missing[0]}"
        )
    return [read_sequence(folder / n) for n in names]


def read_sequence(seq_dir: str | Path) -> Sequence:
    """One GOT-10k sequence folder."""
    seq_dir = Path(seq_dir)
    gt_file = seq_dir / "groundtruth.txt"
    boxes = read_boxes(gt_file)
    first_box_only = len(boxes) == 1 and not (seq_dir / "absence.label").exists()
    frames = numbered_frames(seq_dir, None if first_box_only else len(boxes))
    attributes: dict[str, np.ndarray] = {}
    for name, allowed in (("absence", (0, 1)), ("cover", range(9)), ("cut_by_image", (0, 1))):
        label_file = seq_dir / f"{name}.label"
        if label_file.exists():
            values = read_label_lines(label_file, allowed)
            check_length(values, label_file, len(boxes))
            attributes[name] = values
    if "cover" in attributes:
        visible = attributes["cover"] > 0
    elif "absence" in attributes:
        visible = attributes["absence"] == 0
    else:
        visible = np.ones(len(boxes), dtype=bool)
    check_boxes(boxes, visible, gt_file)
    if not visible[0]:
        raise InputError(f"{seq_dir}: the target is not visible in the first frame, so tracking cannot start")
    meta_file = seq_dir / "meta_info.ini"
    if meta_file.exists():
        attributes.update(_read_meta(meta_file))
    return Sequence(seq_dir.name, frames, boxes, visible, DATASET, attributes)


def _read_meta(path: Path) -> dict[str, np.ndarray]:
    """The image resolution from ``meta_info.ini`` (the official toolkit clips boxes to it)."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=(":",))
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except (configparser.Error, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0]
        raise InputError(f"{path} is not a valid meta_info.ini: {first}") from None
    values = {k: v for section in parser.sections() for k, v in parser.items(section)}
    if "resolution" not in values:
        return {}
    found = _RESOLUTION.fullmatch(values["resolution"].strip())
    resolution = np.array([float(found[1]), float(found[2])]) if found else None
    if resolution is None:
        raise InputError(
            f"{path}: resolution {values['resolution'][:60]!r} is not of the form (width, height)"
        )
    if not (np.isfinite(resolution) & (resolution >= 1) & (resolution <= MAX_RESOLUTION)).all():
        raise InputError(f"{path}: resolution {values['resolution'][:60]!r} must be two whole pixel counts from 1 to {MAX_RESOLUTION}")
    return {"resolution": resolution}


READER = DatasetReader(
    DATASET, "GOT-10k data (<root>/<split>/list.txt and sequence folders, or a split folder with list.txt)",
    is_got10k, read_got10k,
)
