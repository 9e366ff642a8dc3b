"""Opening a tracking dataset from a path, whichever of the supported layouts it holds."""

from __future__ import annotations

from pathlib import Path

from prunesearch.data import got10k, lasot
from prunesearch.data.sequence import Sequence
from prunesearch.errors import PrunesearchError


def open_dataset(path: str | Path, split: str | None = None) -> list[Sequence]:
    """The sequences of the GOT-10k or LaSOT data at ``path`` (detected from the layout)."""
    path = Path(path)
    if not path.is_dir():
        raise PrunesearchError(f"dataset folder {path} does not exist")
    if got10k.is_got10k(path):
        return got10k.read_got10k(path, split)
    if lasot.is_lasot(path):
        return lasot.read_lasot(path, split)
    raise PrunesearchError(
        f"{path} holds neither GOT-10k data (<root>/<split>/list.txt and sequence folders, or a split "
        "folder with list.txt) nor LaSOT data (<root>/<category>/<category>-<n>/img/ and groundtruth.txt)"
    )
