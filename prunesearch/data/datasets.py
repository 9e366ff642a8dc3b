"""Opening a tracking dataset from a path, whichever of the registered layouts it holds.

The readers are a registry (:func:`register_reader`): the built-ins are registered below, and a new
layout is a module defining a :class:`~prunesearch.data.reader.DatasetReader` plus its entry there.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from prunesearch.data import got10k, lasot
from prunesearch.data.reader import DatasetReader, Scoring
from prunesearch.data.sequence import Sequence, file_problem
from prunesearch.errors import InputError, PrunesearchWarning

BAD_FRAME_ACTIONS = ("error", "skip")
# Start and end markers of the image formats datasets ship; a truncated file lacks its end marker.
_SIGNATURES = {
    ".jpg": (b"\xff\xd8\xff", b"\xff\xd9"),
    ".jpeg": (b"\xff\xd8\xff", b"\xff\xd9"),
    ".png": (b"\x89PNG\r\n\x1a\n", b"IEND"),
}
_TAIL = 256  # bytes searched for the end marker (some encoders pad after it)
_HEAD = 128 << 10  # bytes searched for the declared size (after EXIF and other segments of up to 64 KB)
# 100 megapixels: beyond 8K video (33 Mpx); a header claiming 20000x20000 would decode to 1.2 GB.
MAX_FRAME_PIXELS = 100_000_000

_READERS: dict[str, DatasetReader] = {}


def register_reader(reader: DatasetReader) -> DatasetReader:
    """Make ``reader`` one of the layouts :func:`open_dataset` recognises (tried in registration order)."""
    if reader.name in _READERS:
        raise ValueError(f"a dataset reader named {reader.name!r} is already registered")
    _READERS[reader.name] = reader
    return reader


def unregister_reader(name: str) -> None:
    """Take a reader out of the registry again (for tests and plugins that clean up)."""
    del _READERS[name]


def registered_readers() -> tuple[DatasetReader, ...]:
    return tuple(_READERS.values())


def scoring_of(dataset: str) -> Scoring:
    """How sequences whose ``Sequence.dataset`` is ``dataset`` are scored; the common rule for any other name."""
    reader = _READERS.get(dataset)
    return reader.scoring if reader is not None else Scoring()


for _builtin in (got10k.READER, lasot.READER):
    register_reader(_builtin)


def open_dataset(
    path: str | Path, split: str | None = None, count: int | None = None, bad_frames: str = "error"
) -> list[Sequence]:
    """The first ``count`` sequences (all if None) of the GOT-10k or LaSOT data at ``path``.

    Every frame of those sequences is checked to be a whole image now, so a damaged file is named
    before any training rather than changing a score later: ``bad_frames="error"`` stops on the
    first, ``"skip"`` drops such frames with a warning.
    """
    if bad_frames not in BAD_FRAME_ACTIONS:
        raise InputError(f"bad_frames must be one of {', '.join(BAD_FRAME_ACTIONS)}, got {bad_frames!r}")
    sequences = _read(Path(path), split)[:count]
    return [kept for seq in sequences if (kept := verify_frames(seq, bad_frames)) is not None]


def frame_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole image (None if it is); see :func:`_inspect_frame`."""
    return _inspect_frame(path)[0]


def _inspect_frame(path: Path) -> tuple[str | None, tuple[int, int] | None]:
    """Why ``path`` is not a whole image (None if it is): not a regular file or too large
    (:func:`~prunesearch.data.sequence.file_problem`), its start and end markers, the size its
    header declares (:data:`MAX_FRAME_PIXELS`), or a full decode for other formats.

    Reads at most the first :data:`_HEAD` and last :data:`_TAIL` bytes: a frame named by a dataset
    may be anything, a FIFO or a link to ``/dev/zero`` included, and must not hang or fill memory.
    Also returns the (width, height) the header declares, where it was found.
    """
    problem = file_problem(path)
    if problem is not None:
        return problem, None
    signature = _SIGNATURES.get(path.suffix.lower())
    if signature is None:
        import cv2

        return (None, None) if cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None else ("does not decode as an image", None)
    start, end = signature
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD)
            f.seek(max(f.seek(0, 2) - _TAIL, 0))
            tail = f.read(_TAIL)
    except OSError as err:
        return f"cannot be read ({err.strerror})", None
    if not head.startswith(start):
        return f"is not a {path.suffix.lstrip('.').upper()} image", None
    if end not in tail:
        return "is truncated (no end-of-image marker)", None
    size = _png_size(head) if start.startswith(b"\x89PNG") else _jpeg_size(head)
    if size is not None and (size[0] * size[1] > MAX_FRAME_PIXELS or 0 in size):
        return f"declares {size[0]}x{size[1]} pixels; allowed: 1 to {MAX_FRAME_PIXELS:,} pixels (MAX_FRAME_PIXELS)", size
    return None, size


