"""Reading the plain-text annotation files of tracking datasets, with errors that name file and line.

GOT-10k and LaSOT both store boxes as one ``x,y,w,h`` line per frame and per-frame flags as small
integers; a damaged download shows up here (a ragged line, a text token, a missing frame) as one
:class:`InputError` that says where, instead of a crash deep inside training or tracking.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

import numpy as np

from prunesearch.errors import InputError


def _lines(path: Path) -> list[str]:
    """The file's lines without trailing blank lines; an error if the file is missing or empty."""
    if not path.is_file():
        raise InputError(f"missing annotation file {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read annotation file {path}: {err}") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError(f"annotation file {path} is empty")
    return lines


def read_boxes(path: Path) -> np.ndarray:
    """``x,y,w,h`` per line -> float array [T, 4]; NaN tokens are kept for the caller to judge."""
    rows = []
    for number, line in enumerate(_lines(path), start=1):
        fields = line.split(",")
        if len(fields) != 4:
            raise InputError(
                f"{path} line {number}: expected 4 comma-separated numbers x,y,w,h, got {line.strip()!r}"
            )
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            raise InputError(f"{path} line {number}: not a number in {line.strip()!r}") from None
    return np.asarray(rows, dtype=np.float64)


def _parse_labels(tokens: list[str], path: Path, where: str, allowed: Collection[int]) -> np.ndarray:
    values = []
    for index, token in enumerate(tokens, start=1):
        try:
            value = int(token.strip())
        except ValueError:
            value = None
        if value is None or value not in allowed:
            raise InputError(
                f"{path} {where} {index}: {token.strip()!r} is not one of {sorted(allowed)}"
            )
        values.append(value)
    return np.asarray(values, dtype=np.int64)


def read_label_lines(path: Path, allowed: Collection[int]) -> np.ndarray:
    """One integer per line (GOT-10k ``*.label``)."""
    return _parse_labels(_lines(path), path, "line", allowed)


def read_label_row(path: Path, allowed: Collection[int]) -> np.ndarray:
    """One comma-separated line of integers (LaSOT ``full_occlusion.txt``, ``out_of_view.txt``)."""
    lines = _lines(path)
    if len(lines) != 1:
        raise InputError(f"{path}: expected one comma-separated line of flags, found {len(lines)} lines")
    return _parse_labels(lines[0].split(","), path, "value", allowed)


def check_length(values: np.ndarray, path: Path, frames: int) -> None:
    """One value per frame, or an error saying how many of each there are."""
    if len(values) != frames:
        raise InputError(f"{path} has {len(values)} entries for {frames} frames")


def check_boxes(boxes: np.ndarray, visible: np.ndarray, path: Path) -> None:
    """Every frame where the target is visible needs a finite box with w > 0 and h > 0.

    Frames the dataset marks absent are not checked: their rows are placeholders (often zeros).
    """
    finite = np.isfinite(boxes).all(axis=1)
    ok = finite & (np.nan_to_num(boxes[:, 2]) > 0) & (np.nan_to_num(boxes[:, 3]) > 0)
    bad = np.flatnonzero(visible & ~ok)
    if bad.size:
        i = int(bad[0])
        x, y, w, h = boxes[i]
        raise InputError(
            f"{path} line {i + 1}: box x={x:g} y={y:g} w={w:g} h={h:g} is not a valid box "
            f"(needs finite values, w > 0, h > 0) and the dataset does not mark frame {i + 1} absent"
            + (f" ({bad.size} such lines in all)" if bad.size > 1 else "")
        )


def numbered_frames(folder: Path, count: int | None, suffix: str = ".jpg") -> list[Path]:
    """Frames ``00000001.jpg`` .. in ``folder``; ``count`` frames, or as many as are there if None.

    An error names the first missing frame; frames must be numbered from 1 without gaps.
    """
    if not folder.is_dir():
        raise InputError(f"missing frame folder {folder}")
    names = {n for n in os.listdir(folder) if n.endswith(suffix)}
    if count is None:
        count = len(names)
        if count == 0:
            raise InputError(f"no {suffix} frames in {folder}")
    elif len(names) > count:
        raise InputError(f"{folder} holds {len(names)} {suffix} frames but its annotation has {count} boxes; "
                         "every frame needs one box line")
    frames = [f"{i:08d}{suffix}" for i in range(1, count + 1)]
    missing = [n for n in frames if n not in names]
    if missing:
        raise InputError(
            f"missing frame {folder / missing[0]}"
            + (f" ({len(missing)} of {count} frames missing)" if len(missing) > 1 else "")
        )
    return [folder / n for n in frames]
