import dataclasses

import numpy as np
import pytest
from tests.support.tiny_datasets import box_lines, moving_boxes, write_got10k, write_got10k_sequence

from prunesearch.data import got10k, open_dataset
from prunesearch.data.datasets import register_reader, scoring_of, unregister_reader
from prunesearch.data.reader import DatasetReader, Scoring
from prunesearch.errors import InputError, PrunesearchError
from prunesearch.evaluation import score_sequence


@pytest.fixture
def root(tmp_path):
    write_got10k(tmp_path, "val", sequences=2, frames=5)
    return tmp_path


def seq_dir(root, i=1):
    return root / "val" / f"GOT-10k_Val_{i:06d}"


def test_reads_the_split_in_list_order(root):
    seqs = got10k.read_got10k(root, "val")
    assert [s.name for s in seqs] == ["GOT-10k_Val_000001", "GOT-10k_Val_000002"]
    s = seqs[0]
    assert len(s) == 5 and s.frames[0].name == "00000001.jpg" and s.frames[-1].name == "00000005.jpg"
    assert s.boxes.shape == (5, 4) and s.visible.all()
    assert s.dataset == "got10k"
    assert s.attributes["resolution"].tolist() == [96.0, 72.0]
    assert s.attributes["cover"].tolist() == [8] * 5
    assert s.image(0).shape == (72, 96, 3)


def test_split_defaults_to_val_and_a_split_folder_opens_directly(root):
    write_got10k(root, "train", sequences=1, frames=3)
    assert [s.name for s in got10k.read_got10k(root)][0] == "GOT-10k_Val_000001"
    assert [s.name for s in got10k.read_got10k(root / "train")] == ["GOT-10k_Train_000001"]
    with pytest.raises(PrunesearchError, match="split 'test' not found.*present: train, val"):
        got10k.read_got10k(root, "test")


def test_test_split_has_the_first_box_only(tmp_path):
    write_got10k(tmp_path, "test", sequences=1, frames=4)
    (s,) = open_dataset(tmp_path, "test")
    assert len(s) == 4 and s.boxes.shape == (1, 4)


