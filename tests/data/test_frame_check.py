"""Frames are verified when a dataset is opened: a damaged one stops the command, or is skipped with a warning."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from tests.support.tiny_datasets import write_got10k

from prunesearch.data import open_dataset
from prunesearch.data.datasets import frame_problem
from prunesearch.errors import PrunesearchError, PrunesearchWarning


@pytest.fixture
def root(tmp_path):
    write_got10k(tmp_path / "got", "val", sequences=2, frames=5)
    return tmp_path / "got"


def _truncate(path, keep=150):
    path.write_bytes(path.read_bytes()[:keep])


def test_whole_frames_pass_and_only_the_sequences_used_are_read(root):
    _truncate(root / "val" / "GOT-10k_Val_000002" / "00000002.jpg")
    (seq,) = open_dataset(root, "val", count=1)
    assert len(seq) == 5
    with pytest.raises(PrunesearchError, match=r"GOT-10k_Val_000002/00000002.jpg is truncated .*bad_frames: skip"):
        open_dataset(root, "val")


def test_skip_drops_the_frame_with_its_annotation_and_warns(root):
    _truncate(root / "val" / "GOT-10k_Val_000001" / "00000003.jpg")
    with pytest.warns(PrunesearchWarning, match=r"00000003.jpg is truncated .*; skipped"):
        first, second = open_dataset(root, "val", bad_frames="skip")
    assert len(first) == 4 and len(second) == 5
    assert [f.name for f in first.frames] == ["00000001.jpg", "00000002.jpg", "00000004.jpg", "00000005.jpg"]
    assert first.boxes.shape == (4, 4) and first.visible.shape == (4,) and first.attributes["cover"].shape == (4,)
    assert first.attributes["resolution"].shape == (2,)


def test_skip_starts_at_the_first_whole_frame_or_drops_the_sequence(root):
    (root / "val" / "GOT-10k_Val_000001" / "00000001.jpg").write_text("not an image")
    for frame in (root / "val" / "GOT-10k_Val_000002").glob("*.jpg"):
        frame.write_text("not an image")
    with pytest.warns(PrunesearchWarning) as caught:
        (only,) = open_dataset(root, "val", bad_frames="skip")
    assert only.name == "GOT-10k_Val_000001" and only.frames[0].name == "00000002.jpg"
    assert "sequence GOT-10k_Val_000002 skipped: frame" in str(caught[-1].message)
    assert "(5 damaged frames in GOT-10k_Val_000002)" in str(caught[-1].message)


def test_png_and_other_formats(tmp_path):
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    for suffix in (".png", ".bmp"):
        path = tmp_path / f"f{suffix}"
        cv2.imwrite(str(path), image)
        assert frame_problem(path) is None
        _truncate(path, 40)
        assert frame_problem(path) is not None
    assert frame_problem(tmp_path / "missing.jpg").startswith("cannot be read")
