import numpy as np
import pytest
from tests.support.tiny_datasets import moving_boxes, write_lasot, write_lasot_sequence

from prunesearch.data import lasot, open_dataset
from prunesearch.errors import PrunesearchError


@pytest.fixture
def root(tmp_path):
    write_lasot(tmp_path, categories=("airplane", "cat"), per_category=2, frames=4)
    return tmp_path


def test_reads_every_category_in_order(root):
    seqs = open_dataset(root)
    assert [s.name for s in seqs] == ["airplane-1", "airplane-2", "cat-1", "cat-2"]
    s = seqs[0]
    assert s.dataset == "lasot" and len(s) == 4 and s.boxes.shape == (4, 4)
    assert s.frames[0].parent.name == "img" and s.visible.all()
    assert s.image(3).shape == (72, 96, 3)


def test_sequences_sort_by_number_and_a_category_folder_opens(root):
    write_lasot_sequence(root / "cat" / "cat-10", moving_boxes(3))
    assert [s.name for s in open_dataset(root / "cat")] == ["cat-1", "cat-2", "cat-10"]


def test_occluded_or_out_of_view_frames_are_absent_and_unchecked(tmp_path):
    boxes = moving_boxes(5)
    boxes[2] = 0
    boxes[3] = np.nan
    write_lasot_sequence(tmp_path / "dog" / "dog-1", boxes, occlusion=[0, 0, 1, 0, 0], out_of_view=[0, 0, 0, 1, 0])
    (s,) = lasot.read_lasot(tmp_path)
    assert s.visible.tolist() == [True, True, False, False, True]
    assert s.attributes["full_occlusion"].tolist() == [0, 0, 1, 0, 0]


def test_split_from_the_toolkit_list(root):
    with pytest.raises(PrunesearchError, match="testing_set.txt"):
        open_dataset(root, "test")
    (root / "testing_set.txt").write_text("cat-2\nairplane-1\n")
    assert [s.name for s in open_dataset(root, "test")] == ["cat-2", "airplane-1"]
    (root / "testing_set.txt").write_text("cat-9\n")
    with pytest.raises(PrunesearchError, match="'cat-9'"):
        open_dataset(root, "test")


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("full_occlusion.txt", "0,0,1\n", r"full_occlusion.txt has 3 entries for 4 frames"),
        ("out_of_view.txt", "0,0,2,0\n", r"out_of_view.txt value 3: '2' is not one of"),
        ("out_of_view.txt", "0,0\n0,0\n", r"expected one comma-separated line"),
        ("groundtruth.txt", "1,2,3,4\n1,2,3,4,5\n1,2,3,4\n1,2,3,4\n", r"groundtruth.txt line 2: expected 4"),
        ("groundtruth.txt", "1,2,3,4\n1,2,-3,4\n1,2,3,4\n1,2,3,4\n", r"groundtruth.txt line 2: box .* w=-3"),
    ],
)
def test_malformed_files(root, name, text, message):
    d = root / "cat" / "cat-1"
    (d / name).write_text(text)
    with pytest.raises(PrunesearchError, match=message):
        lasot.read_sequence(d)


def test_missing_files_are_named(root):
    d = root / "cat" / "cat-1"
    (d / "img" / "00000004.jpg").unlink()
    with pytest.raises(PrunesearchError, match=r"missing frame .*cat-1/img/00000004.jpg"):
        lasot.read_sequence(d)
    d = root / "cat" / "cat-2"
    (d / "out_of_view.txt").unlink()
    with pytest.raises(PrunesearchError, match=r"missing annotation file .*cat-2/out_of_view.txt"):
        lasot.read_sequence(d)
