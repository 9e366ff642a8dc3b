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
from prunesearch.data.sequence import Sequence
from prunesearch.errors import InputError, PrunesearchWarning

BAD_FRAME_ACTIONS = ("error", "skip")
# Start and end markers of the image formats datasets ship; a truncated file lacks its end marker.
_SIGNATURES = {
    ".jpg": (b"\xff\xd8\xff", b"\xff\xd9"),
    ".jpeg": (b"\xff\xd8\xff", b"\xff\xd9"),
    ".png": (b"\x89PNG\r\n\x1a\n", b"IEND"),
}
_TAIL = 256  # bytes searched for the end marker (some encoders pad after it)

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
    """Why ``path`` is not a whole image (None if it is): its start and end markers, or a full decode for other formats."""
    signature = _SIGNATURES.get(path.suffix.lower())
    if signature is None:
        import cv2

        return None if cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None else "does not decode as an image"
    start, end = signature
    try:
        with open(path, "rb") as f:
            head = f.read(len(start))
            f.seek(max(f.seek(0, 2) - _TAIL, 0))
            tail = f.read()
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if head != start:
        return f"is not a {path.suffix.lstrip('.').upper()} image"
    if end not in tail:
        return "is truncated (no end-of-image marker)"
    return None


def verify_frames(seq: Sequence, bad_frames: str = "error") -> Sequence | None:
    """``seq`` if every frame is whole; else an error, or (``"skip"``) the sequence without those frames, or None."""
    bad = [(i, problem) for i, frame in enumerate(seq.frames) if (problem := frame_problem(frame)) is not None]
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


def _read(path: Path, split: str | None) -> list[Sequence]:
    """Every sequence of the split, from the first registered layout found at ``path``."""
    if not path.is_dir():
        raise InputError(f"dataset folder {path} does not exist")
    try:
        reader = next((r for r in _READERS.values() if r.detect(path)), None)
    except OSError as err:
        raise InputError(f"cannot read dataset folder {path}: {err.strerror or err}") from None
    if reader is None:
        layouts = [r.layout for r in _READERS.values()]
        raise InputError(f"{path} holds {'neither' if len(layouts) > 1 else 'no'} {' nor '.join(layouts)}")
    return reader.read(path, split)