def test_frame_with_cover_zero_is_absent_and_its_box_unchecked(root):
    d = seq_dir(root)
    lines = (d / "groundtruth.txt").read_text().splitlines()
    lines[2] = "0,0,0,0"
    (d / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    (d / "cover.label").write_text("8\n8\n0\n5\n8\n")
    s = got10k.read_sequence(d)
    assert s.visible.tolist() == [True, True, False, True, True]


def test_invalid_box_on_a_visible_frame_names_file_and_line(root):
    d = seq_dir(root)
    lines = (d / "groundtruth.txt").read_text().splitlines()
    lines[2] = "10,10,0,12"
    (d / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(PrunesearchError, match=r"groundtruth.txt line 3: box .* w=0"):
        got10k.read_sequence(d)
    lines[2] = "10,10,nan,12"
    (d / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(PrunesearchError, match=r"groundtruth.txt line 3"):
        got10k.read_sequence(d)


@pytest.mark.parametrize(
    "text, message",
    [
        ("1,2,3,4\n1,2,3\n", r"groundtruth.txt line 2: expected 4 comma-separated"),
        ("1,2,3,4\n1,2,x,4\n", r"groundtruth.txt line 2: not a number"),
        ("\n\n", r"groundtruth.txt is empty"),
    ],
)
def test_malformed_groundtruth(root, text, message):
    (seq_dir(root) / "groundtruth.txt").write_text(text)
    with pytest.raises(PrunesearchError, match=message):
        got10k.read_sequence(seq_dir(root))


def test_missing_frame_is_named(root):
    (seq_dir(root) / "00000003.jpg").unlink()
    with pytest.raises(PrunesearchError, match=r"missing frame .*GOT-10k_Val_000001/00000003.jpg"):
        open_dataset(root)


def test_unreadable_image_is_named(root):
    (seq_dir(root) / "00000002.jpg").write_bytes(b"not a jpeg")
    s = got10k.read_sequence(seq_dir(root))
    with pytest.raises(PrunesearchError, match=r"cannot read image .*00000002.jpg"):
        s.image(1)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("cover.label", "8\n8\n9\n8\n8\n", r"cover.label line 3: '9' is not one of"),
        ("absence.label", "0\n0\n0\n", r"absence.label has 3 entries for 5 frames"),
        ("meta_info.ini", "[METAINFO]\nresolution: big\n", r"meta_info.ini: resolution 'big'"),
    ],
)
def test_malformed_labels_and_meta(root, name, text, message):
    (seq_dir(root) / name).write_text(text)
    with pytest.raises(PrunesearchError, match=message):
        got10k.read_sequence(seq_dir(root))


def test_list_naming_a_missing_folder(root):
    (root / "val" / "list.txt").write_text("GOT-10k_Val_000001\nGOT-10k_Val_000404\n")
    with pytest.raises(PrunesearchError, match="GOT-10k_Val_000404"):
        open_dataset(root)


def test_boxes_round_trip(root):
    s = got10k.read_sequence(seq_dir(root))
    assert box_lines(s.boxes) == (seq_dir(root) / "groundtruth.txt").read_text().splitlines()
    assert np.isfinite(s.boxes).all()


def test_neither_layout_is_one_clear_error(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(PrunesearchError, match="neither GOT-10k .* nor LaSOT"):
        open_dataset(tmp_path)
    with pytest.raises(PrunesearchError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")


def _one_sequence(path, split):
    return [dataclasses.replace(got10k.read_sequence(path), dataset="single")]


SINGLE = DatasetReader(
    "single", "a single sequence (<folder>/groundtruth.txt and numbered frames)",
    lambda path: (path / "groundtruth.txt").is_file(), _one_sequence, Scoring(absent_frames_fail=True),
)


def test_a_registered_reader_opens_its_layout_and_declares_its_scoring(tmp_path):
    """A reader is one DatasetReader and one registration: open_dataset, the error and the metrics follow."""
    write_got10k_sequence(tmp_path / "one", moving_boxes(5), cover=[8, 8, 0, 8, 8])
    with pytest.raises(InputError, match=r"neither GOT-10k .* nor LaSOT data \(.*\)$"):
        open_dataset(tmp_path / "one")
    register_reader(SINGLE)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_reader(SINGLE)
        (seq,) = open_dataset(tmp_path / "one")
        assert (seq.name, seq.dataset, seq.visible.tolist()) == ("one", "single", [True, True, False, True, True])
        with pytest.raises(InputError, match=r"neither GOT-10k .* nor LaSOT .* nor a single sequence \(<folder>"):
            (tmp_path / "empty").mkdir()
            open_dataset(tmp_path / "empty")
        assert scoring_of("single").absent_frames_fail and not scoring_of("got10k").absent_frames_fail
        single = score_sequence(seq.boxes, seq.boxes, seq.visible, "single")
        lasot = score_sequence(seq.boxes, seq.boxes, seq.visible, "lasot")
        left_out = score_sequence(seq.boxes, seq.boxes, seq.visible, "got10k")
        assert single.auc == lasot.auc == pytest.approx(left_out.auc * 4 / 5)
    finally:
        unregister_reader("single")
    assert scoring_of("single") == Scoring()
    with pytest.raises(InputError, match=r"neither GOT-10k .* nor LaSOT data \(.*\)$"):
        open_dataset(tmp_path / "one")


def test_a_folder_that_cannot_be_listed_is_one_line(tmp_path):
    """Detection lists folders (LaSOT's categories); a folder it may not read is named, not a traceback."""

    def refuses(path):
        raise PermissionError(13, "Permission denied", str(path))

    register_reader(DatasetReader("refusing", "nothing", refuses, _one_sequence))
    try:
        with pytest.raises(InputError, match=rf"^cannot read dataset folder {tmp_path}: Permission denied$"):
            open_dataset(tmp_path)
    finally:
        unregister_reader("refusing")