def _png_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk, which must come first."""
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from a JPEG's start-of-frame segment, if it lies within ``head``."""
    i = 2
    while i + 9 < len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(head[i + 7:i + 9], "big"), int.from_bytes(head[i + 5:i + 7], "big")
        i += 2 + int.from_bytes(head[i + 2:i + 4], "big")
    return None


def verify_frames(seq: Sequence, bad_frames: str = "error") -> Sequence | None:
    """``seq`` if every frame is whole; else an error, or (``"skip"``) the sequence without those frames, or None."""
    checked = [_inspect_frame(frame) for frame in seq.frames]
    bad = [(i, problem) for i, (problem, _) in enumerate(checked) if problem is not None]
    _check_boxes_inside(seq, [size for _, size in checked])
    if not bad:
        return seq
    first, problem = bad[0]
    more = f" ({len(bad)} damaged frames in {seq.name})" if len(bad) > 1 else ""
    if bad_frames == "error":
        raise InputError(
            f"frame {seq.frames[first]} {problem}{more}; replace it, or set data.bad_frames: skip to drop such frames"
        )
    keep = np.ones(len(seq.frames), dtype=bool)
    keep[[i for i, _ in bad]] = False
    if not keep.any() or not seq.visible[keep][0]:
        warnings.warn(f"sequence {seq.name} skipped: frame {seq.frames[first]} {problem}{more}", PrunesearchWarning, 2)
        return None
    warnings.warn(f"frame {seq.frames[first]} {problem}; skipped{more}", PrunesearchWarning, 2)
    attributes = {k: v[keep] if v.shape[:1] == keep.shape else v for k, v in seq.attributes.items()}
    return dataclasses.replace(
        seq, frames=[f for f, k in zip(seq.frames, keep) if k], boxes=seq.boxes[keep], visible=seq.visible[keep],
        attributes=attributes,
    )


def _check_boxes_inside(seq: Sequence, sizes: list[tuple[int, int] | None]) -> None:
    """Every visible box must overlap its frame: one wholly outside it is a damaged annotation, and
    would be scored as a miss (or clipped to nothing) without a word."""
    for i, (size, box, visible) in enumerate(zip(sizes, seq.boxes, seq.visible)):
        if size is None or not visible:
            continue
        x, y, w, h = box
        if x >= size[0] or y >= size[1] or x + w <= 0 or y + h <= 0:
            raise InputError(f"sequence {seq.name} frame {i + 1}: box x={x:g} y={y:g} w={w:g} h={h:g} lies wholly outside "
                             f"the {size[0]}x{size[1]} image {seq.frames[i]}; fix the annotation line {i + 1}")


def _read(path: Path, split: str | None) -> list[Sequence]:
    """Every sequence of the split, from the first registered layout found at ``path``."""
    if not path.is_dir():
        raise InputError(f"dataset folder {path} " + ("is not a folder" if path.exists() else "does not exist"))
    try:
        reader = next((r for r in _READERS.values() if r.detect(path)), None)
    except OSError as err:
        raise InputError(f"cannot read dataset folder {path}: {err.strerror or err}") from None
    if reader is None:
        layouts = [r.layout for r in _READERS.values()]
        raise InputError(f"{path} holds {'neither' if len(layouts) > 1 else 'no'} {' nor '.join(layouts)}")
    try:
        return reader.read(path, split)
    except OSError as err:  # a folder or file of the data set that cannot be read (chmod 000, a broken disk)
        raise InputError(f"cannot read {err.filename or path}: {err.strerror or err}") from None
