"""A fast subset of the input-surface battery (tests/support/input_surface.py), in-process: one case per class of
bad value on a few surfaces of each kind (numbers, paths read, paths written, file contents).

Each must exit non-zero with one line on stderr, nothing on stdout and nothing left behind. The whole
table runs as real processes under memory and time limits in ``benchmarks/bad_input_battery.py --surface``;
unreadable and read-only paths only there, since this process may be root.
"""

from __future__ import annotations

import pytest
from tests.support.bad_inputs import one_line_error
from tests.support.input_surface import cases, materialize

FAST = [c for c in cases() if c.fast and not c.unprivileged]


@pytest.mark.parametrize("case", FAST, ids=[c.name for c in FAST])
def test_bad_value_is_one_line_and_leaves_nothing(case, tmp_path, monkeypatch, capsys, one_torch_thread):
    folder = tmp_path / "case"
    assert one_line_error(materialize(case, folder), folder, monkeypatch, capsys).startswith("prunesearch")


def test_every_surface_meets_every_class_that_applies_to_it():
    """The table is a cross: a new flag or file kind gets every class of bad value."""
    names = {c.name for c in cases()}
    assert {"synth.sequences/huge", "eval.data/fifo", "export.out/read_only", "derive.name/outside"} <= names
    assert len(names) == len(cases()), "two cases share a name"


@pytest.mark.parametrize("name, words", [
    ("dataset/frame_dev_zero", "00000002.jpg is not a regular file"),
    ("dataset/frame_fifo", "00000002.jpg is not a regular file"),
    ("dataset/frame_20000x20000", "declares 20000x20000 pixels; allowed: 1 to 100,000,000"),
    ("dataset/more_frames_than_boxes", "holds 5 .jpg frames but its annotation has 4 boxes"),
    ("dataset/box_outside_frame", "frame 3: box x=5000 y=5000 w=20 h=16 lies wholly outside the 96x72 image"),
    ("dataset/resolution_inf", "meta_info.ini: resolution '(inf, 720)' is not of the form (width, height)"),
    ("dataset/resolution_nested", "is not of the form (width, height)"),
    ("dataset/list_not_utf8", "list.txt is not UTF-8 text"),
])
def test_a_damaged_dataset_is_named_where_it_is_damaged(name, words, tmp_path):
    from prunesearch.data import open_dataset
    from prunesearch.errors import InputError

    case = next(c for c in cases() if c.name == name)
    materialize(case, tmp_path)
    with pytest.raises(InputError) as err:
        open_dataset(tmp_path / "got", "val")
    assert words in str(err.value) and "\n" not in str(err.value)
